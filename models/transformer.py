"""Transformers, written to be read: embeddings, multi-head attention, pre-norm blocks, encoder and decoder stacks.

Three models share the parts below:
- `DecoderLM` (GPT-like): causal self-attention, tied LM head, generation with a key/value cache.
- `EncoderModel` (BERT-like): bidirectional self-attention with a padding mask; a masked-LM head (tied to the
  token embedding) or a [CLS] classification head. Its body is `backbone`, so fine-tuning starts from a
  pretrained checkpoint through `train.init_from` (components/train/transfer.py).
- `Seq2Seq`: an encoder, and a decoder whose blocks add cross-attention over the encoder's output.

Shapes (nanoGPT style): B batch, T target / query length, S source / key length, C = d_model, H heads,
D = C // H per head, V vocabulary, L layers. Token id tensors are int64.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
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


class MultiHeadAttention(nn.Module):
    """Scaled dot-product attention over H heads, computed by `F.scaled_dot_product_attention`.

    Self-attention when `context` is None, cross-attention (queries from x, keys/values from context)
    otherwise. `mask` is bool, True = may attend, broadcastable to (B, H, T, S). `need_weights` computes the
    same thing by hand to return the (B, H, T, S) attention weights, for attention maps."""

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
        causal_fast = causal and mask is None and t == s and not need_weights  # SDPA's own causal path
        if causal and not causal_fast:  # one bool mask: SDPA takes is_causal or attn_mask, not both
            tri = causal_mask(t, s, x.device)  # (T, S)
            mask = tri if mask is None else mask & tri
        drop = self.dropout if self.training else 0.0
        weights = None
        if need_weights:
            scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])  # (B, H, T, S)
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            weights = scores.softmax(dim=-1)
            y = F.dropout(weights, drop, self.training) @ v  # (B, H, T, D)
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


def _init_weights(module: nn.Module) -> None:
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


Picker = Callable[[Tensor], Tensor]  # last-position logits (B, V) -> next token ids (B,)


def greedy(logits: Tensor) -> Tensor:
    return logits.argmax(dim=-1)


class DecoderLM(nn.Module):
    """GPT-like causal language model: predicts token t+1 from tokens 0..t."""

    def __init__(
        self,
        vocab_size: int,
        max_len: int,
        out_features: int | None = None,
        d_model: int = 128,
        n_layers: int = 4,
        n_heads: int = 4,
        d_ff: int | None = None,
        dropout: float = 0.0,
        positional: str = "learned",
        tie_weights: bool = True,
        pad_id: int | None = None,
    ) -> None:
        super().__init__()
        del out_features, pad_id  # the registry passes them to every model; an LM's output is its vocabulary
        self.max_len = max_len
        self.embed = Embeddings(vocab_size, d_model, max_len, positional, dropout)
        self.decoder = Stack(n_layers, d_model, n_heads, d_ff or 4 * d_model, dropout)
        self.head = LMHead(self.embed.token, tie_weights)
        self.apply(_init_weights)

    def hidden(self, ids: Tensor, cache: KVCache | None = None, need_weights: bool = False):
        """(B, T) -> final hidden states (B, T, C) and per-layer weights. With a cache, `ids` are the new
        tokens after the cached ones, so their positions start at the cache's length."""
        start = cache.length if cache is not None else 0
        return self.decoder(self.embed(ids, start), causal=True, cache=cache, need_weights=need_weights)

    def forward(self, ids: Tensor, cache: KVCache | None = None) -> Tensor:  # (B, T) -> logits (B, T, V)
        return self.head(self.hidden(ids, cache)[0])

    def attention(self, ids: Tensor) -> list[Tensor]:
        """Per layer, the (B, H, T, T) causal self-attention weights for `ids`."""
        return self.hidden(ids, need_weights=True)[1]

    @torch.no_grad()
    def generate(
        self, ids: Tensor, max_new_tokens: int, pick: Picker = greedy, use_cache: bool = True
    ) -> Iterator[Tensor]:
        """Yield (B,) new tokens one at a time after prompt `ids` (B, T).

        With the cache each step feeds only the newest token, whose keys and values are appended. Once the
        context window (max_len) is full it slides: every position shifts, so the window is recomputed."""
        self.eval()
        cache = KVCache.empty(len(self.decoder.blocks)) if use_cache else None
        feed = ids[:, -self.max_len :]
        for _ in range(max_new_tokens):
            logits = self(feed, cache)[:, -1, :]  # (B, V)
            token = pick(logits)  # (B,)
            yield token
            ids = torch.cat([ids, token[:, None]], dim=1)
            if cache is not None and cache.length < self.max_len:
                feed = token[:, None]  # (B, 1) at position cache.length
            else:
                cache, feed = None, ids[:, -self.max_len :]


