"""The BERT lesson as an experiment (DVC stage `encoder_finetune`, `dvc exp run`-able): masked-LM pretraining,
then sentiment classification with a [CLS] head, against the same encoder trained from scratch.

The pretraining is the `encoder_mlm` task's own train stage (its checkpoint and tokenizer are DVC outputs, so a
fine-tuning experiment reuses them from the cache). Here VADER's movie snippets are tokenised with the
pretrained WordPiece vocabulary (the ids must mean what they meant in pretraining), and both variants train
with the same config, epochs, data and seed; the pretrained one starts its `backbone` (embeddings + encoder
stack) from the checkpoint through `init_from`. The pretrained variant is then exported (classifier,
attention maps, sentence vectors) and registered as model `encoder`, which `dlpipe serve --task encoder`
serves. Test scores of both go to metrics/encoder_finetune.json.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from pydantic import Field

from components.config import ExportConfig, PrepareConfig, RegisterConfig, TextConfig, TrainConfig, _Strict
from components.errors import DlpipeError
from components.evaluate import evaluate
from components.export import export
from components.io import read_json, write_json
from components.prepare import prepare
from components.register import register
from components.tokenization import TOKENIZER_FILE
from components.train import train

TASK = "encoder"


class EncoderStudyConfig(_Strict):
    """params.yaml `experiments.encoder_finetune`."""

    pretrained: str = Field("artifacts/encoder_mlm", description="the encoder_mlm task's folder (checkpoint, data/)")
    dataset: str = Field("vader_movie", description="a labelled text dataset (data.csv with text, target)")
    objective: str = "binary"
    train_limit: int | None = Field(None, ge=10, description="keep only this many training texts")
    train: dict[str, Any] = Field(default_factory=dict, description="train settings shared by both variants")
    register_model: bool = Field(True, description="register the pretrained variant as model `encoder`")
    seed: int = 42


def encoder_study(raw_dir: Path, work_dir: Path, metrics_path: Path, cfg: EncoderStudyConfig) -> dict[str, Any]:
    """Prepare once, train `pretrained` and `scratch` into work_dir/<variant>, export and register the first."""
    source, work_dir = Path(cfg.pretrained), Path(work_dir)
    checkpoint, tokenizer = source / "checkpoint.pt", source / "data" / TOKENIZER_FILE
    if not checkpoint.is_file() or not tokenizer.is_file():
        raise DlpipeError(f"{source}: no checkpoint.pt and data/{TOKENIZER_FILE}: run the encoder_mlm task first")
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    max_length = ckpt["meta"]["model_inputs"]["max_len"]
    text = TextConfig(tokenizer_from=str(tokenizer), max_length=max_length)
    prep = PrepareConfig(
        dataset=cfg.dataset, objective=cfg.objective, train_limit=cfg.train_limit, seed=cfg.seed, text=text
    )
    prepare(raw_dir, work_dir / "data", prep, TASK)
    model = {**ckpt["model_config"], "head": "cls"}  # the pretrained architecture, a classifier head
    results: dict[str, Any] = {}
    for name, init in (("pretrained", {"init_from": str(checkpoint)}), ("scratch", {})):
        train_cfg = TrainConfig.model_validate({**cfg.train, "model": model, "seed": cfg.seed, **init})
        started = time.perf_counter()
        out = work_dir / name
        train(work_dir / "data", out, train_cfg, f"{TASK}_{name}", progress=False)
        scores = evaluate(work_dir / "data", out, out / "metrics.json", out / "plots")
        results[name] = {
            "accuracy": scores["accuracy"],
            "f1": scores["f1"],
            "train_seconds": round(time.perf_counter() - started, 1),
        }
    results["pretraining"] = {k: v for k, v in read_json(source / "train.json")["best_metrics"].items() if "val" in k}
    parity = export(work_dir / "data", work_dir / "pretrained", work_dir, ExportConfig())
    results["onnx_parity_max_abs_diff"] = parity["parity_max_abs_diff"]
    if cfg.register_model:
        best = work_dir / "pretrained"
        rule = RegisterConfig(primary_metric="accuracy")
        register(work_dir / "data", best, work_dir, best / "metrics.json", work_dir / "registration.json", TASK, rule)
    write_json(Path(metrics_path), results)
    return results
