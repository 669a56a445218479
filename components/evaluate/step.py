"""Evaluate step: test-split metrics to metrics/<task>.json and plots to plots/<task>/, logged to MLflow."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from sklearn import metrics as skm  # noqa: E402

from components.core import tracking  # noqa: E402
from components.core.io import write_json  # noqa: E402
from components.train.objectives import SEQUENCE_OBJECTIVES, OutputHead  # noqa: E402
from components.data.prepare import load_meta, load_split  # noqa: E402
from components.train.step import load_trained  # noqa: E402
from components.train.loop import predict  # noqa: E402

WORST = 24  # misclassified test images shown, most confident mistakes first


def evaluate(data_dir: Path, model_dir: Path, metrics_path: Path, plots_dir: Path) -> dict[str, float]:
    """Score the trained model on the test split; write metrics JSON and plots; log both to the run."""
    if load_meta(data_dir)["objective"] in SEQUENCE_OBJECTIVES:  # losses, generation, attention maps
        from components.evaluate.text import evaluate_sequences

        return evaluate_sequences(data_dir, model_dir, metrics_path, plots_dir)
    model, meta = load_trained(model_dir)
    x, y = load_split(data_dir, "test")
    with torch.no_grad():
        out = predict(OutputHead(model, meta), torch.as_tensor(x)).numpy().astype(np.float64)

    plots_dir = Path(plots_dir)
    plots_dir.mkdir(parents=True, exist_ok=True)
    if "series" in meta:  # forecast: MAE / RMSE / MAPE against the seasonal-naive baseline, forecast plot
        scores = forecast_scores(data_dir, meta, out, plots_dir)
    elif meta["objective"] == "regression":
        truth = y * meta["target_scaler"]["scale"] + meta["target_scaler"]["mean"]
        scores = regression_metrics(truth, out[:, 0])
        plot_predictions(truth, out[:, 0], plots_dir / "predicted_vs_actual.png")
    else:
        scores = classification_metrics(y, out, meta["classes"])
        plot_confusion(y, out.argmax(1), meta["classes"], plots_dir / "confusion_matrix.png")
        if meta["objective"] == "binary":
            plot_roc(y, out[:, 1], plots_dir / "roc.png")
        if "tokenizer" in meta and meta["objective"] == "binary":  # texts: the negation behaviour test
            scores |= negation_behaviour(OutputHead(model, meta).eval(), data_dir, meta)
        if "preprocessing" in meta:  # images
            scores |= per_class_accuracy(y, out.argmax(1), meta["classes"])
            plot_worst(x, y, out, meta, plots_dir / "worst_misclassified.png")
    history = read_history(Path(model_dir) / "history.csv")
    plot_learning_curves(history, plots_dir / "learning_curves.png")
    if any(k.startswith("grad_norm/") for k in history[0]):
        plot_gradient_heatmap(history, plots_dir / "gradient_norms.png")

    scores = {k: round(float(v), 6) for k, v in scores.items()}
    write_json(Path(metrics_path), scores)
    with tracking.resume_task_run(model_dir):
        mlflow = tracking.configure()
        mlflow.log_metrics({f"test_{k}": v for k, v in scores.items()})
        mlflow.log_artifacts(str(plots_dir), artifact_path="plots")
        mlflow.log_artifact(str(metrics_path))
    return scores


def classification_metrics(y: np.ndarray, proba: np.ndarray, classes: list[str]) -> dict[str, float]:
    pred = proba.argmax(1)
    proba = proba / proba.sum(axis=1, keepdims=True)  # float32 rounding: make rows sum to exactly 1
    scores = {
        "accuracy": skm.accuracy_score(y, pred),
        "log_loss": skm.log_loss(y, proba, labels=list(range(len(classes)))),
    }
    if len(classes) == 2:
        scores.update(
            precision=skm.precision_score(y, pred, zero_division=0),
            recall=skm.recall_score(y, pred, zero_division=0),
            f1=skm.f1_score(y, pred, zero_division=0),
            roc_auc=skm.roc_auc_score(y, proba[:, 1]),
        )
    else:
        scores["macro_f1"] = skm.f1_score(y, pred, average="macro", zero_division=0)
    return scores


def forecast_scores(data_dir: Path, meta: dict[str, Any], out: np.ndarray, plots_dir: Path) -> dict[str, float]:
    """Test-span MAE / RMSE / MAPE (%) of the model and of the seasonal-naive forecast, their ratios, and the
    forecast plot (history, truth, the model's and the baseline's forecasts)."""
    from components.data.series import forecast_metrics, read_series, seasonal_naive, window_ends

    series, ends, h = read_series(data_dir), window_ends(data_dir, "test"), meta["horizon"]
    values = series["values"]
    truth = values[ends[:, None] + np.arange(1, h + 1)[None, :]]
    naive = seasonal_naive(values, ends, h, meta["series"]["seasonal_period"])
    model, base = forecast_metrics(truth, out), forecast_metrics(truth, naive)
    scores = {**model, **{f"naive_{k}": v for k, v in base.items()}}
    scores |= {f"{k}_ratio_to_naive": model[k] / base[k] for k in ("mae", "rmse", "mape") if base[k] > 0}
    for k in (1, h):  # error growth over the horizon
        scores[f"mae_step{k}"] = float(np.abs(out[:, k - 1] - truth[:, k - 1]).mean())
    plot_forecast(series, ends, out, naive, meta, plots_dir / "forecast.png")
    return scores


def plot_forecast(
    series: dict[str, np.ndarray],
    ends: np.ndarray,
    out: np.ndarray,
    naive: np.ndarray,
    meta: dict[str, Any],
    path: Path,
) -> None:
    """The whole series, the test span's truth, and forecasts from non-overlapping test windows."""
    import pandas as pd

    dates, values, h = pd.to_datetime(series["dates"]), series["values"], meta["horizon"]
    test_from = pd.Timestamp(meta["series"]["spans"]["test"]["from"])
    fig, (ax, zoom) = plt.subplots(2, 1, figsize=(10, 7))
    for a in (ax, zoom):
        a.plot(dates, values, color="0.6", lw=0.8, label="history / truth")
        a.axvline(test_from, color="k", ls=":", lw=0.8)
    for j, i in enumerate(range(0, len(ends), h)):  # consecutive forecasts that do not overlap
        steps = dates[ends[i] + 1 : ends[i] + 1 + h]
        zoom.plot(steps, out[i], color="C0", lw=1.4, label="model" if j == 0 else None)
        zoom.plot(steps, naive[i], color="C3", lw=1, ls="--", label="seasonal naive" if j == 0 else None)
    ax.set(title=f"{meta['dataset']}: train / validation / test spans (test from {test_from.date()})", ylabel="value")
    zoom.set(title=f"Test span: {h}-step forecasts from consecutive windows", ylabel="value")
    first = max(0, ends[0] - 10)
    shown = np.concatenate([values[first:], out.ravel(), naive.ravel()])
    pad = 0.05 * float(np.ptp(shown) or 1.0)
    zoom.set_xlim(dates[first], dates[-1])
    zoom.set_ylim(float(shown.min()) - pad, float(shown.max()) + pad)
    zoom.legend(loc="upper left")
    _save(fig, path)


