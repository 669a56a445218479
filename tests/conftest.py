"""Shared fixtures: an isolated engine home per test session, and a trained tabular task in it."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from components.config import PrepareConfig, load_params, stage_config
from components.core.memory import retain_freed_memory, skip_final_collection
from components.data.ingest import ingest
from components.data.prepare import prepare

ROOT = Path(__file__).resolve().parents[1]
PARAMS = load_params(ROOT / "params.yaml")
retain_freed_memory()  # as every `dlpipe` process does: the tests train and predict in this process
skip_final_collection()  # a worker holds every library the suite imports: its exit frees nothing by hand


@pytest.fixture(scope="session", autouse=True)
def engine_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Point MLflow (and every other embedded engine) at a throw-away folder, never at the repo's."""
    home = tmp_path_factory.mktemp("home")
    os.environ["DLPIPE_HOME"] = str(home)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{home / 'mlflow.db'}"
    os.environ.pop("MLFLOW_REGISTRY_URI", None)
    return home


@pytest.fixture(scope="session")
def params() -> dict:
    return PARAMS


def run_task(
    task: str,
    root: Path,
    register: bool = False,
    prepare_overrides: dict | None = None,
    tune_overrides: dict | None = None,
    **train_overrides: object,
) -> Path:
    """Run the steps of `task` (ingest -> export [-> register]) under `root`; return artifacts/<task>.

    `train_overrides` replace fields of train.<task> (e.g. fewer epochs for a fast test), `prepare_overrides`
    fields of prepare.<task> (e.g. a train_limit), `tune_overrides` fields of tune.<task> (a smaller study)."""
    from components.config import PrepareConfig, TrainConfig, TuneConfig, tuned_config, validate
    from components.data.augment import augment
    from components.data.ingest import ingest
    from components.data.prepare import prepare
    from components.evaluate.step import evaluate
    from components.release.export import export
    from components.release.register import register as register_step
    from components.train.step import train
    from components.tune.step import tune

    prep = stage_config(PARAMS, "prepare", task)
    if prepare_overrides:
        prep = validate(PrepareConfig, {**PARAMS["prepare"][task], **prepare_overrides}, f"prepare.{task}")
    raw = ingest(prep.dataset, root / "data/raw").parent
    art = root / "artifacts" / task
    prepare(raw, art / "data", prep, task)
    augment(art / "data", art / "augment", stage_config(PARAMS, "augment", task), task)
    train_raw = PARAMS["train"].get(task, {})
    tuning = stage_config(PARAMS, "tune", task)
    if tune_overrides:
        tuning = validate(TuneConfig, {**PARAMS["tune"][task], **tune_overrides}, f"tune.{task}")
    tune(art / "data", art, root / "plots" / f"{task}-tuning", task, tuning, train_raw, art / "augment")
    train_raw = {**tuned_config(train_raw, art / "best_params.yaml"), **train_overrides}
    train_cfg = validate(TrainConfig, train_raw, f"train.{task}")
    train(art / "data", art, train_cfg, task, progress=False, augment_dir=art / "augment")
    evaluate(art / "data", art, root / "metrics" / f"{task}.json", root / "plots" / task)
    export(art / "data", art, art, stage_config(PARAMS, "export", task))
    if register:
        register_step(
            art / "data",
            art,
            art,
            root / "metrics" / f"{task}.json",
            art / "registration.json",
            task,
            stage_config(PARAMS, "register", task),
        )
    return art


CHROMIUM, DRIVER = shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")
NEEDS_CHROMIUM = pytest.mark.skipif(
    not (CHROMIUM and DRIVER), reason="needs Chromium and chromedriver on PATH (`make browser` installs Debian's)"
)


@pytest.fixture(scope="session")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """Headless Chromium driven by selenium (the playground tests), with a temp folder of the session's own
    (Chromium leaves an org.chromium.Chromium.* folder in $TMPDIR after it quits)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000"):
        options.add_argument(arg)
    env = os.environ | {"TMPDIR": str(tmp_path_factory.mktemp("chromium-tmp"))}
    driver = webdriver.Chrome(options=options, service=Service(DRIVER, env=env))
    yield driver
    driver.quit()


# The tabular fixture's study is small (params.yaml's: 10 trials of 60 epochs, 16 s of a 22 s fixture that each
# xdist worker builds): its tests need a tuned model, not a good search (tests/integration/components/tune tests
# the search). tests/e2e/test_dvc.py reproduces the task under DVC with the same study, so the numbers compare.
TABULAR_TUNE = {"n_trials": 3, "epochs": 15}


@pytest.fixture(scope="session")
def tabular_artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tabular task tuned (a small study), trained, evaluated, exported and registered once per session."""
    return run_task("tabular", tmp_path_factory.mktemp("tabular"), register=True, tune_overrides=TABULAR_TUNE)


