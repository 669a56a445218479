"""The parts every transformer stack in this package shares: token + position embeddings, attention masks,
the key/value cache, multi-head attention, the feed-forward layer, pre- or post-norm blocks, the block stack,
the (tied) LM head and GPT-2's weight initialisation.

Shapes (nanoGPT style): B batch, T target / query length, S source / key length, C = d_model, H heads,
D = C // H per head, V vocabulary, L layers. Token id tensors are int64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

POSITIONAL = ("learned", "sinusoidal")
NORMS = ("pre", "post")


def sinusoidal_table(max_len: int, dim: int) -> Tensor:
    """The fixed positions of "Attention is all you need": sin on even channels, cos on odd. (max_len, C)"""
    pos = torch.arange(max_len, dtype=torch.float32)[:, None]  # (max_len, 1)
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))  # (C/2,)
    table = torch.zeros(max_len, dim)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return table


class Embeddings(nn.Module):
    """Token embedding + position embedding (learned, or the fixed sinusoidal table), [LayerNorm,] then dropout.

    With the sinusoidal table (values of size ~1) token vectors are scaled by sqrt(C) as in "Attention is all
    you need", from an init of std C^-0.5: otherwise the positions would drown the tokens. `norm_eps` adds
    BERT's LayerNorm over the sum (a post-norm stack has no LayerNorm before its first block)."""

    def __init__(
        self,
        vocab_size: int,
        d_model: int,
        max_len: int,
        positional: str,
        dropout: float,
        norm_eps: float | None = None,
    ) -> None:
        super().__init__()
        if positional not in POSITIONAL:
            raise ValueError(f"positional must be one of {POSITIONAL}, not {positional!r}")
        self.token = nn.Embedding(vocab_size, d_model)
        self.max_len = max_len
        if positional == "learned":
            self.position = nn.Embedding(max_len, d_model)
        else:
            self.register_buffer("table", sinusoidal_table(max_len, d_model), persistent=False)
        self.scale = 1.0 if positional == "learned" else math.sqrt(d_model)
        self.norm = nn.Identity() if norm_eps is None else nn.LayerNorm(d_model, eps=norm_eps)
        self.drop = nn.Dropout(dropout)

    def forward(self, ids: Tensor, start: int = 0) -> Tensor:  # (B, T) -> (B, T, C)
        pos = torch.arange(start, start + ids.shape[1], device=ids.device)  # (T,) positions start.. (KV cache)
        where = self.position(pos) if hasattr(self, "position") else self.table[pos]  # (T, C)
        return self.drop(self.norm(self.token(ids) * self.scale + where))


@dataclass
class LayerCache:
    """Keys and values one attention layer has already computed: (B, H, S, D) each, grown step by step."""

    k: Tensor | None = None
    v: Tensor | None = None

    @property
    def length(self) -> int:
        return 0 if self.k is None else self.k.shape[2]


@dataclass
class KVCache:
    """Per decoder layer: self-attention cache (grows) and cross-attention cache (computed once)."""

    layers: list[tuple[LayerCache, LayerCache]] = field(default_factory=list)

    @classmethod
    def empty(cls, n_layers: int) -> KVCache:
        return cls([(LayerCache(), LayerCache()) for _ in range(n_layers)])

    @property
    def length(self) -> int:
        return self.layers[0][0].length if self.layers else 0


def causal_mask(t: int, s: int, device: torch.device) -> Tensor:
    """(T, S) bool, True = may attend: query i (at position s - t + i) sees keys 0 .. s - t + i."""
    return torch.ones(t, s, dtype=torch.bool, device=device).tril(diagonal=s - t)


def padding_mask(ids: Tensor, pad_id: int) -> Tensor:
    """(B, 1, 1, S) bool, True on real tokens: broadcast over heads and queries by attention."""
    return (ids != pad_id)[:, None, None, :]


