"""Tokenizers for the text tasks, trained on the training split with Hugging Face `tokenizers`.

Shared by every text model (RNN, transformer) and by serving, so text becomes the same ids everywhere:

    tok = train_tokenizer(train_texts, kind="wordpiece", vocab_size=8000)   # or "bpe", "char"
    save_tokenizer(tok, data_dir)                 # -> data_dir/tokenizer.json (prepare does this)
    tok = load_tokenizer(data_dir)                # train / evaluate / export / serving
    enc = encode(tok, ["a fine film", "dull"], max_length=64)
    enc.ids        # int64 [N, L]: [CLS] tokens... [SEP] [PAD]...  (L = max_length, or the longest with pad="longest")
    enc.mask       # int64 [N, L]: 1 on real tokens (specials included), 0 on padding
    enc.lengths    # int64 [N]:   real tokens per row
    enc.truncated  # bool  [N]:   the text had more tokens than fit

Special tokens have fixed ids in every kind of tokenizer: [PAD]=0, [UNK]=1, [CLS]=2, [SEP]=3, [MASK]=4.

Kinds:
- `wordpiece`: BERT-style (Unicode normalisation, optional lower-casing and accent stripping, split on
  whitespace and punctuation, `##` continuation pieces). Unknown characters become [UNK]. The same texts
  give the same tokenizer every time (`_continuation_pieces`).
- `bpe`: byte-level BPE (GPT-2 style): every string is representable, there is never an [UNK].
- `char`: one token per character (spaces included) for character-level models; characters seen fewer
  than `min_frequency` times in training become [UNK].

Truncation rule (TRUNCATION below): with special tokens, a text keeps its first `max_length - 2` tokens,
wrapped as [CLS] ... [SEP]; without them, its first `max_length` tokens. The end is dropped, never the
start. Padding is on the right with [PAD].
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from components.core.io import atomic_write
from components.core.tokens import (  # noqa: F401  (re-exported: tk.PAD_ID, encode and the like)
    CLS,
    CLS_ID,
    MASK,
    MASK_ID,
    PAD,
    PAD_ID,
    SEP,
    SEP_ID,
    SPECIAL_TOKENS,
    UNK,
    UNK_ID,
    Encoded,
    encode,
)

# The Rust thread pool would warn (and disable itself) after every fork: DataLoader workers, servers.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers  # noqa: E402

KINDS = ("wordpiece", "bpe", "char")
TOKENIZER_FILE = "tokenizer.json"
TRUNCATION = (
    "texts longer than max_length tokens keep their first max_length - 2 tokens between [CLS] and [SEP] "
    "(the end is dropped); shorter ones are padded on the right with [PAD]"
)
Kind = Literal["wordpiece", "bpe", "char"]


def train_tokenizer(
    texts: Iterable[str],
    kind: Kind = "wordpiece",
    vocab_size: int = 8000,
    min_frequency: int = 2,
    lowercase: bool = True,
) -> Tokenizer:
    """Train a tokenizer of `kind` on `texts` (the training split only: no look at validation or test).

    `vocab_size` counts the special tokens; a small corpus may yield fewer. The result adds [CLS] / [SEP]
    when encoding with special tokens, and has no padding or truncation of its own (see `encode`).
    """
    if kind not in KINDS:
        raise ValueError(f"tokenizer kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if vocab_size <= len(SPECIAL_TOKENS):
        raise ValueError(f"vocab_size must exceed the {len(SPECIAL_TOKENS)} special tokens, got {vocab_size}")
    specials = list(SPECIAL_TOKENS)
    texts = [t for t in texts if t]
    if kind == "wordpiece":
        tok = Tokenizer(models.WordPiece(unk_token=UNK, max_input_chars_per_word=100))
        tok.normalizer = normalizers.BertNormalizer(lowercase=lowercase, strip_accents=lowercase, clean_text=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece()
        pieces = _continuation_pieces(tok, texts)
        trainer = trainers.WordPieceTrainer(
            vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=specials + pieces
        )
    elif kind == "bpe":
        tok = Tokenizer(models.BPE())
        tok.normalizer = _normalizer(lowercase)
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=specials,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        )
    else:
        tok = Tokenizer(models.WordLevel(unk_token=UNK))
        tok.normalizer = _normalizer(lowercase)
        tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
        tok.decoder = decoders.Fuse()
        trainer = trainers.WordLevelTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=specials)
    tok.train_from_iterator(texts, trainer=trainer)
    if kind == "wordpiece":
        tok = _only_specials_special(tok)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{CLS} $A {SEP}",
        pair=f"{CLS} $A {SEP} $B:1 {SEP}:1",
        special_tokens=[(CLS, CLS_ID), (SEP, SEP_ID)],
    )
    _check_special_ids(tok)
    return tok


def _continuation_pieces(tok: Tokenizer, texts: list[str]) -> list[str]:
    """`##c` for each character that continues a word of `texts` (after normalisation and pre-tokenisation), in
    sorted order. The WordPiece trainer creates these pieces while it walks a hash map of the words, so their ids
    came in a different order each run, and through those ids so did its choice between merges of equal count
    (huggingface/tokenizers#1794, open in 0.23): four trainings of encoder_mlm's 4,000-token vocabulary gave four
    different id maps (some 200 ids apart) and once a different token. Handed to the trainer up front, as special
    tokens, they get fixed ids, and six trainings in six processes wrote the same tokenizer.json."""
    inner: set[str] = set()
    for text in texts:
        for word, _ in tok.pre_tokenizer.pre_tokenize_str(tok.normalizer.normalize_str(text)):
            inner.update(word[1:])
    return [f"##{c}" for c in sorted(inner)]


def _only_specials_special(tok: Tokenizer) -> Tokenizer:
    """The same tokenizer with only SPECIAL_TOKENS as added (special) tokens: the `##c` pieces that
    `_continuation_pieces` passed as special tokens stay in the vocabulary with their ids, as plain pieces (a
    special token would be matched in raw text and dropped when decoding)."""
    spec = json.loads(tok.to_str())
    spec["added_tokens"] = [t for t in spec["added_tokens"] if t["content"] in SPECIAL_TOKENS]
    return Tokenizer.from_str(json.dumps(spec))


def _normalizer(lowercase: bool) -> normalizers.Normalizer:
    steps = [normalizers.NFKC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Strip()]
    return normalizers.Sequence(steps + ([normalizers.Lowercase()] if lowercase else []))


def _check_special_ids(tok: Tokenizer) -> None:
    ids = [tok.token_to_id(t) for t in SPECIAL_TOKENS]
    if ids != list(range(len(SPECIAL_TOKENS))):
        raise ValueError(f"special tokens got ids {dict(zip(SPECIAL_TOKENS, ids, strict=True))}, expected 0..4")


def save_tokenizer(tok: Tokenizer, folder: Path | str) -> Path:
    """Write `folder/tokenizer.json` atomically (the format `Tokenizer.from_file` and transformers read)."""
    path = Path(folder) / TOKENIZER_FILE
    return atomic_write(path, lambda tmp: tok.save(str(tmp)))


def load_tokenizer(path: Path | str) -> Tokenizer:
    """Load `path` (a tokenizer.json, or a folder holding one) with padding and truncation turned off:
    `encode` owns both, so a file saved by another tool cannot change the rule silently."""
    path = Path(path)
    file = path / TOKENIZER_FILE if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"{file} not found: run the prepare step first (it trains the tokenizer)")
    tok = Tokenizer.from_file(str(file))
    tok.no_padding()
    tok.no_truncation()
    _check_special_ids(tok)
    return tok


def token_counts(tok: Tokenizer, texts: Sequence[str]) -> np.ndarray:
    """Tokens per text without special tokens (to choose max_length from a length percentile)."""
    return np.array([len(e.ids) for e in tok.encode_batch(list(texts), add_special_tokens=False)], dtype=np.int64)


def decode(tok: Tokenizer, ids: Sequence[int] | np.ndarray) -> str:
    """Ids back to text, special tokens and padding skipped."""
    return tok.decode([int(i) for i in ids], skip_special_tokens=True)
