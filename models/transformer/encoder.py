"""The BERT-like `EncoderModel`: bidirectional self-attention with a padding mask, and a masked-LM head (tied
to the token embedding) or a [CLS] / mean-pooled classification head. Its body is `backbone`, so fine-tuning
starts from a pretrained checkpoint through `train.init_from` (components/train/transfer.py).

Shapes as in models/transformer/layers.py: B batch, T length, C = d_model, H heads, V vocabulary, K classes.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from models.padding import cut_to_longest
from models.transformer.layers import Embeddings, LMHead, Stack, init_weights, padding_mask


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
        self.scores_targets_only = head == "mlm"  # the training loop passes `scored`: the positions with a target
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
        self.apply(init_weights)

    def encode(self, ids: Tensor, need_weights: bool = False) -> tuple[Tensor, list[Tensor]]:
        """(B, T) -> hidden states (B, T, C) and, with need_weights, per layer (B, H, T, T) weights."""
        mask = padding_mask(ids, self.pad_id)  # (B, 1, 1, T)
        return self.backbone["encoder"](self.backbone["embed"](ids), mask=mask, need_weights=need_weights)

    def forward(self, ids: Tensor, scored: Tensor | None = None) -> Tensor:
        """(B, T) -> (B, T, V) for mlm, (B, K) for cls. `scored` (B, T), bool, for mlm: only those N positions get
        logits, (N, V) in row-major order. Training passes the masked positions (about 15%), so the V-wide output
        layer, 40% of a step's work at V = 4,000, runs on them alone: the sparse prediction of "cramming" BERT
        (Geiping & Goldstein, 2022). The loss over those positions is the same as over all with the rest ignored."""
        if self.head_kind == "cls":  # one answer per text: the batch costs its longest text (models/padding.py)
            ids = cut_to_longest(ids, (ids != self.pad_id).sum(1).clamp(min=1))
        h, _ = self.encode(ids)
        if self.head_kind == "mlm":
            return self.head(h if scored is None else h[scored])  # (B, T, C) -> (B, T, V), or (N, C) -> (N, V)
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
