"""The encoder-decoder `Seq2Seq`: an encoder, and a decoder whose blocks add cross-attention over the
encoder's output; greedy translation with a key/value cache.

Shapes as in models/transformer/layers.py: B batch, S source length, T target length, C = d_model, H heads,
V vocabulary.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from models.transformer.layers import Embeddings, KVCache, LMHead, Stack, init_weights, padding_mask


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
        self.apply(init_weights)

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
