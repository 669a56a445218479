"""Prepare for text tasks: seeded stratified split, a tokenizer trained on the training split, padded ids.

Reads `data.csv` (columns `text` and `target`, see components/data/ingest.py) and writes, beside meta.json:
- `train/val/test.npz`: `x` int64 token ids [N, max_length] ([CLS] ... [SEP] [PAD]...), `y` class indices,
  `rows` (row numbers in data.csv) and `texts` (the raw strings, for behaviour tests and error analysis);
- `tokenizer.json` (components/data/text/tokenization.py), the one file serving needs to turn text into ids (trained
  here, or a pretrained one: `text.tokenizer_from`, `text.tokenizer: minilm`);
- `word2vec.npy` [vocab_size, dim] when `text.word2vec_dim` > 0: skip-gram vectors with negative sampling
  (the course's static embeddings), trained on the training split's token ids only; a model can start
  its embedding table from them.

meta.json's `tokenizer` block records the rule (kind, vocabulary, max_length, truncation) and `input` is
`tokens` int64 [batch, sequence]: any length up to max_length works with the exported models.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from components.config import MINILM, PrepareConfig, TextConfig
from components.core.contract import TaskMeta
from components.core.errors import DataError
from components.core.io import atomic_write, sha256_file
from components.data.splits import split_indices
from components.data.text.tokenization import (
    PAD_ID,
    SPECIAL_TOKENS,
    TOKENIZER_FILE,
    TRUNCATION,
    encode,
    load_tokenizer,
    save_tokenizer,
    token_counts,
    train_tokenizer,
)

SPLITS = ("train", "val", "test")
WORD2VEC_FILE = "word2vec.npy"


def read_texts(csv: Path, cfg: PrepareConfig) -> tuple[list[str], np.ndarray, list[str], np.ndarray]:
    """(texts, class indices, class names, data.csv row numbers) from a text dataset's data.csv."""
    text_cfg = cfg.text or TextConfig()
    frame = pd.read_csv(csv, dtype=str, keep_default_na=False, encoding="utf-8")
    for column in (text_cfg.column, cfg.target):
        if column not in frame.columns:
            raise DataError(f"{csv}: column {column!r} is missing (columns: {', '.join(frame.columns)})")
    texts = frame[text_cfg.column].str.strip()
    keep = (texts != "") & (frame[cfg.target].str.strip() != "")
    if text_cfg.dedupe:
        keep &= ~texts.duplicated(keep="first")
    rows = np.flatnonzero(keep.to_numpy())
    labels = frame[cfg.target].str.strip().to_numpy()[rows]
    classes = sorted(set(labels.tolist()))
    if cfg.objective == "binary" and len(classes) != 2:
        raise DataError(f"{csv}: objective 'binary' needs 2 classes in {cfg.target!r}, found {len(classes)}")
    if len(rows) < 20:
        raise DataError(f"{csv}: only {len(rows)} usable texts; at least 20 are needed to split")
    y = np.array([classes.index(label) for label in labels], dtype=np.int64)
    return texts.to_numpy()[rows].tolist(), y, classes, rows


