"""Recurrent networks: one family with `cell` rnn (tanh) | lstm | gru, and three shapes of output.

Inputs:
- token ids [B, T] (int64) when built with `vocab_size`: an embedding table first, [PAD] (`pad_id`)
  marks padding on the right;
- values [B, T, F] (float) when built with `in_features` (time series: every step is real);
- one_to_many reads a seed [B, F] instead of a sequence.

Heads:
- `many_to_one`: one output per sequence [B, out]: the state at the last real step (`pool: last`), or a
  masked mean / max over the real steps. For classification, or the next H values of a series.
- `many_to_many`: one output per step [B, T, out] (per-step labels; padded steps give 0).
- `one_to_many`: a sequence of `steps` outputs [B, steps, out] generated from a seed: the seed sets the
  initial hidden state, and each step reads the previous step's output (autoregressive).

Variable lengths use masks, never padding that leaks: the left-to-right pass is causal, so its state at the
last real step has not seen the padding; the right-to-left pass (bidirectional) runs on each sequence
reversed *within its own length* (a gather), so it starts at the last real token, not at [PAD]. A row's
result is the same whatever padding follows it, and the graph exports to ONNX with a dynamic batch and
sequence length (packed sequences do not export). A batch is first cut to its longest real row (in training,
and whenever the output is one per sequence: models/padding.py), so short texts cost only their own length.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from models.padding import cut_to_longest

CELLS: dict[str, type[nn.RNNBase]] = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
HEADS = ("many_to_one", "many_to_many", "one_to_many")


def reversal_index(lengths: Tensor, steps: int | Tensor) -> Tensor:
    """Index [B, T] that reverses each row's first `lengths[b]` steps and leaves the padding after them."""
    t = torch.arange(steps, device=lengths.device).unsqueeze(0)  # [1, T]
    last = (lengths - 1).unsqueeze(1)  # [B, 1]
    return torch.where(t <= last, last - t, t)


def reverse_within_length(x: Tensor, lengths: Tensor, index: Tensor | None = None) -> Tensor:
    """Reverse each row's first `lengths[b]` steps of x [B, T, D]; the padding after them stays put.

    Pass `index` (reversal_index of the model's input) inside a model: the exporter gives LSTM/GRU outputs
    the example's fixed length, so a shape taken from them would freeze the sequence axis."""
    idx = reversal_index(lengths, x.shape[1]) if index is None else index
    return torch.gather(x, 1, idx.unsqueeze(-1).expand(-1, -1, x.shape[2]))