class EncoderModel(nn.Module):
    """BERT-like encoder: `head` "mlm" gives per-token vocabulary logits (B, T, V), "cls" class scores (B, K)
    from the [CLS] position (the first token), or with `pool="mean"` from the mean of the real tokens (how
    sentence-transformers pool). Padding (pad_id) is masked out of attention.

    `norm="post"`, `embed_norm=True`, `norm_eps=1e-12` make it BERT's exact architecture, so BERT weights load
    (components/data/text/minilm.py); the default is the pre-norm encoder."""

    def __init__(
        self,
        vocab_size: int,
        max_len: int,
        out_features: int,
        pad_id: int = 0,
        head: str = "cls",
        d_model: int = 128,
        n_layers: int = 4,
        n_heads: int = 4,
        d_ff: int | None = None,
        dropout: float = 0.1,
        positional: str = "learned",
        tie_weights: bool = True,
        norm: str = "pre",
        embed_norm: bool = False,
        norm_eps: float = 1e-5,
        pool: str = "cls",
    ) -> None:
        super().__init__()
        if pool not in ("cls", "mean"):
            raise ValueError(f"pool must be 'cls' or 'mean', not {pool!r}")
        self.pad_id, self.head_kind, self.pool, self.frozen = pad_id, head, pool, False
        embed_eps = norm_eps if embed_norm else None
        self.backbone = nn.ModuleDict(
            {
                "embed": Embeddings(vocab_size, d_model, max_len, positional, dropout, embed_eps),
                "encoder": Stack(n_layers, d_model, n_heads, d_ff or 4 * d_model, dropout, False, norm, norm_eps),
            }
        )
        if head == "mlm":
            self.head = LMHead(self.backbone["embed"].token, tie_weights)
        elif head == "cls":
            self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(d_model, out_features))
        else:
            raise ValueError(f"head must be 'mlm' or 'cls', not {head!r}")
        self.apply(_init_weights)

    def encode(self, ids: Tensor, need_weights: bool = False) -> tuple[Tensor, list[Tensor]]:
        """(B, T) -> hidden states (B, T, C) and, with need_weights, per layer (B, H, T, T) weights."""
        mask = padding_mask(ids, self.pad_id)  # (B, 1, 1, T)
        return self.backbone["encoder"](self.backbone["embed"](ids), mask=mask, need_weights=need_weights)

    def forward(self, ids: Tensor) -> Tensor:  # (B, T) -> (B, T, V) for mlm, (B, K) for cls
        h, _ = self.encode(ids)
        if self.head_kind == "mlm":
            return self.head(h)
        return self.head(h[:, 0] if self.pool == "cls" else self._mean(h, ids))

    def _mean(self, h: Tensor, ids: Tensor) -> Tensor:  # (B, T, C) -> (B, C): the mean over real (non-pad) tokens
        real = (ids != self.pad_id).unsqueeze(-1).to(h.dtype)  # (B, T, 1)
        return (h * real).sum(1) / real.sum(1).clamp(min=1.0)

    def sentence_vectors(self, ids: Tensor) -> Tensor:
        """(B, T) -> (B, 2, C): the [CLS] state and the mean over real (non-pad) tokens, per text."""
        h, _ = self.encode(ids)
        return torch.stack([h[:, 0], self._mean(h, ids)], dim=1)

    def freeze_backbone(self) -> None:
        """`transfer: feature_extractor`: only the head trains; the backbone also stops its dropout."""
        self.frozen = True
        self.backbone.requires_grad_(False)
        self.backbone.eval()

    def train(self, mode: bool = True) -> EncoderModel:
        super().train(mode)
        if self.frozen:
            self.backbone.eval()
        return self

    def attention(self, ids: Tensor) -> list[Tensor]:
        return self.encode(ids, need_weights=True)[1]


