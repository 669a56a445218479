"""The shared text corpora, and our encoder in MiniLM's shape."""

from __future__ import annotations

from components.config import MINILM_MODEL
from components.data.ingest import shared_datasets
from components.data.text import minilm as pretrained_text
from models.transformer import EncoderModel

SHAKESPEARE = shared_datasets() / "tinyshakespeare" / "input.txt"
VADER = shared_datasets() / "vader-movie-review-snippets"
MODEL = {"name": "transformer", **MINILM_MODEL}


def minilm_encoder(vocab_size: int = pretrained_text.VOCAB_SIZE, max_len: int = 128) -> EncoderModel:
    return EncoderModel(vocab_size, max_len, 2, **{k: v for k, v in MINILM_MODEL.items() if k != "arch"})