NEGATION_TEMPLATES = ("the movie was {}", "this film is {}", "the acting was {}", "it is a {} story", "{}")
POSITIVE_WORDS = ("good", "great", "funny", "moving", "wonderful", "entertaining", "beautiful", "clever")
NEGATIVE_WORDS = ("bad", "boring", "dull", "awful", "pointless", "terrible", "stupid", "tedious")


def negation_pairs() -> list[tuple[str, str, int]]:
    """(text, negated text, sign): negating a positive word should lower P(positive) (sign -1), a negative
    word raise it (+1)."""
    pairs = []
    for template in NEGATION_TEMPLATES:
        for words, sign in ((POSITIVE_WORDS, -1), (NEGATIVE_WORDS, 1)):
            pairs += [(template.format(w), template.format(f"not {w}"), sign) for w in words]
    return pairs


def negation_behaviour(head: torch.nn.Module, data_dir: Path, meta: dict[str, Any]) -> dict[str, float]:
    """Behaviour test: P(positive) of "X" vs "not X" over templates. `negation_flip_rate` is the share of
    pairs moved the right way; `negation_mean_shift` the mean signed move (> 0 = right way on average)."""
    from components.data.text.tokenization import encode, load_tokenizer

    positive = meta["classes"].index("positive") if "positive" in meta["classes"] else 1
    tok, pairs = load_tokenizer(data_dir), negation_pairs()
    max_len = meta["tokenizer"]["max_length"]
    plain = encode(tok, [p[0] for p in pairs], max_len, pad="longest").ids
    negated = encode(tok, [p[1] for p in pairs], max_len, pad="longest").ids
    with torch.no_grad():
        p0 = head(torch.as_tensor(plain))[:, positive].numpy()
        p1 = head(torch.as_tensor(negated))[:, positive].numpy()
    moved = (p1 - p0) * np.array([p[2] for p in pairs])
    return {"negation_flip_rate": float((moved > 0).mean()), "negation_mean_shift": float(moved.mean())}