def prepare_text(folder: Path, out_dir: Path, cfg: PrepareConfig, task: str) -> TaskMeta:
    """Split, train the tokenizer on the train split, encode every split; return meta.json's content."""

    text_cfg = cfg.text or TextConfig()
    csv = Path(folder) / "data.csv"
    if not csv.is_file():
        raise FileNotFoundError(f"{csv} not found: run `dlpipe data pull` (or `dlpipe data ingest`) first")
    texts, y, classes, rows = read_texts(csv, cfg)
    parts = dict(zip(SPLITS, split_indices(y, cfg, stratified=True), strict=True))
    train_texts = [texts[i] for i in parts["train"]]
    if text_cfg.tokenizer_from:  # a pretrained model's vocabulary: its ids must mean the same tokens
        tok = load_tokenizer(text_cfg.tokenizer_from)
    elif text_cfg.tokenizer == MINILM:  # all-MiniLM-L6-v2's vocabulary, for train.init_from: minilm
        from components.data.text import minilm as pretrained_text

        tok = pretrained_text.tokenizer()
    else:
        tok = train_tokenizer(
            train_texts, text_cfg.tokenizer, text_cfg.vocab_size, text_cfg.min_frequency, text_cfg.lowercase
        )
    out_dir = Path(out_dir)
    save_tokenizer(tok, out_dir)
    stats: dict[str, Any] = {}
    for name, idx in parts.items():
        split_texts = [texts[i] for i in idx]
        enc = encode(tok, split_texts, text_cfg.max_length)
        arrays = {"x": enc.ids, "y": y[idx], "rows": rows[idx], "texts": np.array(split_texts, dtype=str)}
        atomic_write(out_dir / f"{name}.npz", lambda tmp, a=arrays: _save_npz(tmp, a))
        stats[name] = {"truncated": int(enc.truncated.sum()), "unknown_tokens": int((enc.ids == 1).sum())}
    counts = token_counts(tok, train_texts)
    meta = {
        "task": task,
        "dataset": cfg.dataset,
        "objective": cfg.objective,
        "target": cfg.target,
        "text_column": text_cfg.column,
        "classes": classes,
        "splits": {name: len(idx) for name, idx in parts.items()},
        "data_sha256": sha256_file(csv),
        "tokenizer": {
            "file": TOKENIZER_FILE,
            "kind": text_cfg.tokenizer,
            "vocab_size": tok.get_vocab_size(),
            "lowercase": text_cfg.lowercase or text_cfg.tokenizer == MINILM,
            "max_length": text_cfg.max_length,
            "max_chars": text_cfg.max_chars,
            "special_tokens": list(SPECIAL_TOKENS),
            "pad_id": PAD_ID,
            "truncation": TRUNCATION,
            "train_tokens_per_text": {
                q: float(np.percentile(counts, p)) for q, p in (("p50", 50), ("p95", 95), ("max", 100))
            },
            "per_split": stats,
        },
        "input": {"name": "tokens", "dtype": "int64", "shape": [None, None]},
        "output": {"name": "probabilities", "shape": [None, len(classes)]},
    }
    if text_cfg.word2vec_dim:
        train_ids = encode(tok, train_texts, text_cfg.max_length, add_special_tokens=False).ids
        vectors = train_word2vec(
            train_ids, tok.get_vocab_size(), text_cfg.word2vec_dim, text_cfg.word2vec_window,
            text_cfg.word2vec_epochs, seed=cfg.seed,
        )  # fmt: skip
        atomic_write(out_dir / WORD2VEC_FILE, lambda tmp: _save_npy(tmp, vectors))
        meta["word2vec"] = {
            "file": WORD2VEC_FILE,
            "dim": text_cfg.word2vec_dim,
            "window": text_cfg.word2vec_window,
            "epochs": text_cfg.word2vec_epochs,
            "method": "skip-gram with negative sampling on the train split's token ids",
        }
    meta = TaskMeta(kind="text", **meta)
    meta.write(out_dir)
    return meta


def train_word2vec(
    ids: np.ndarray,
    vocab_size: int,
    dim: int,
    window: int = 4,
    epochs: int = 3,
    negatives: int = 5,
    batch: int = 8192,
    lr: float = 0.01,
    seed: int = 42,
) -> np.ndarray:
    """Skip-gram with negative sampling (Mikolov et al. 2013) over padded id rows (PAD_ID ends a row).

    Returns float32 [vocab_size, dim] input vectors; special tokens keep small random vectors (they never
    occur as words), and [PAD]'s row is zero."""
    import torch
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(seed)
    x = torch.as_tensor(ids)
    centres, contexts = [], []
    for offset in range(1, window + 1):  # every (centre, context) pair within the window, both directions
        a, b = x[:, :-offset], x[:, offset:]
        ok = (a >= len(SPECIAL_TOKENS)) & (b >= len(SPECIAL_TOKENS))
        centres += [a[ok], b[ok]]
        contexts += [b[ok], a[ok]]
    centre, context = torch.cat(centres), torch.cat(contexts)
    counts = torch.bincount(x[x >= len(SPECIAL_TOKENS)].flatten(), minlength=vocab_size).double()
    noise = counts.pow(0.75)
    noise /= noise.sum()
    w_in = torch.nn.Embedding(vocab_size, dim)  # dense Adam: SparseAdam's coalescing was 3x slower here
    w_out = torch.nn.Embedding(vocab_size, dim)
    torch.nn.init.uniform_(w_in.weight, -0.5 / dim, 0.5 / dim, generator=gen)
    torch.nn.init.zeros_(w_out.weight)
    opt = torch.optim.Adam([*w_in.parameters(), *w_out.parameters()], lr=lr, fused=True)  # one pass per table
    for _ in range(epochs):
        order = torch.randperm(len(centre), generator=gen)
        for start in range(0, len(order), batch):
            idx = order[start : start + batch]
            c, o = w_in(centre[idx]), w_out(context[idx])
            neg = w_out(torch.multinomial(noise, len(idx) * negatives, replacement=True, generator=gen))
            neg = neg.view(len(idx), negatives, dim)
            loss = -F.logsigmoid((c * o).sum(-1)).mean() - F.logsigmoid(-(neg @ c.unsqueeze(-1))).sum(1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    vectors = w_in.weight.detach().numpy().astype(np.float32)
    vectors[PAD_ID] = 0.0
    return vectors


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as fh:
        np.save(fh, array)


def load_texts(data_dir: Path, split: str) -> list[str]:
    """The raw texts of one split, in the order of its ids."""
    with np.load(Path(data_dir) / f"{split}.npz") as z:
        return z["texts"].tolist()
