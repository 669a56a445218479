"""Prepare for token-sequence objectives: a text corpus -> next-character windows (causal_lm) or masked WordPiece
windows (masked_lm), tab-separated pairs -> padded source/target id tensors (seq2seq). The vocabulary goes into
meta.json (masked_lm: tokenizer.json), which every later step and the server read, so encoding never drifts
between training and serving.

causal_lm (nanoGPT's split): the first 90% of the characters train, the last 10% are held out. test is every
window of that tail (the reported validation loss, as nanoGPT's); val, watched each epoch, a seeded sample of
those windows, so an epoch's check stays cheap. seq2seq: a seeded random split of the pairs, so
every test input is a number never seen in training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from components.config import LMConfig, PrepareConfig
from components.core.contract import TaskMeta
from components.core.errors import DataError
from components.core.io import atomic_write, sha256_file
from components.core.tokens import BOS, EOS, IGNORE, SEQ2SEQ_SPECIALS, UNK
from components.data.ingest import PAIRS_FILE, TEXT_FILE
from components.data.splits import split_indices

SPECIALS = SEQ2SEQ_SPECIALS  # seq2seq ids 0..3


class Vocab:
    """Token <-> id; unknown tokens map to [UNK] when the vocabulary has one."""

    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.index = {t: i for i, t in enumerate(tokens)}

    def encode(self, tokens: list[str] | str) -> list[int]:
        unk = self.index.get(UNK)
        if unk is None:
            missing = sorted({t for t in tokens if t not in self.index})
            if missing:
                raise DataError(f"not in the vocabulary: {missing[:10]}")
        return [self.index.get(t, unk) for t in tokens]

    def decode(self, ids: list[int] | np.ndarray, sep: str = "") -> str:
        return sep.join(self.tokens[i] for i in ids if self.tokens[i] not in SPECIALS)


def source_tokens(text: str) -> list[str]:
    """seq2seq source: one token per character (digits)."""
    return list(text)


def target_tokens(text: str) -> list[str]:
    """seq2seq target: one token per word."""
    return text.split()


def prepare_lm(folder: Path, out_dir: Path, cfg: PrepareConfig, task: str) -> TaskMeta:
    lm_cfg = cfg.lm or LMConfig()
    if cfg.objective == "causal_lm":
        return _prepare_lm(folder / TEXT_FILE, Path(out_dir), cfg, lm_cfg, task)
    if cfg.objective == "masked_lm":
        return _prepare_mlm(folder / TEXT_FILE, Path(out_dir), cfg, lm_cfg, task)
    return _prepare_pairs(folder / PAIRS_FILE, Path(out_dir), cfg, lm_cfg, task)


def _prepare_lm(path: Path, out_dir: Path, cfg: PrepareConfig, lm_cfg: LMConfig, task: str) -> TaskMeta:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run `dlpipe data pull` (or `dlpipe data ingest NAME --text`)")
    text = path.read_text(encoding="utf-8")
    vocab = Vocab(sorted(set(text)))  # character level, as nanoGPT's shakespeare_char
    ids = np.asarray(vocab.encode(text), dtype=np.int64)
    cut = int(len(ids) * (1 - cfg.val_size))
    block = lm_cfg.block_size
    if cut <= block or len(ids) - cut <= block:
        raise DataError(f"{path}: {len(ids)} characters are too few for block_size {block} and val_size {cfg.val_size}")
    train = _windows(ids[:cut], block, lm_cfg.stride or block)
    test = _windows(ids[cut:], block, block)
    pick = np.random.default_rng(cfg.seed).permutation(len(test[0]))[: lm_cfg.val_windows]
    val = test[0][np.sort(pick)], test[1][np.sort(pick)]
    for name, (x, y) in (("train", train), ("val", val), ("test", test)):
        atomic_write(out_dir / f"{name}.npz", lambda tmp, x=x, y=y: _save(tmp, x, y))
    meta = _meta(task, cfg, vocab, path, {"train": len(train[0]), "val": len(val[0]), "test": len(test[0])})
    meta |= {
        "tokenizer": "char",
        "model_inputs": {"vocab_size": len(vocab.tokens), "max_len": block},
        "input": {"name": "ids", "dtype": "int64", "shape": [None, None]},
        "text": {"train_characters": cut, "held_out_characters": len(ids) - cut},
    }
    meta = TaskMeta(kind="tokens", **meta)
    meta.write(out_dir)
    return meta


def _prepare_mlm(path: Path, out_dir: Path, cfg: PrepareConfig, lm_cfg: LMConfig, task: str) -> TaskMeta:
    """Paragraphs (blank-line separated) split seeded into train/val/test; a WordPiece tokenizer trained on the
    train paragraphs (components/data/text/tokenization.py, saved beside the splits); each split's token stream packed
    into [CLS] ... [SEP] windows of block_size and masked, seeded (static masking, BERT's original recipe:
    the training windows are masked `mask_copies` times with different draws, as BERT duplicated its data, so
    a model trained for many epochs cannot just memorise one mask per window)."""
    from components.data.text import tokenization as tk
    from components.data.text.mlm import mask_tokens

    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run `dlpipe data pull` first")
    paragraphs = [p.strip() for p in path.read_text(encoding="utf-8").split("\n\n") if p.strip()]
    if len(paragraphs) < 20:
        raise DataError(f"{path}: only {len(paragraphs)} paragraphs (blank-line separated); at least 20 are needed")
    parts = split_indices(np.zeros(len(paragraphs)), cfg, stratified=False)
    tok = tk.train_tokenizer([paragraphs[i] for i in parts[0]], "wordpiece", lm_cfg.vocab_size)
    tk.save_tokenizer(tok, out_dir)
    vocab_size, body = tok.get_vocab_size(), lm_cfg.block_size - 2
    rng = np.random.default_rng(cfg.seed)
    splits = {}
    for name, rows in zip(("train", "val", "test"), parts, strict=True):
        ids = np.concatenate([e.ids for e in tok.encode_batch([paragraphs[i] for i in rows], add_special_tokens=False)])
        chunks = ids[: len(ids) // body * body].reshape(-1, body)  # (N, block - 2)
        if name == "val":
            chunks = chunks[: lm_cfg.val_windows]
        if name == "train":
            chunks = np.tile(chunks, (lm_cfg.mask_copies, 1))  # (copies * N, block - 2), masked independently below
        n = len(chunks)
        windows = np.concatenate([np.full((n, 1), tk.CLS_ID), chunks, np.full((n, 1), tk.SEP_ID)], 1)  # (N, block)
        normal = windows >= len(tk.SPECIAL_TOKENS)
        x, y = mask_tokens(windows, normal, tk.MASK_ID, len(tk.SPECIAL_TOKENS), vocab_size, rng, lm_cfg.mask_rate)
        atomic_write(out_dir / f"{name}.npz", lambda tmp, x=x, y=y: _save(tmp, x, y))
        splits[name] = n
    meta = _meta(task, cfg, Vocab([]), path, splits)
    meta |= {
        "vocab": None,  # in tokenizer.json
        "output": {"name": "logits", "shape": [None, None, vocab_size]},
        "tokenizer": {
            "file": tk.TOKENIZER_FILE,
            "kind": "wordpiece",
            "vocab_size": vocab_size,
            "lowercase": True,
            "max_length": lm_cfg.block_size,
            "special_tokens": list(tk.SPECIAL_TOKENS),
            "pad_id": tk.PAD_ID,
            "truncation": tk.TRUNCATION,
        },
        "masking": {
            "rate": lm_cfg.mask_rate,
            "rule": "80% [MASK], 10% random token, 10% unchanged",
            "static": True,
            "copies": lm_cfg.mask_copies,
        },
        "model_inputs": {"vocab_size": vocab_size, "max_len": lm_cfg.block_size, "pad_id": tk.PAD_ID},
        "input": {"name": "tokens", "dtype": "int64", "shape": [None, None]},
    }
    meta = TaskMeta(kind="tokens", **meta)
    meta.write(out_dir)
    return meta


def _windows(ids: np.ndarray, block: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Inputs ids[i : i + block] and targets ids[i + 1 : i + block + 1] every `stride`: (N, block) each."""
    starts = np.arange(0, len(ids) - block, stride)
    x = np.stack([ids[s : s + block] for s in starts])
    y = np.stack([ids[s + 1 : s + block + 1] for s in starts])
    return x, y


