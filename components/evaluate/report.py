"""Where every evaluation's results go: metrics/<task>.json (rounded), and the task's MLflow run (test_* metrics,
the plots folder, the metrics file, and any tags)."""

from __future__ import annotations

from pathlib import Path

from components.core import tracking
from components.core.io import write_json


def publish(
    scores: dict[str, float], metrics_path: Path, plots_dir: Path, model_dir: Path, tags: dict[str, str] | None = None
) -> dict[str, float]:
    """Round the scores, write them to `metrics_path`, log them with the plots to the run train opened."""
    scores = {k: round(float(v), 6) for k, v in scores.items()}
    write_json(Path(metrics_path), scores)
    with tracking.resume_task_run(model_dir):
        mlflow = tracking.configure()
        mlflow.log_metrics({f"test_{k}": v for k, v in scores.items()})
        mlflow.log_artifacts(str(plots_dir), artifact_path="plots")
        mlflow.log_artifact(str(metrics_path))
        if tags:
            mlflow.set_tags(tags)
    return scores
