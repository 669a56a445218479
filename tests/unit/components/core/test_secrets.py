"""Secrets stay secret: one password goes through every path that prints or stores a storage or tracking URL
(CLI errors, log lines, MLflow params, study.json, the compiled pipeline, DVC errors, run parameters), and
no output holds it."""

from __future__ import annotations

import copy
import json
import logging
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from components.core.secrets import MASK, mask
from tests.conftest import ROOT
from tests.helpers.tuning import cfg as tune_cfg

PASSWORD = "hunter2-Zq9"
STORAGE = f"postgresql://optuna:{PASSWORD}@127.0.0.1:9/optuna"


def test_mask_hides_url_passwords_query_secrets_and_credential_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI-K7MDENG")
    text = f"{STORAGE} https://u:{PASSWORD}@mlflow.example?token={PASSWORD}&x=1 key wJalrXUtnFEMI-K7MDENG"
    masked = mask(text)
    assert PASSWORD not in masked and "wJalrXUtnFEMI" not in masked
    assert masked.startswith(f"postgresql://optuna:{MASK}@127.0.0.1:9/optuna https://u:{MASK}@mlflow.example?")
    assert mask({"a": [STORAGE], "b": 3}) == {"a": [f"postgresql://optuna:{MASK}@127.0.0.1:9/optuna"], "b": 3}
    assert mask("sqlite:///a/b.db and http://host:5000/x") == "sqlite:///a/b.db and http://host:5000/x"


def _cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, *args: str) -> str:
    from pipelines.cli import main

    monkeypatch.setattr(sys, "argv", ["dlpipe", *args])
    with pytest.raises(SystemExit):
        main()
    out = capsys.readouterr()
    return out.out + out.err


def test_an_unreachable_storage_error_on_the_cli_hides_the_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    output = _cli(
        monkeypatch, capsys, "tune", "tabular", "--params", str(ROOT / "params.yaml"), "-s", f"storage={STORAGE}"
    )
    assert "cannot be opened" in output and f"optuna:{MASK}@" in output
    assert PASSWORD not in output


def test_log_lines_and_tracebacks_are_masked(caplog: pytest.LogCaptureFixture) -> None:
    from components.core.secrets import mask_logs

    # what the CLI does: a filter on every handler there is, pytest's own included (a handler without one that
    # formats a record first caches its unmasked traceback for the handlers after it)
    mask_logs()
    log = logging.getLogger("dlpipe.test")
    log.warning("connecting to %s", STORAGE)
    try:
        raise ConnectionError(f"could not connect to {STORAGE}")
    except ConnectionError:
        log.exception("storage down")
    assert "connecting to postgresql://optuna:***@" in caplog.text and "ConnectionError" in caplog.text
    assert PASSWORD not in caplog.text


def test_mlflow_params_and_study_json_hold_no_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Kubeflow tune_setup step: the study's MLflow run and the study.json the workers read."""
    from components import kubeflow
    from components.core import tracking
    from components.tune import step
    from components.tune.study import storage_url

    monkeypatch.setattr(step, "open_study", lambda cfg, task: None)  # no PostgreSQL here: the study is not the subject
    cfg = tune_cfg(tmp_path, storage=STORAGE).model_dump()
    study = SimpleNamespace(path=str(tmp_path / "study"))
    kubeflow.tune_setup.python_func(
        tune_config=cfg, train_config={}, overrides=[], tune_trials=-1, tune_workers=-1, task="tabular",
        mlflow_tracking_uri="", pipeline_run="", study=study,
    )  # fmt: skip
    job_text = (tmp_path / "study" / "study.json").read_text()
    assert PASSWORD not in job_text and f"optuna:{MASK}@" in job_text
    client = tracking.configure().MlflowClient()
    run = client.get_run(json.loads(job_text)["parent_run_id"])
    assert run.data.params["tune.storage"] == f"postgresql://optuna:{MASK}@127.0.0.1:9/optuna"
    artifact = client.download_artifacts(run.info.run_id, "tune_config.json", str(tmp_path))
    assert PASSWORD not in Path(artifact).read_text()
    # a worker reading the masked study.json connects with the Secret's URL, never with the masked one
    from components.config import TuneConfig

    masked = TuneConfig.model_validate(json.loads(job_text)["config"])
    monkeypatch.setenv("OPTUNA_STORAGE", STORAGE)
    assert storage_url(masked) == STORAGE


