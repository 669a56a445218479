"""MLflow tracking helpers on the embedded store: marking a failed pipeline's top-level runs."""

from __future__ import annotations

from pathlib import Path


def test_mark_pipeline_failed_marks_only_that_pipeline_runs_top_level_runs(tmp_path: Path) -> None:
    import mlflow

    from components.core import tracking

    tag = {tracking.PIPELINE_RUN_TAG: "run-a"}
    with (
        mlflow.start_run(experiment_id=tracking.experiment_id("marktest"), tags=tag) as parent,
        mlflow.start_run(nested=True, tags=tag) as trial,
    ):
        pass
    other = mlflow.MlflowClient().create_run(tracking.experiment_id("marktest"), tags={tracking.PIPELINE_RUN_TAG: "b"})
    assert tracking.mark_pipeline_failed("marktest", "run-a", "train: OOMKilled") == [parent.info.run_id]
    client = mlflow.MlflowClient()
    assert client.get_run(parent.info.run_id).info.status == "FAILED"
    assert client.get_run(trial.info.run_id).info.status == "FINISHED"
    assert client.get_run(other.info.run_id).info.status == "RUNNING"