def _by_hand(x: Tensor) -> bool:
    """Whether attention is computed by hand rather than by `F.scaled_dot_product_attention`: under bf16 autocast
    on a CPU, where PyTorch's SDPA kernels are the slower ones (the decoder benchmark's training step, forward and
    backward: 0.22 s with the CPU flash kernel, 0.19 s with the math kernel, 0.16 s by hand)."""
    return (
        x.device.type == "cpu"
        and torch.is_autocast_enabled("cpu")
        and torch.get_autocast_dtype("cpu") == torch.bfloat16
    )


class MultiHeadAttention(nn.Module):
    """Scaled dot-product attention over H heads, computed by `F.scaled_dot_product_attention`.

    Self-attention when `context` is None, cross-attention (queries from x, keys/values from context)
    otherwise. `mask` is bool, True = may attend, broadcastable to (B, H, T, S). `need_weights` computes the
    same thing by hand to return the (B, H, T, S) attention weights, for attention maps; so does bf16 autocast on
    a CPU (`_by_hand`)."""

    def __init__(self, d_model: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model {d_model} is not divisible by n_heads {n_heads}")
        self.n_heads, self.dropout = n_heads, dropout
        self.query = nn.Linear(d_model, d_model)
        self.key_value = nn.Linear(d_model, 2 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.resid_drop = nn.Dropout(dropout)

    def _heads(self, x: Tensor) -> Tensor:  # (B, T, C) -> (B, H, T, D)
        b, t, c = x.shape
        return x.view(b, t, self.n_heads, c // self.n_heads).transpose(1, 2)

    def forward(
        self,
        x: Tensor,
        context: Tensor | None = None,
        mask: Tensor | None = None,
        causal: bool = False,
        cache: LayerCache | None = None,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        b, t, c = x.shape
        q = self._heads(self.query(x))  # (B, H, T, D)
        if cache is not None and context is not None and cache.k is not None:
            k, v = cache.k, cache.v  # cross-attention: the encoder output does not change while decoding
        else:
            k, v = (self._heads(z) for z in self.key_value(x if context is None else context).split(c, dim=2))
            if cache is not None and context is None and cache.k is not None:
                k, v = torch.cat([cache.k, k], dim=2), torch.cat([cache.v, v], dim=2)  # (B, H, S, D), S = past + T
            if cache is not None:
                cache.k, cache.v = k, v
        s = k.shape[2]
        by_hand = need_weights or _by_hand(x)
        causal_fast = causal and mask is None and t == s and not by_hand  # SDPA's own causal path
        if causal and not causal_fast:  # one bool mask: SDPA takes is_causal or attn_mask, not both
            tri = causal_mask(t, s, x.device)  # (T, S)
            mask = tri if mask is None else mask & tri
        drop = self.dropout if self.training else 0.0
        weights = None
        if by_hand:
            scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])  # (B, H, T, S)
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            weights = scores.softmax(dim=-1)
            y = F.dropout(weights, drop, self.training) @ v  # (B, H, T, D)
            weights = weights if need_weights else None
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop, is_causal=causal_fast)
        y = y.transpose(1, 2).contiguous().view(b, t, c)  # (B, T, C): heads side by side again
        return self.resid_drop(self.proj(y)), weights


class FeedForward(nn.Module):
    def __init__(self, d_model: int, d_ff: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d_model, d_ff), nn.GELU(), nn.Linear(d_ff, d_model), nn.Dropout(dropout))

    def forward(self, x: Tensor) -> Tensor:  # (B, T, C) -> (B, T, C)
        return self.net(x)


