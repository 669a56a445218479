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