class RNN(nn.Module):
    def __init__(
        self,
        out_features: int,
        in_features: int | None = None,
        vocab_size: int | None = None,
        pad_id: int = 0,
        cell: str = "lstm",
        hidden: int = 64,
        layers: int = 1,
        dropout: float = 0.0,
        bidirectional: bool = False,
        head: str = "many_to_one",
        pool: str = "last",
        steps: int = 1,
        embedding_dim: int = 64,
        embeddings: str = "trainable",
        last_value_residual: bool = False,
        gate_bias: float = 1.0,
    ) -> None:
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"cell must be one of {sorted(CELLS)}, got {cell!r}")
        if head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {head!r}")
        if (in_features is None) == (vocab_size is None):
            raise ValueError("give in_features (values) or vocab_size (token ids), not both")
        if bidirectional and head == "one_to_many":
            raise ValueError("one_to_many generates left to right; it cannot be bidirectional")
        if last_value_residual and (vocab_size is not None or head != "many_to_one"):
            raise ValueError("last_value_residual is for many_to_one forecasts of a value series")
        self.cell, self.head_kind, self.pool, self.steps = cell, head, pool, steps
        self.pad_id, self.bidirectional, self.layers = pad_id, bidirectional, layers
        self.last_value_residual = last_value_residual
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=pad_id) if vocab_size else None
        self.embeddings_init = embeddings
        width_in = embedding_dim if vocab_size else in_features
        rnn = CELLS[cell]
        if head == "one_to_many":
            # the seed sets h0 (and c0) of every layer; each step then reads the previous output
            self.seed = nn.Linear(width_in, hidden * layers * (2 if cell == "lstm" else 1))
            self.forward_rnn = rnn(out_features, hidden, num_layers=layers, batch_first=True, dropout=dropout)
        elif not bidirectional:
            self.forward_rnn = rnn(width_in, hidden, num_layers=layers, batch_first=True, dropout=dropout)
        else:  # one module per layer and direction, so the backward pass can respect each row's length
            widths = [width_in] + [2 * hidden] * (layers - 1)
            self.fwd = nn.ModuleList(rnn(w, hidden, batch_first=True) for w in widths)
            self.bwd = nn.ModuleList(rnn(w, hidden, batch_first=True) for w in widths)
            self.between = nn.Dropout(dropout)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(hidden * (2 if bidirectional else 1), out_features)
        self.open_memory_gates(gate_bias)

    def open_memory_gates(self, bias: float = 1.0) -> None:
        """Start the gates that keep memory open: the LSTM forget gate's bias and the GRU update gate's at
        `bias` (1 as in Jozefowicz et al. 2015; about log(T) for memories of T steps, as in chrono
        initialisation), so early steps are remembered from the first epoch on. With PyTorch's zero-mean
        init the state would halve at every step and gradients vanish through time from the start (the
        plain RNN has no gate to open)."""
        if self.cell == "rnn":
            return
        for name, param in self.named_parameters():
            if "bias_ih" in name:
                size = param.shape[0] // (4 if self.cell == "lstm" else 3)
                gate = slice(size, 2 * size)  # lstm (i, f, g, o): f; gru (r, z, n): z
                with torch.no_grad():
                    param[gate] = bias

    def load_embeddings(self, vectors: Tensor, freeze: bool = False) -> None:
        """Start the embedding table from static vectors [vocab, dim] (e.g. word2vec); `freeze` keeps them."""
        if self.embedding is None or tuple(vectors.shape) != tuple(self.embedding.weight.shape):
            have = None if self.embedding is None else tuple(self.embedding.weight.shape)
            raise ValueError(f"vectors of shape {tuple(vectors.shape)} do not fit the embedding table {have}")
        with torch.no_grad():
            self.embedding.weight.copy_(vectors)
        self.embedding.weight.requires_grad_(not freeze)

    def forward(self, x: Tensor) -> Tensor:
        if self.head_kind == "one_to_many":
            return self._generate(x)
        if self.embedding is not None:  # token ids [B, T]
            lengths = (x != self.pad_id).sum(1).clamp(min=1)
            if self.training or self.head_kind == "many_to_one":  # per-step outputs keep the input's length
                x = cut_to_longest(x, lengths)
            inputs = self.embedding(x)
        else:  # values [B, T, F]: no padding
            lengths = torch.full(x.shape[:1], x.shape[1], dtype=torch.long, device=x.device)
            inputs = x
        last_value = None
        if self.last_value_residual:
            last_value = x[:, -1, :]  # [B, F]
            inputs = x - last_value.unsqueeze(1)
        outputs, final = self._encode(inputs, lengths)  # outputs [B, T, D]; final [B, D] at the last real step
        steps = torch.arange(inputs.shape[1], device=x.device).unsqueeze(0)
        mask = (steps < lengths.unsqueeze(1)).unsqueeze(-1)  # [B, T, 1]
        if self.head_kind == "many_to_many":
            return self.out(self.drop(outputs)) * mask
        if self.pool == "mean":
            pooled = (outputs * mask).sum(1) / lengths.unsqueeze(1).to(outputs.dtype)
        elif self.pool == "max":
            pooled = outputs.masked_fill(~mask, float("-inf")).amax(1)
        else:
            pooled = final
        y = self.out(self.drop(pooled))
        return y + last_value[:, :1] if last_value is not None else y

    def _encode(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        last = (lengths - 1).view(-1, 1, 1)
        if not self.bidirectional:
            out, _ = self.forward_rnn(x)
            final = torch.gather(out, 1, last.expand(-1, 1, out.shape[2])).squeeze(1)
            return out, final
        index = reversal_index(lengths, x.shape[1])  # from the input: its length is the dynamic one
        for i, (fwd, bwd) in enumerate(zip(self.fwd, self.bwd, strict=True)):
            if i:
                x = self.between(x)
            f, _ = fwd(x)
            b_rev, _ = bwd(reverse_within_length(x, lengths, index))  # right to left from the last real token
            x = torch.cat([f, reverse_within_length(b_rev, lengths, index)], dim=2)
        hidden = x.shape[2] // 2
        f_last = torch.gather(x[..., :hidden], 1, last.expand(-1, 1, hidden)).squeeze(1)
        b_last = x[:, 0, hidden:]  # the backward pass ends at step 0
        return x, torch.cat([f_last, b_last], dim=1)

    def _generate(self, seed: Tensor) -> Tensor:
        """seed [B, F] -> [B, steps, out]: h0 from the seed, then each step feeds back the previous output."""
        if seed.dim() == 3:  # a one-step sequence [B, 1, F] is a seed too
            seed = seed[:, -1, :]
        b, rnn = seed.shape[0], self.forward_rnn
        init = torch.tanh(self.seed(seed)).view(b, -1, rnn.num_layers, rnn.hidden_size).permute(1, 2, 0, 3)
        state = (init[0].contiguous(), init[1].contiguous()) if self.cell == "lstm" else init[0].contiguous()
        step_in = seed.new_zeros(b, 1, self.out.out_features)
        outputs = []
        for _ in range(self.steps):
            h, state = rnn(step_in, state)
            step_in = self.out(self.drop(h))
            outputs.append(step_in)
        return torch.cat(outputs, dim=1)
