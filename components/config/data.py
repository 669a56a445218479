"""params.yaml `prepare.<task>` and `augment.<task>`: how raw data becomes splits, and the training augmentation."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    Field,
    model_validator,
)

from components.config.base import MINILM, MINILM_MAX_LEN, _Strict


class LMConfig(_Strict):
    """prepare.<task>.lm: a corpus -> token windows (causal_lm, masked_lm), or tab-separated pairs -> padded ids
    (seq2seq)."""

    block_size: int = Field(128, ge=4, description="causal_lm, masked_lm: tokens per window (the context length)")
    stride: int | None = Field(None, ge=1, description="causal_lm: step between training windows (default block_size)")
    val_windows: int = Field(256, ge=1, description="causal_lm, masked_lm: windows checked every epoch (test: all)")
    max_len: int = Field(64, ge=4, description="seq2seq: longest source or target in tokens, BOS/EOS included")
    vocab_size: int = Field(4000, ge=16, description="masked_lm: WordPiece vocabulary, special tokens included")
    mask_rate: float = Field(0.15, gt=0, lt=1, description="masked_lm: share of tokens to predict (80/10/10 rule)")
    mask_copies: int = Field(
        1, ge=1, le=50, description="masked_lm: masked copies of each training window, each with its own draw"
    )


class TextConfig(_Strict):
    """prepare.<task>.text: a text dataset (data.csv with `text` and `target`) tokenised for sequence models.

    The tokenizer (components/data/text/tokenization.py) is trained on the training split only and saved as
    tokenizer.json beside the splits; serving reads it from there."""

    column: str = Field("text", description="the text column of data.csv")
    tokenizer: Literal["wordpiece", "bpe", "char", "minilm"] = Field(
        "wordpiece",
        description="train subwords, byte-level BPE or chars; minilm = the pretrained all-MiniLM-L6-v2's 30,522-token "
        "WordPiece (for train.init_from: minilm; vocab_size, min_frequency, lowercase do not apply)",
    )
    vocab_size: int = Field(8000, ge=16, description="tokenizer vocabulary, special tokens included")
    min_frequency: int = Field(2, ge=1, description="a token must occur this often in training")
    lowercase: bool = True
    max_length: int = Field(64, ge=4, description="tokens per text with [CLS]/[SEP]; longer texts keep their start")
    max_chars: int = Field(5000, ge=1, description="serving refuses longer texts (413); tokens are truncated anyway")
    dedupe: bool = Field(True, description="drop repeated texts (keeping the first) so no text is in two splits")
    tokenizer_from: str | None = Field(
        None, description="use this tokenizer.json (e.g. a pretrained encoder's) instead of training one"
    )
    word2vec_dim: int = Field(0, ge=0, description="train skip-gram vectors of this size on the train split (0 = no)")
    word2vec_epochs: int = Field(3, ge=1)
    word2vec_window: int = Field(4, ge=1)

    @model_validator(mode="after")
    def _minilm(self) -> TextConfig:
        if self.tokenizer == MINILM and self.tokenizer_from:
            raise ValueError("tokenizer minilm is a pretrained vocabulary already; drop tokenizer_from")
        if self.tokenizer == MINILM and self.max_length > MINILM_MAX_LEN:
            raise ValueError(f"tokenizer minilm: the MiniLM has {MINILM_MAX_LEN} positions, max_length is larger")
        return self


class SeriesConfig(_Strict):
    """prepare.<task>.series: a univariate time series (data.csv with `date`, `value`) cut into windows.

    The split is chronological (train span, then validation, then test; nothing shuffled across it); the
    scaler is fitted on the training span only; a window belongs to the span its targets fall in."""

    freq: str | None = Field(None, description="pandas frequency (W-SAT, D, MS...); None = inferred from the dates")
    fill: Literal["interpolate", "ffill", "none"] = Field("interpolate", description="missing readings; none = refuse")
    window: int = Field(104, ge=2, description="history steps the model reads (also the minimum history served)")
    horizon: int = Field(8, ge=1, description="steps forecast at once (H)")
    stride: int = Field(1, ge=1, description="steps between consecutive training windows")
    seasonal_period: int = Field(52, ge=1, description="season length of the seasonal-naive baseline")


class PrepareConfig(_Strict):
    """How raw data becomes scaled, split arrays and meta.json."""

    dataset: str = Field(description="dataset name under data/raw/ (see `dlpipe data list`)")
    objective: Literal["binary", "multiclass", "regression", "causal_lm", "masked_lm", "seq2seq"]
    target: str = "target"
    val_size: float = Field(0.15, gt=0, lt=1)
    test_size: float = Field(0.15, gt=0, lt=1)
    seed: int = 42
    train_limit: int | None = Field(None, ge=10, description="keep only this many (stratified) training rows")
    image_size: int | None = Field(None, ge=4, description="images: resize to this square size (None = as stored)")
    grayscale: bool | None = Field(None, description="images: convert to grayscale (None = as stored)")
    text: TextConfig | None = Field(None, description="a text dataset: tokenizer settings (see TextConfig)")
    series: SeriesConfig | None = Field(None, description="a time series: windows and horizon (see SeriesConfig)")
    lm: LMConfig | None = Field(None, description="causal_lm windows / seq2seq pairs (see LMConfig)")

    @model_validator(mode="after")
    def _sizes(self) -> PrepareConfig:
        if self.val_size + self.test_size >= 0.9:
            raise ValueError("val_size + test_size must leave at least 10% of rows for training")
        if self.text is not None and self.series is not None:
            raise ValueError("a dataset is text or a series, not both")
        if self.text is not None and self.objective == "regression":
            raise ValueError("text datasets are classified: use objective binary or multiclass")
        if self.series is not None and self.objective != "regression":
            raise ValueError("series are forecast: use objective regression")
        return self


class AugmentConfig(_Strict):
    """On-the-fly training augmentation (torchvision.transforms.v2) for image tasks; all off by default."""

    rotation: float = Field(0.0, ge=0, le=180, description="random rotation within +-degrees")
    translate: float = Field(0.0, ge=0, lt=1, description="random shift up to this fraction of width/height")
    scale: tuple[float, float] | None = Field(None, description="random zoom range, e.g. [0.9, 1.1]")
    crop_scale: tuple[float, float] | None = Field(None, description="random resized crop area range, e.g. [0.8, 1]")
    hflip: bool = Field(False, description="random horizontal flip (off for digits: a flipped 2 is no 2)")
    colour_jitter: float = Field(0.0, ge=0, lt=1, description="brightness/contrast/saturation jitter (RGB only)")
    noise_std: float = Field(0.0, ge=0, description="Gaussian noise std, in normalised units")
    erasing: float = Field(0.0, ge=0, le=1, description="probability of random erasing")
    group_size: int = Field(
        8, ge=1, description="images that share one draw of torchvision's ops (affine and flip draw per image)"
    )
    preview: int = Field(32, ge=0, description="augmented training images in the preview grid")
    seed: int = 0