@pytest.fixture(scope="session")
def digits_artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The digits CNN task (augmented), briefly trained, evaluated, exported and registered once per session."""
    return run_task("digits", tmp_path_factory.mktemp("digits"), register=True, epochs=4)


@pytest.fixture(scope="session")
def forecast_artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The CO2 forecast task (GRU), briefly trained, evaluated, exported and registered once per session."""
    return run_task("forecast", tmp_path_factory.mktemp("forecast"), register=True, epochs=3)


@pytest.fixture(scope="session")
def forecast_elnino_artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The El Nino forecast task (GRU on monthly sea-surface temperatures), briefly trained, evaluated, exported."""
    return run_task("forecast_elnino", tmp_path_factory.mktemp("forecast_elnino"), epochs=3)


@pytest.fixture(scope="session")
def sentiment_artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sentiment task (BiLSTM on VADER snippets) on a 2,000-text training slice, one epoch, registered."""
    return run_task(
        "sentiment",
        tmp_path_factory.mktemp("sentiment"),
        register=True,
        prepare_overrides={"train_limit": 2000},
        epochs=2,
    )


def _served(task: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    from tests.helpers.serving import bentoml_server

    tmp = tmp_path_factory.mktemp(f"serve-{task}")
    with bentoml_server("serving.app:Service", task, tmp) as url:
        yield url, tmp / "server.log"


@pytest.fixture(scope="session")
def tabular_served(tabular_artifacts: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The tabular champion behind a real `bentoml serve` (one worker), started once per session for the files
    that only send it requests (fuzzing, the playground): its URL and its log file."""
    yield from _served("tabular", tmp_path_factory)


@pytest.fixture(scope="session")
def digits_served(digits_artifacts: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The digits champion behind a real `bentoml serve` (one worker), started once per session for the files
    that only send it requests (fuzzing, the playground, image serving): its URL and its log file."""
    yield from _served("digits", tmp_path_factory)


@pytest.fixture(scope="module")
def digits_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("digits-data")
    ingest("digits", root / "raw")
    prepare(root / "raw", root / "data", PrepareConfig(dataset="digits", objective="multiclass"), "digits")
    return root / "data"


@pytest.fixture(scope="module")
def tabular_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tabular task's prepared data (no training)."""
    root = tmp_path_factory.mktemp("tabular-data")
    prep = stage_config(PARAMS, "prepare", "tabular")
    ingest(prep.dataset, root / "raw")
    prepare(root / "raw", root / "data", prep, "tabular")
    return root / "data"


@pytest.fixture
def workdir(tmp_path: Path, tabular_artifacts: Path) -> Path:
    """A working directory holding params.yaml and the tabular task's prepared data."""
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    shutil.copytree(tabular_artifacts / "data", tmp_path / "artifacts" / "tabular" / "data")
    return tmp_path


TIERS = ("unit", "integration", "e2e", "containers")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with its tier, the folder under tests/ it lives in: `pytest -m unit` runs what
    `pytest tests/unit` runs. The slowest tier runs first (containers, e2e, integration, unit), and within a tier
    the files marked `slow` (40 s or more): under pytest-xdist the long files start early and the unit tests, a
    second or less each, fill the gaps at the end instead of one worker finishing a long file alone."""
    here = Path(__file__).parent
    order = {}
    for item in items:
        tier = item.path.relative_to(here).parts[0] if item.path.is_relative_to(here) else None
        if tier in TIERS:
            item.add_marker(tier)
        order[item] = (-TIERS.index(tier) if tier in TIERS else 0, item.get_closest_marker("slow") is None)
    items.sort(key=order.__getitem__)  # stable: a file's tests keep their order


@pytest.hookimpl(trylast=True)  # after the durations
def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """Under `make test` (which asks for --durations), once every test has run: the machine and how fast its cores
    run now (pipelines/machine.py), beside the durations: on one shared 2-core machine the same suite took 325-678 s
    by the hour. pytest-xdist's workers print no summary; their controller does."""
    if hasattr(config, "workerinput") or config.getoption("durations") is None:
        return
    from pipelines.machine import describe

    terminalreporter.write_line(f"machine after the tests: {describe()}")
