"""Token constants every text and token-sequence module agrees on: the special tokens and their ids, and the
target id that carries no loss. Plain values, so data, training, evaluation and serving share them without
importing each other."""

from __future__ import annotations

IGNORE = -100  # target id of positions that carry no loss (padding); PyTorch's cross-entropy default

# Tokenizers of text and masked_lm tasks (WordPiece, BPE, characters): ids 0..4 in every vocabulary.
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
PAD, UNK, CLS, SEP, MASK = SPECIAL_TOKENS
PAD_ID, UNK_ID, CLS_ID, SEP_ID, MASK_ID = range(len(SPECIAL_TOKENS))

# The seq2seq word vocabulary: ids 0..3.
BOS, EOS = "[BOS]", "[EOS]"
SEQ2SEQ_SPECIALS = [PAD, BOS, EOS, UNK]