def per_class_accuracy(y: np.ndarray, pred: np.ndarray, classes: list[str]) -> dict[str, float]:
    """Recall of each class, as `accuracy/<class name>`."""
    return {f"accuracy/{name}": float((pred[y == k] == k).mean()) for k, name in enumerate(classes) if (y == k).any()}


def plot_worst(x: np.ndarray, y: np.ndarray, proba: np.ndarray, meta: dict[str, Any], path: Path) -> None:
    """The most confident mistakes: image, true class, predicted class and its probability."""
    pred = proba.argmax(1)
    wrong = np.flatnonzero(pred != y)
    worst = wrong[np.argsort(-proba[wrong, pred[wrong]], kind="stable")][:WORST]
    cols = 8
    rows = max(1, -(-len(worst) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.5, rows * 1.7), squeeze=False)
    mean, std = (np.asarray(meta["preprocessing"][k]).reshape(-1, 1, 1) for k in ("mean", "std"))
    classes = meta["classes"]
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, worst, strict=False):
        image = np.clip(x[i] * std + mean, 0, 1).transpose(1, 2, 0)  # (H, W, C) in 0..1
        ax.imshow(image.squeeze(-1) if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"{classes[y[i]]}\n-> {classes[pred[i]]} {proba[i, pred[i]]:.2f}", fontsize=7)
    fig.suptitle(f"Worst misclassified test images ({len(wrong)} wrong of {len(y)})", fontsize=9)
    _save(fig, path)


def regression_metrics(truth: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    return {
        "rmse": float(np.sqrt(skm.mean_squared_error(truth, pred))),
        "mae": skm.mean_absolute_error(truth, pred),
        "r2": skm.r2_score(truth, pred),
    }


def _save(fig: Any, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_confusion(y: np.ndarray, pred: np.ndarray, classes: list[str], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(4 + 0.4 * len(classes), 3.5 + 0.4 * len(classes)))
    skm.ConfusionMatrixDisplay.from_predictions(
        y, pred, labels=list(range(len(classes))), display_labels=classes, ax=ax, colorbar=False
    )
    ax.set_title("Confusion matrix (test)")
    _save(fig, path)


def plot_roc(y: np.ndarray, score: np.ndarray, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(4.5, 4))
    skm.RocCurveDisplay.from_predictions(y, score, ax=ax)
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set_title("ROC (test)")
    _save(fig, path)


def plot_predictions(truth: np.ndarray, pred: np.ndarray, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.scatter(truth, pred, s=12, alpha=0.7)
    lo, hi = float(min(truth.min(), pred.min())), float(max(truth.max(), pred.max()))
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    ax.set(xlabel="actual", ylabel="predicted", title="Predicted vs actual (test)")
    _save(fig, path)


def read_history(history_csv: Path) -> list[dict[str, float]]:
    with open(history_csv) as fh:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(fh)]


def plot_learning_curves(history: list[dict[str, float]], path: Path) -> None:
    epochs = [r["epoch"] for r in history]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for key in ("train_loss", "val_loss"):
        ax.plot(epochs, [r[key] for r in history], label=key)
    ax.set(xlabel="epoch", ylabel="loss", title="Learning curves")
    ax.legend()
    _save(fig, path)


def plot_gradient_heatmap(history: list[dict[str, float]], path: Path) -> None:
    """Layer x epoch map of log10 mean gradient norms: vanishing layers show as a dark band."""
    layers = [k for k in history[0] if k.startswith("grad_norm/")]
    grid = np.log10(np.array([[max(r[k], 1e-30) for r in history] for k in layers]))
    fig, ax = plt.subplots(figsize=(6, 1.2 + 0.35 * len(layers)))
    image = ax.imshow(grid, aspect="auto", cmap="viridis", interpolation="nearest")
    ax.set_yticks(range(len(layers)), [k.removeprefix("grad_norm/") for k in layers], fontsize=8)
    ax.set(xlabel="epoch", title="log10 gradient norm per layer")
    fig.colorbar(image, ax=ax)
    _save(fig, path)
