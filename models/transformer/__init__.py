"""Transformers, written to be read: embeddings, multi-head attention, pre-norm blocks, encoder and decoder stacks.

The package owns three models built from the parts in `layers` (embeddings, masks, the key/value cache,
multi-head attention, feed-forward, blocks, stacks, the LM head), and the registry's `Transformer` that picks
one by `arch`:
- `decoder.DecoderLM` (GPT-like, arch `decoder`): causal self-attention, tied LM head, generation with a
  key/value cache.
- `encoder.EncoderModel` (BERT-like, arch `encoder`): bidirectional self-attention with a padding mask; a
  masked-LM head (tied to the token embedding) or a [CLS] classification head. Its body is `backbone`, so
  fine-tuning starts from a pretrained checkpoint through `train.init_from` (components/train/transfer.py).
- `seq2seq.Seq2Seq` (arch `encoder_decoder`): an encoder, and a decoder whose blocks add cross-attention over
  the encoder's output.

Shapes (nanoGPT style): B batch, T target / query length, S source / key length, C = d_model, H heads,
D = C // H per head, V vocabulary, L layers. Token id tensors are int64.
"""

from __future__ import annotations

from torch import nn

from models.transformer.decoder import DecoderLM, Picker, greedy
from models.transformer.encoder import EncoderModel
from models.transformer.layers import KVCache, LayerCache, sinusoidal_table
from models.transformer.seq2seq import Seq2Seq

__all__ = [
    "ARCHS",
    "DecoderLM",
    "EncoderModel",
    "KVCache",
    "LayerCache",
    "Picker",
    "Seq2Seq",
    "Transformer",
    "greedy",
    "sinusoidal_table",
]

ARCHS: dict[str, type[nn.Module]] = {"decoder": DecoderLM, "encoder": EncoderModel, "encoder_decoder": Seq2Seq}


def Transformer(arch: str = "decoder", **kwargs) -> nn.Module:  # noqa: N802 - the registry calls it like a class
    """The registry's `transformer`: `arch` picks the model; the rest are its constructor's arguments."""
    if arch not in ARCHS:
        raise ValueError(f"unknown transformer arch {arch!r}; one of {', '.join(ARCHS)}")
    return ARCHS[arch](**kwargs)