class Block(nn.Module):
    """Pre-norm block: x + attn(LN(x)) [+ cross_attn(LN(x), memory)] + ffn(LN(x)), each with its residual.

    `norm="post"` is the original Transformer's and BERT's order: x = LN(x + attn(x)), then LN(x + ffn(x))."""

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_ff: int,
        dropout: float,
        cross: bool = False,
        norm: str = "pre",
        norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, not {norm!r}")
        self.post = norm == "post"
        self.norm1 = nn.LayerNorm(d_model, eps=norm_eps)
        self.attn = MultiHeadAttention(d_model, n_heads, dropout)
        if cross:
            self.norm_cross = nn.LayerNorm(d_model, eps=norm_eps)
            self.cross_attn = MultiHeadAttention(d_model, n_heads, dropout)
        self.norm2 = nn.LayerNorm(d_model, eps=norm_eps)
        self.ffn = FeedForward(d_model, d_ff, dropout)

    def _in(self, norm: nn.Module, x: Tensor) -> Tensor:
        return x if self.post else norm(x)

    def _add(self, norm: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        return norm(x + y) if self.post else x + y

    def forward(
        self,
        x: Tensor,  # (B, T, C)
        mask: Tensor | None = None,
        causal: bool = False,
        memory: Tensor | None = None,  # (B, S, C) encoder output, for cross-attention
        memory_mask: Tensor | None = None,
        cache: tuple[LayerCache, LayerCache] | None = None,
        need_weights: bool = False,
    ) -> tuple[Tensor, list[Tensor]]:
        h = self._in(self.norm1, x)
        a, w = self.attn(h, mask=mask, causal=causal, cache=cache and cache[0], need_weights=need_weights)
        x = self._add(self.norm1, x, a)
        weights = [w] if need_weights else []
        if hasattr(self, "cross_attn"):
            h = self._in(self.norm_cross, x)
            a, w = self.cross_attn(h, memory, memory_mask, cache=cache and cache[1], need_weights=need_weights)
            x = self._add(self.norm_cross, x, a)
            weights += [w] if need_weights else []
        return self._add(self.norm2, x, self.ffn(self._in(self.norm2, x))), weights


class Stack(nn.Module):
    """L blocks then a final LayerNorm (pre-norm stacks need it; post-norm blocks end in one): the encoder
    (causal False) or the decoder."""

    def __init__(
        self,
        n_layers: int,
        d_model: int,
        n_heads: int,
        d_ff: int,
        dropout: float,
        cross: bool = False,
        norm: str = "pre",
        norm_eps: float = 1e-5,
    ):
        super().__init__()
        self.blocks = nn.ModuleList(
            Block(d_model, n_heads, d_ff, dropout, cross, norm, norm_eps) for _ in range(n_layers)
        )
        self.norm = nn.LayerNorm(d_model, eps=norm_eps) if norm == "pre" else nn.Identity()

    def forward(
        self,
        x: Tensor,
        mask: Tensor | None = None,
        causal: bool = False,
        memory: Tensor | None = None,
        memory_mask: Tensor | None = None,
        cache: KVCache | None = None,
        need_weights: bool = False,
    ) -> tuple[Tensor, list[Tensor]]:  # (B, T, C) -> (B, T, C), per layer [self (, cross)] weights (B, H, T, S)
        weights: list[Tensor] = []
        for i, block in enumerate(self.blocks):
            x, w = block(x, mask, causal, memory, memory_mask, cache and cache.layers[i], need_weights)
            weights += w
        return self.norm(x), weights


def init_weights(module: nn.Module) -> None:
    """GPT-2's initialisation: N(0, 0.02) for linear and embedding weights, zero biases; token vectors that
    are scaled by sqrt(C) start at std C^-0.5 (`apply` visits Embeddings after its nn.Embedding)."""
    if isinstance(module, nn.Linear | nn.Embedding):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)
    if isinstance(module, Embeddings) and module.scale != 1.0:
        nn.init.normal_(module.token.weight, mean=0.0, std=1 / module.scale)


class LMHead(nn.Module):
    """Hidden states -> vocabulary logits; `tie` shares the weight matrix with the token embedding."""

    def __init__(self, embedding: nn.Embedding, tie: bool) -> None:
        super().__init__()
        vocab, d_model = embedding.weight.shape
        self.linear = nn.Linear(d_model, vocab, bias=False)
        if tie:
            self.linear.weight = embedding.weight  # (V, C): one matrix reads tokens in and writes them out

    def forward(self, h: Tensor) -> Tensor:  # (B, T, C) -> (B, T, V)
        return self.linear(h)
