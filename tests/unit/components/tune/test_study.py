"""Opening a study: bad storage and a direction clash fail before any trial."""

from __future__ import annotations

from pathlib import Path

import pytest

from components.tune.study import TuningError, open_study
from tests.helpers.tuning import cfg


def test_unreachable_storage_and_direction_clash_fail_before_trials(tmp_path: Path) -> None:
    with pytest.raises(TuningError, match="cannot be opened"):
        open_study(cfg(tmp_path, storage="postgresql://u:p@127.0.0.1:9/none"), "tabular")
    open_study(cfg(tmp_path, study_name="s"), "tabular")
    with pytest.raises(TuningError, match="already exists with directions"):
        open_study(cfg(tmp_path, study_name="s", direction="maximize"), "tabular")


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_a_file_storage_in_a_folder_not_made_yet_opens(tmp_path: Path, kind: str) -> None:
    """A new $DLPIPE_HOME (or tune.storage) folder is made for the study's file, as MLflow makes its store's."""
    path = tmp_path / "new" / "home" / "optuna.db"
    url = f"sqlite:///{path}" if kind == "sqlite" else f"journal:{path}"
    study = open_study(cfg(tmp_path, storage=url, study_name="s"), "tabular")
    study.enqueue_trial({"lr": 0.01})
    assert path.is_file() and len(study.trials) == 1