class Seq2Seq(nn.Module):
    """Encoder-decoder: the decoder's blocks cross-attend to the encoded source (the course's translator).

    Training input is one tensor (B, 2, T): row 0 the source ids, row 1 the target ids shifted right (BOS
    first), both padded with pad_id to one length; the output is next-target-token logits (B, T, V). One
    vocabulary and one embedding matrix serve source, target and the tied output layer."""

    def __init__(
        self,
        vocab_size: int,
        max_len: int,
        out_features: int | None = None,
        pad_id: int = 0,
        d_model: int = 128,
        n_layers: int = 2,
        n_heads: int = 4,
        d_ff: int | None = None,
        dropout: float = 0.1,
        positional: str = "sinusoidal",
        tie_weights: bool = True,
    ) -> None:
        super().__init__()
        del out_features
        self.pad_id = pad_id
        self.embed = Embeddings(vocab_size, d_model, max_len, positional, dropout)
        self.encoder = Stack(n_layers, d_model, n_heads, d_ff or 4 * d_model, dropout)
        self.decoder = Stack(n_layers, d_model, n_heads, d_ff or 4 * d_model, dropout, cross=True)
        self.head = LMHead(self.embed.token, tie_weights)
        self.apply(_init_weights)

    def encode(self, src: Tensor, need_weights: bool = False) -> tuple[Tensor, Tensor, list[Tensor]]:
        mask = padding_mask(src, self.pad_id)  # (B, 1, 1, S)
        memory, weights = self.encoder(self.embed(src), mask=mask, need_weights=need_weights)
        return memory, mask, weights  # (B, S, C)

    def decode(
        self,
        tgt: Tensor,
        memory: Tensor,
        memory_mask: Tensor,
        cache: KVCache | None = None,
        need_weights: bool = False,
    ) -> tuple[Tensor, list[Tensor]]:  # (B, T) -> logits (B, T, V)
        start = cache.length if cache is not None else 0
        h, weights = self.decoder(
            self.embed(tgt, start),
            causal=True,
            memory=memory,
            memory_mask=memory_mask,
            cache=cache,
            need_weights=need_weights,
        )
        return self.head(h), weights

    def forward(self, x: Tensor) -> Tensor:  # (B, 2, T) -> (B, T, V)
        memory, mask, _ = self.encode(x[:, 0])
        return self.decode(x[:, 1], memory, mask)[0]

    @torch.no_grad()
    def translate(self, src: Tensor, bos_id: int, eos_id: int, max_new_tokens: int) -> Tensor:
        """Greedy decoding with a KV cache: (B, S) source ids -> (B, <= max_new_tokens) target ids, EOS
        included, pad_id after it."""
        self.eval()
        memory, mask, _ = self.encode(src)
        cache = KVCache.empty(len(self.decoder.blocks))
        token = torch.full((len(src), 1), bos_id, dtype=torch.long, device=src.device)
        out, done = [], torch.zeros(len(src), dtype=torch.bool, device=src.device)
        for _ in range(max_new_tokens):
            token = self.decode(token, memory, mask, cache)[0][:, -1].argmax(-1, keepdim=True)  # (B, 1)
            out.append(token.masked_fill(done[:, None], self.pad_id))
            done |= token[:, 0] == eos_id
            if done.all():
                break
        return torch.cat(out, dim=1)

    def attention(self, x: Tensor) -> list[Tensor]:
        """Encoder self-attention layers, then per decoder layer self and cross (B, H, T, S) weights."""
        memory, mask, enc = self.encode(x[:, 0], need_weights=True)
        return enc + self.decode(x[:, 1], memory, mask, need_weights=True)[1]


ARCHS: dict[str, type[nn.Module]] = {"decoder": DecoderLM, "encoder": EncoderModel, "encoder_decoder": Seq2Seq}


def Transformer(arch: str = "decoder", **kwargs) -> nn.Module:  # noqa: N802 - the registry calls it like a class
    """The registry's `transformer`: `arch` picks the model; the rest are its constructor's arguments."""
    if arch not in ARCHS:
        raise ValueError(f"unknown transformer arch {arch!r}; one of {', '.join(ARCHS)}")
    return ARCHS[arch](**kwargs)