def test_compiled_pipeline_holds_no_password(params: dict, tmp_path: Path) -> None:
    from kfp import compiler

    from pipelines.build import build

    with_password = copy.deepcopy(params)
    with_password["tune"]["tabular"] = {**with_password["tune"].get("tabular", {}), "storage": STORAGE}
    path = tmp_path / "tabular.yaml"
    compiler.Compiler().compile(build("tabular", with_password), str(path))
    text = path.read_text()
    assert f"optuna:{MASK}@127.0.0.1:9/optuna" in text
    assert PASSWORD not in text


def test_run_parameters_with_a_password_are_refused(capsys: pytest.CaptureFixture) -> None:
    import typer

    from pipelines.cli.pipeline import _arguments

    with pytest.raises(typer.Exit):
        _arguments("tabular", None, None, ROOT / "params.yaml", mlflow_tracking_uri=f"https://u:{PASSWORD}@mlflow")
    err = capsys.readouterr().err
    assert "mlflow_tracking_uri carries a password" in err and PASSWORD not in err


def test_a_failing_dvc_command_and_an_s3_secret_key_are_masked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from components.data.datastore import DataVersionError, dvc

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", f"{PASSWORD}-s3")
    with pytest.raises(DataVersionError) as err:  # not a DVC repository: the command line is in the message
        url = f"https://user:{PASSWORD}@dvc.example/x?secret_key={PASSWORD}-s3"
        dvc("remote", "add", "pipeline", url, cwd=tmp_path)
    assert "`dvc remote add pipeline https://user:***@dvc.example/x?secret_key=***` failed" in str(err.value)
    assert PASSWORD not in str(err.value)


def test_mlflows_own_log_lines_are_masked() -> None:
    """MLflow logs through its own handlers (not the root's): "View run ... at: <tracking URI>/#/..."."""
    from components.core import tracking

    tracking.configure()
    handlers = logging.getLogger("mlflow").handlers  # propagate=False: the root's filters never see these
    assert handlers
    record = logging.LogRecord("mlflow.tracking", logging.INFO, __file__, 1, "View run at: %s/#/x", (STORAGE,), None)
    for handler in handlers:
        assert handler.filter(record)
    assert PASSWORD not in record.getMessage()


def test_a_pipeline_steps_uncaught_error_is_printed_masked(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from components.core import tracking

    monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # restored after the test
    tracking.for_pipeline_step("", "")
    try:
        raise ConnectionError(f"cannot reach {STORAGE}")
    except ConnectionError as err:
        sys.excepthook(type(err), err, err.__traceback__)
    err_text = capsys.readouterr().err
    assert "ConnectionError: cannot reach postgresql://optuna:***@" in err_text and PASSWORD not in err_text


def test_a_traceback_another_handler_formatted_first_is_still_masked() -> None:
    """A handler without the filter formats the record first (caching the traceback in exc_text); the masked
    handler after it must not print that cached, unmasked text."""
    import io
    import logging

    from components.core.secrets import MaskingFilter

    plain, masked = io.StringIO(), io.StringIO()
    logger = logging.getLogger("dlpipe.test.cached-traceback")
    logger.propagate = False
    first, second = logging.StreamHandler(plain), logging.StreamHandler(masked)
    second.addFilter(MaskingFilter())
    logger.addHandler(first)
    logger.addHandler(second)
    try:
        try:
            raise ConnectionError("cannot reach postgresql://optuna:hunter2@db:5432/optuna")
        except ConnectionError:
            logger.exception("study storage")
    finally:
        logger.removeHandler(first)
        logger.removeHandler(second)
    assert "hunter2" in plain.getvalue()  # the unfiltered handler did cache the raw traceback first
    assert "ConnectionError" in masked.getvalue() and "hunter2" not in masked.getvalue()
