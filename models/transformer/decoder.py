"""The GPT-like `DecoderLM`: causal self-attention, tied LM head, generation with a key/value cache.

Shapes as in models/transformer/layers.py: B batch, T length, C = d_model, V vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import Tensor, nn

from models.transformer.layers import Embeddings, KVCache, LMHead, Stack, init_weights

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
        self.apply(init_weights)

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
