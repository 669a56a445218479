"""Ingest: raw bytes are reproducible, the shared and user datasets come in through the same doors, bad input is
named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from components.config import PrepareConfig
from components.core.errors import DataError
from components.core.io import sha256_dir
from components.data import ingest as ingest_module
from components.data.images import read_idx
from components.data.ingest import DATASETS, ingest, ingest_csv, ingest_images, ingest_series_csv, ingest_text_csv
from components.data.prepare import prepare


@pytest.mark.parametrize("dataset", sorted(DATASETS))
def test_ingest_is_byte_identical(dataset: str, tmp_path: Path) -> None:
    first = ingest(dataset, tmp_path / "a")
    second = ingest(dataset, tmp_path / "b")
    assert sha256_dir(first) == sha256_dir(second)
    if (first / "data.csv").is_file():  # tables and texts have a target; series have date and value
        columns = pd.read_csv(first / "data.csv").columns
        assert "target" in columns or {"date", "value"} <= set(columns)
    elif list(first.glob("*.txt")) and not (first / "classes.txt").is_file():  # unlabelled text corpora
        assert all(p.stat().st_size > 0 for p in first.glob("*.txt"))
    elif (first / "pairs.tsv").is_file():  # generated sequence-to-sequence pairs: source <TAB> target
        rows = (first / "pairs.tsv").read_text().splitlines()
        assert len(rows) > 1000 and all(len(r.split("\t")) == 2 for r in rows)
    else:  # image sets keep IDX files (the originals, byte for byte, where there are originals)
        assert (first / "classes.txt").is_file() and list(first.glob("*-images-idx3-ubyte*"))


def test_user_csv_through_the_same_door(tmp_path: Path) -> None:
    src = tmp_path / "mine.csv"
    pd.DataFrame({"f": np.linspace(0, 1, 40), "target": ["lo"] * 20 + ["hi"] * 20}).to_csv(src, index=False)
    ingest_csv(src, "mine", tmp_path / "raw")
    meta = prepare(tmp_path / "raw", tmp_path / "out", PrepareConfig(dataset="mine", objective="binary"), "mine")
    assert meta.classes == ["hi", "lo"]
    (tmp_path / "broken.csv").write_text("x,y\n1,2\n")
    with pytest.raises(DataError, match="no 'target' column"):
        ingest_csv(tmp_path / "broken.csv", "broken", tmp_path / "raw")


def test_idx_originals_are_copied_byte_for_byte(tmp_path: Path) -> None:
    out = ingest("mnist_test", tmp_path)
    src = ingest_module.shared_datasets() / "mnist-test"
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        assert (out / name).read_bytes() == (src / name).read_bytes()
    assert read_idx(out / "t10k-images-idx3-ubyte.gz").shape == (10000, 28, 28)


def test_fashion_without_network_or_package_says_how(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets

    def offline(*args: object, **kwargs: object) -> None:
        raise OSError("no network")

    monkeypatch.setattr(ingest_module, "FASHION_DIRS", (tmp_path / "nowhere",))
    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", offline)
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        ingest("fashion_mnist", tmp_path)


def test_user_image_folder_goes_through_the_same_door(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for label, level in (("dark", 40), ("light", 210)):
        (tmp_path / "mine" / label).mkdir(parents=True)
        for i in range(12):
            size = (20 + i, 16 + i)  # sizes differ: prepare resizes
            pixels = np.clip(rng.normal(level, 10, (*size[::-1], 3)), 0, 255).astype(np.uint8)
            fmt = "PNG" if i % 2 else "JPEG"
            Image.fromarray(pixels).save(tmp_path / "mine" / label / f"{i}.{fmt.lower()}", fmt)
    (tmp_path / "mine" / "dark" / "notes.txt").write_text("ignored")
    raw = ingest_images(tmp_path / "mine", "mine", tmp_path / "raw")
    assert not (raw / "dark" / "notes.txt").exists()
    cfg = PrepareConfig(dataset="mine", objective="multiclass", image_size=16, val_size=0.25, test_size=0.25)
    meta = prepare(tmp_path / "raw", tmp_path / "data", cfg, "mine")
    assert meta.classes == ["dark", "light"] and meta.input.shape == [None, 3, 16, 16]
    assert sum(meta.splits.values()) == 24
    with pytest.raises(DataError, match="one sub-folder"):
        ingest_images(tmp_path / "mine" / "dark", "bad", tmp_path / "raw")


def test_shared_text_datasets(tmp_path: Path) -> None:
    vader = pd.read_csv(ingest("vader_movie", tmp_path) / "data.csv")
    assert len(vader) == 10_568 and set(vader["target"]) == {"positive", "negative"}
    assert ((vader["rating"] > 0) == (vader["target"] == "positive")).all()
    uci = pd.read_csv(ingest("uci_sentences", tmp_path) / "data.csv", keep_default_na=False)
    assert len(uci) == 3000 and (uci["target"] == "positive").sum() == 1500
    assert uci.groupby("source").size().tolist() == [1000, 1000, 1000]


def test_user_text_csv(tmp_path: Path) -> None:
    src = tmp_path / "mine.csv"
    pd.DataFrame({"review": ["great", "awful", "fine"], "stars": ["pos", "neg", "pos"]}).to_csv(src, index=False)
    out = ingest_text_csv(src, "mine", tmp_path / "raw", text="review", label="stars")
    assert pd.read_csv(out / "data.csv").columns.tolist() == ["text", "target"]
    with pytest.raises(DataError, match="no 'text'"):
        ingest_text_csv(src, "mine", tmp_path / "raw")
    src.write_bytes(b"text,label\n\xff\xfe bad bytes,1\nok,0\n")
    with pytest.raises(DataError, match="UTF-8"):
        ingest_text_csv(src, "mine", tmp_path / "raw")
    src.write_text("text,label\n ,1\nok,0\n")
    with pytest.raises(DataError, match="empty"):
        ingest_text_csv(src, "mine", tmp_path / "raw")


def test_user_series_csv(tmp_path: Path) -> None:
    src = tmp_path / "s.csv"
    src.write_text("when,y\n2020-01-03,2\n2020-01-01,1\n2020-01-02,\n")
    out = ingest_series_csv(src, "s", tmp_path / "raw", time="when", value="y")
    frame = pd.read_csv(out / "data.csv")
    assert frame["date"].tolist() == ["2020-01-01", "2020-01-02", "2020-01-03"]
    assert np.isnan(frame["value"][1])
    src.write_text("date,value\n2020-01-01,1\nnot a date,2\n")
    with pytest.raises(DataError, match="not a date"):
        ingest_series_csv(src, "s", tmp_path / "raw")
    src.write_text("date,value\n2020-01-01,1\n2020-01-02,abc\n")
    with pytest.raises(DataError, match="non-numeric"):
        ingest_series_csv(src, "s", tmp_path / "raw")


def test_elnino_is_statsmodels_table_through_the_cli_series_ingest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, params: dict
) -> None:
    """The built-in `elnino` holds exactly what `dlpipe data ingest --series-csv` makes of statsmodels' table,
    and prepares as params.yaml's forecast_elnino asks: 732 months, none missing, monthly windows."""
    from typer.testing import CliRunner

    from components.config import SeriesConfig
    from components.data.series import load_series
    from pipelines.cli import app

    source = ingest_module.elnino_csv(tmp_path / "elnino.csv")
    monkeypatch.chdir(tmp_path)
    args = ["data", "ingest", "mine", "--series-csv", str(source), "--time-column", "month", "--value-column", "sst"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    built_in = ingest("elnino", tmp_path / "built-in")
    assert (tmp_path / "data/raw/mine/data.csv").read_bytes() == (built_in / "data.csv").read_bytes()
    dates, values, missing, freq = load_series(built_in / "data.csv", SeriesConfig(fill="none"))
    assert (len(values), freq, int(missing.sum())) == (732, "MS", 0)
    assert (str(dates[0].date()), str(dates[-1].date())) == ("1950-01-01", "2010-12-01")
    assert 17 < values.min() < values.max() < 30  # degrees Celsius off Peru and Ecuador

    cfg = PrepareConfig(**params["prepare"]["forecast_elnino"])
    meta = prepare(tmp_path / "built-in", tmp_path / "prepared", cfg, "forecast_elnino")
    window, horizon = cfg.series.window, cfg.series.horizon
    n_test = round(732 * cfg.test_size)
    assert meta.series["freq"] == "MS" and meta.horizon == horizon
    assert meta.splits["test"] == n_test - horizon + 1  # every test origin whose targets lie in the test span
    assert meta.splits["train"] == 732 - n_test - round(732 * cfg.val_size) - window - horizon + 1


@pytest.mark.parametrize("name", ["../escape", "a/b", "..", "/tmp/abs", "with space", "", "co2"])
def test_a_dataset_name_that_is_not_a_plain_new_identifier_is_refused(name: str, tmp_path: Path) -> None:
    src = tmp_path / "mine.csv"
    src.write_text("f,target\n1,a\n2,b\n")
    with pytest.raises(DataError, match="dataset name"):
        ingest_csv(src, name, tmp_path / "raw" / "deep")
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == [src]  # nothing written anywhere


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "the file is empty"),
        (b"f,target\n", "a header but no data rows"),
        (b"f,target\n1,caf\xe9\n2,b\n", r"not UTF-8 \(byte 0xe9"),
    ],
)
def test_an_empty_or_non_utf8_file_is_one_clear_error(content: bytes, message: str, tmp_path: Path) -> None:
    src = tmp_path / "mine.csv"
    src.write_bytes(content)
    for door in (ingest_csv, lambda s, n, r: ingest_series_csv(s, n, r, time="f", value="target")):
        with pytest.raises(DataError, match=message):
            door(src, "mine", tmp_path / "raw")
    assert not (tmp_path / "raw").exists()
