"""What a finished study reports: the best point (best_params.yaml, decoded to params.yaml values), the summary
(tuning.json, with the Pareto front of a multi-objective study) and its plots.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from components.config import TuneConfig
from components.core.io import atomic_write, write_json


def summarise(study: Any, cfg: TuneConfig) -> dict[str, Any]:
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    count = {s.name.lower(): sum(1 for t in trials if t.state == s) for s in TrialState}
    summary: dict[str, Any] = {
        "n_complete": count["complete"],
        "n_pruned": count["pruned"],
        "n_failed": count["fail"],
        "epochs_trained": sum(t.user_attrs.get("epochs", 0) for t in trials),
    }
    if count["complete"] == 0:
        return summary
    if len(cfg.directions()) == 1:
        summary["best_value"] = study.best_value
        summary["best_params"] = _decode(study.best_params, cfg)
    else:
        front = study.best_trials
        pick = min(front, key=lambda t: t.values[0] * (1 if cfg.direction == "minimize" else -1))
        summary["pareto_front"] = [{"values": t.values, "params": _decode(t.params, cfg)} for t in front]
        summary["best_value"] = pick.values[0]
        summary["best_params"] = _decode(pick.params, cfg)
    return summary


def _decode(params: dict[str, Any], cfg: TuneConfig) -> dict[str, Any]:
    return {k: json.loads(v) if cfg.space[k].type == "categorical" else v for k, v in params.items()}


def _write_best(out_dir: Path, best: dict[str, Any], summary: dict[str, Any]) -> dict[str, Any]:
    text = yaml.safe_dump(best, sort_keys=True)
    atomic_write(out_dir / "best_params.yaml", lambda tmp: tmp.write_text(text))
    write_json(out_dir / "tuning.json", summary)
    return summary


def plot_study(study: Any, cfg: TuneConfig, plots_dir: Path) -> None:
    """Static PNGs via optuna's matplotlib backend; interactive HTML too when plotly is installed."""
    import importlib.util
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna.visualization as vis
    import optuna.visualization.matplotlib as mvis

    plots_dir.mkdir(parents=True, exist_ok=True)
    (plots_dir / "tuning_off.png").unlink(missing_ok=True)
    multi = len(cfg.directions()) > 1
    names = (
        ["pareto_front", "param_importances", "parallel_coordinate"]
        if multi
        else ["optimization_history", "param_importances", "parallel_coordinate", "intermediate_values"]
    )
    target = {"target": lambda t: t.values[0], "target_name": cfg.metric} if multi else {}
    html = importlib.util.find_spec("plotly") is not None
    for name in names:
        kwargs = {} if name in ("pareto_front", "intermediate_values") else target
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ax = getattr(mvis, f"plot_{name}")(study, **kwargs)
            except (ValueError, RuntimeError):  # e.g. importances need 2+ complete trials
                continue
            fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
            fig.set_size_inches(7, 4.5)
            fig.tight_layout()
            fig.savefig(plots_dir / f"{name}.png", dpi=90)
            plt.close(fig)
            if html:
                getattr(vis, f"plot_{name}")(study, **kwargs).write_html(plots_dir / f"{name}.html")


def plot_tuning_off(plots_dir: Path, task: str) -> None:
    """tuning_off.png: a card saying the task is not tuned, so `dvc plots show|diff` renders every task's tuning
    folder (an empty folder is an error there) and says why it holds no study plots."""
    from PIL import Image, ImageDraw

    plots_dir.mkdir(parents=True, exist_ok=True)
    for old in [*plots_dir.glob("*.png"), *plots_dir.glob("*.html")]:  # an earlier study's plots are stale now
        old.unlink()
    card = Image.new("RGB", (420, 60), "white")
    ImageDraw.Draw(card).text((12, 22), f"{task}: tuning off (tune.{task}.n_trials = 0)", fill="black")
    atomic_write(plots_dir / "tuning_off.png", lambda tmp: card.save(tmp, format="PNG"))