def _prepare_pairs(path: Path, out_dir: Path, cfg: PrepareConfig, lm_cfg: LMConfig, task: str) -> TaskMeta:

    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run `dlpipe data pull` first")
    pairs = [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines() if line]
    bad = next((i for i, p in enumerate(pairs) if len(p) != 2), None)
    if bad is not None:
        raise DataError(f"{path}:{bad + 1}: expected 'source<TAB>target'")
    src = [source_tokens(a) for a, _ in pairs]
    tgt = [target_tokens(b) for _, b in pairs]
    longest = max(max(map(len, src)), max(map(len, tgt)) + 1)
    if longest > lm_cfg.max_len:
        raise DataError(f"{path}: a sequence of {longest} tokens (EOS included) exceeds lm.max_len {lm_cfg.max_len}")
    idx_train, idx_val, idx_test = split_indices(np.zeros(len(pairs)), cfg, stratified=False)
    seen = sorted({t for i in idx_train for t in src[i] + tgt[i]})
    vocab = Vocab(SPECIALS + seen)
    for name, rows in zip(("train", "val", "test"), (idx_train, idx_val, idx_test), strict=True):
        x, y = encode_pairs([src[i] for i in rows], [tgt[i] for i in rows], vocab, longest)
        atomic_write(out_dir / f"{name}.npz", lambda tmp, x=x, y=y: _save(tmp, x, y))
    meta = _meta(task, cfg, vocab, path, {"train": len(idx_train), "val": len(idx_val), "test": len(idx_test)})
    meta |= {
        "tokenizer": "source: characters, target: words",
        "model_inputs": {"vocab_size": len(vocab.tokens), "max_len": lm_cfg.max_len, "pad_id": 0},
        "special_ids": {t: i for i, t in enumerate(SPECIALS)},
        "input": {"name": "src_tgt", "dtype": "int64", "shape": [None, 2, None]},
    }
    meta = TaskMeta(kind="tokens", **meta)
    meta.write(out_dir)
    return meta


def encode_pairs(
    src: list[list[str]], tgt: list[list[str]], vocab: Vocab, length: int
) -> tuple[np.ndarray, np.ndarray]:
    """x (N, 2, length): source ids and [BOS] + target ids, [PAD]-padded; y (N, length): target ids + [EOS],
    IGNORE on padding, so the loss skips it."""
    x = np.zeros((len(src), 2, length), dtype=np.int64)
    y = np.full((len(src), length), IGNORE, dtype=np.int64)
    bos, eos = vocab.index[BOS], vocab.index[EOS]
    for i, (s, t) in enumerate(zip(src, tgt, strict=True)):
        s_ids, t_ids = vocab.encode(s), vocab.encode(t)
        x[i, 0, : len(s_ids)] = s_ids
        x[i, 1, : len(t_ids) + 1] = [bos, *t_ids]
        y[i, : len(t_ids) + 1] = [*t_ids, eos]
    return x, y


def _meta(task: str, cfg: PrepareConfig, vocab: Vocab, path: Path, splits: dict[str, int]) -> dict[str, Any]:
    return {
        "task": task,
        "dataset": cfg.dataset,
        "objective": cfg.objective,
        "vocab": vocab.tokens,
        "classes": None,
        "splits": splits,
        "data_sha256": sha256_file(path),
        "output": {"name": "logits", "shape": [None, None, len(vocab.tokens)]},
    }


def _save(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    with open(path, "wb") as fh:
        np.savez(fh, x=x, y=y)
