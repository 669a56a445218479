"""Ingest: materialise a raw dataset under data/raw/<name>/ with the same bytes on every machine.

Built-in datasets come from data that ships inside installed packages, ../shared/datasets, or Debian's
dataset-fashion-mnist, so no network is needed; image sets keep their original IDX files byte for byte.
A user's own CSV (`ingest_csv`), image folder (`ingest_images`), labelled texts (`ingest_text_csv`) or
time series (`ingest_series_csv`) goes through the same door.

Raw formats the prepare step reads:
- tables: `data.csv` with feature columns and a `target` column;
- texts: `data.csv` with columns `text` and `target` (the class name, e.g. "positive"), UTF-8, one row per
  text; extra columns (a rating, the source) are kept for reference and ignored by prepare;
- series: `data.csv` with columns `date` (ISO dates) and `value`; missing readings stay empty here and are
  filled by prepare as configured (the raw file records what was measured).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from components.core.errors import DataError
from components.core.io import atomic_write
from components.core.layout import REPO
from components.data.images import IMAGE_SUFFIXES, idx_bytes

RAW_DIR = Path("data/raw")
SHARED = REPO.parent / "shared" / "datasets"  # ../shared/datasets of the repo
FASHION_DIRS = (Path("/usr/share/datasets/fashion-mnist"),)  # Debian's dataset-fashion-mnist
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Boot"]
IDX_FILES = ("{}-images-idx3-ubyte.gz", "{}-labels-idx1-ubyte.gz")
TEXT_FILE, PAIRS_FILE = "input.txt", "pairs.tsv"  # a text corpus; tab-separated source / target pairs
Writer = Callable[[Path], None]


def _sklearn(loader_name: str) -> Writer:
    def write(out: Path) -> None:
        import sklearn.datasets

        bunch = getattr(sklearn.datasets, loader_name)(as_frame=True)
        frame = bunch.frame.copy()
        if hasattr(bunch, "target_names") and len(getattr(bunch, "target_names", [])):
            # Store class names, not codes, so the raw file reads on its own.
            frame["target"] = [str(bunch.target_names[i]) for i in bunch.target]
        _write_frame(frame, out)

    return write


def _digits(out: Path) -> None:
    """scikit-learn's 8x8 digits (0..16 ink levels) as uncompressed IDX, rescaled to 0..255."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.rint(bunch.images * (255 / 16)).astype(np.uint8)  # (1797, 8, 8)
    _write_bytes(out / "all-images-idx3-ubyte", idx_bytes(images))
    _write_bytes(out / "all-labels-idx1-ubyte", idx_bytes(bunch.target.astype(np.uint8)))
    _write_bytes(out / "classes.txt", "".join(f"{k}\n" for k in range(10)).encode())


SHARED_ENV = "DLPIPE_SHARED_DATASETS"


def shared_datasets() -> Path:
    """$DLPIPE_SHARED_DATASETS, else ../shared/datasets beside the repository."""
    return Path(os.environ.get("DLPIPE_SHARED_DATASETS") or SHARED)


def _mnist_test(out: Path) -> None:
    """MNIST's 10k test split (original IDX .gz), used as a dataset of its own."""
    src = shared_datasets() / "mnist-test"
    _copy_idx(
        src,
        "t10k",
        out,
        "the MNIST test split: put ../shared/datasets/mnist-test beside the repository or set DLPIPE_SHARED_DATASETS",
    )
    _write_bytes(out / "classes.txt", "".join(f"{k}\n" for k in range(10)).encode())


def _fashion_mnist(out: Path) -> None:
    """Fashion-MNIST 60k + 10k: torchvision's download when there is a network, else Debian's package files."""
    src = next((d for d in FASHION_DIRS if (d / IDX_FILES[0].format("train")).is_file()), None)
    if src is None:
        src = _download_fashion(out.parent / ".downloads")
    for part in ("train", "t10k"):
        _copy_idx(src, part, out, "Fashion-MNIST")
    _write_bytes(out / "classes.txt", "".join(f"{c}\n" for c in FASHION_CLASSES).encode())


def _download_fashion(cache: Path) -> Path:
    try:
        from torchvision.datasets import FashionMNIST

        FashionMNIST(str(cache), train=True, download=True)
        FashionMNIST(str(cache), train=False, download=True)
    except Exception as err:  # noqa: BLE001 - any download failure gets the same advice
        raise DataError(
            "Fashion-MNIST not found: no network for torchvision's download and no Debian package files in "
            f"{', '.join(map(str, FASHION_DIRS))}. Install them with `apt-get install dataset-fashion-mnist` "
            f"(`make setup` does so when it runs as root). Download error: {type(err).__name__}: {err}"
        ) from None
    return cache / "FashionMNIST" / "raw"


def _copy_idx(src: Path, part: str, out: Path, what: str) -> None:
    for pattern in IDX_FILES:
        name = pattern.format(part)
        if not (src / name).is_file():
            raise DataError(f"{src / name} not found ({what})")
        atomic_write(out / name, lambda tmp, name=name: shutil.copyfile(src / name, tmp))


def _tinyshakespeare(out: Path) -> None:
    """Karpathy's tiny Shakespeare (1,115,394 characters), for character-level language modelling."""
    src = shared_datasets() / "tinyshakespeare" / "input.txt"
    if not src.is_file():
        raise DataError(f"{src} not found (tiny Shakespeare): put ../shared/datasets beside the repository")
    atomic_write(out / TEXT_FILE, lambda tmp: shutil.copyfile(src, tmp))


def _numbers_words(out: Path) -> None:
    """30,000 distinct numbers 0..999,999 and their English words, generated by code (seq2seq)."""
    from components.data.numbers import sample_pairs

    _write_bytes(out / PAIRS_FILE, "".join(f"{a}\t{b}\n" for a, b in sample_pairs(30_000, seed=0)).encode())


def _vader_movie(out: Path) -> None:
    """VADER's 10,605 movie-review snippets (Hutto & Gilbert 2014; text from Pang & Lee): `target` is the sign
    of the mean human rating (-4..+4); the 37 snippets rated exactly 0 have no sign and are left out."""
    src = shared_datasets() / "vader-movie-review-snippets" / "movieReviewSnippets_GroundTruth.txt"
    if not src.is_file():
        raise DataError(
            f"{src} not found: put ../shared/datasets beside the repository or set DLPIPE_SHARED_DATASETS. With a "
            "network the same file is inside the PyPI sdist of vaderSentiment==3.3.2 (`pip download --no-deps "
            "--no-binary :all: vaderSentiment==3.3.2`, member additional_resources/hutto_ICWSM_2014.tar.gz)"
        )
    rows = []
    for line in src.read_text(encoding="utf-8").split("\n"):
        line = line.rstrip("\r")
        if not line:
            continue
        ident, rating, text = line.split("\t", 2)
        value = float(rating)
        if value != 0:
            rows.append((int(ident), text.strip(), "positive" if value > 0 else "negative", value))
    frame = pd.DataFrame(rows, columns=["id", "text", "target", "rating"])
    _write_frame(frame, out)


UCI_FILES = ("amazon_cells", "imdb", "yelp")


def _uci_sentences(out: Path) -> None:
    """UCI Sentiment Labelled Sentences (Kotzias et al. 2015): 3 x 1,000 sentences from Amazon, IMDb and
    Yelp, `target` negative / positive. Lines are split on "\\n" only (imdb holds U+0085) and on the last
    tab (quotes inside sentences break CSV readers)."""
    folder = shared_datasets() / "sentiment-labelled-sentences"
    rows = []
    for source in UCI_FILES:
        path = folder / f"{source}_labelled.txt"
        if not path.is_file():
            raise DataError(f"{path} not found: put ../shared/datasets beside the repository or set {SHARED_ENV}")
        for line in path.read_text(encoding="utf-8").split("\n"):
            if line.strip():
                text, label = line.rstrip("\r").rsplit("\t", 1)
                rows.append((text.strip(), "positive" if label.strip() == "1" else "negative", source))
    _write_frame(pd.DataFrame(rows, columns=["text", "target", "source"]), out)


def _co2(out: Path) -> None:
    """statsmodels' Mauna Loa CO2 series: 2,284 weekly readings (ppm), 1958-03-29 .. 2001-12-29, 59 missing
    (left empty here; prepare fills them)."""
    import statsmodels.api as sm

    data = sm.datasets.co2.load_pandas().data
    frame = pd.DataFrame({"date": data.index.strftime("%Y-%m-%d"), "value": data["co2"].to_numpy()})
    _write_frame(frame, out)


def _elnino(out: Path) -> None:
    """statsmodels' El Nino series: 732 monthly sea-surface temperatures (deg C) of the Nino 1+2 region,
    1950-2010 (NOAA ERSST.V3B, public domain). Brought in as a user's series is: statsmodels' year x month
    table is written as a CSV of its own (columns `month`, `sst`) and read back by `ingest_series_csv`, the code
    of `dlpipe data ingest --series-csv`."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="dlpipe-elnino-") as tmp:
        source = Path(tmp) / "elnino.csv"
        elnino_csv(source)
        _write_frame(_series_frame(source, "month", "sst"), out)


def elnino_csv(path: Path) -> Path:
    """statsmodels' El Nino table (one row a year, one column a month) as a long CSV: `month` (YYYY-MM), `sst`."""
    import statsmodels.api as sm

    table = sm.datasets.elnino.load_pandas().data
    months = table.columns[1:]  # JAN .. DEC
    rows = [
        (f"{int(year):04d}-{m:02d}", float(row[name]))
        for year, row in zip(table["YEAR"], table.to_dict("records"), strict=True)
        for m, name in enumerate(months, start=1)
    ]
    frame = pd.DataFrame(rows, columns=["month", "sst"])
    atomic_write(Path(path), lambda tmp: frame.to_csv(tmp, index=False, lineterminator="\n"))
    return Path(path)


def _mlm_corpus(out: Path) -> None:
    """Unlabelled English for masked-LM pretraining, paragraphs separated by blank lines: tiny Shakespeare and the
    UCI sentences (not VADER's, whose test texts the fine-tuning scores). Only fixed files, so the bytes, and
    data.dvc's hash, do not depend on the interpreter (Python's own pydoc topics differ between patch releases)."""
    parts = (shared_datasets() / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8").split("\n\n")
    for source in UCI_FILES:
        path = shared_datasets() / "sentiment-labelled-sentences" / f"{source}_labelled.txt"
        parts += [line.rsplit("\t", 1)[0].strip() for line in path.read_text(encoding="utf-8").split("\n")]
    text = "\n\n".join(p.strip() for p in parts if p.strip()) + "\n"
    _write_bytes(out / TEXT_FILE, text.encode())


DATASETS: dict[str, Writer] = {
    "breast_cancer": _sklearn("load_breast_cancer"),  # 569 x 30, binary
    "wine": _sklearn("load_wine"),  # 178 x 13, 3 classes
    "diabetes": _sklearn("load_diabetes"),  # 442 x 10, regression
    "digits": _digits,  # 1797 images 8x8, 10 classes
    "mnist_test": _mnist_test,  # 10,000 images 28x28, 10 classes
    "fashion_mnist": _fashion_mnist,  # 70,000 images 28x28, 10 classes
    "tinyshakespeare": _tinyshakespeare,  # 1.1M characters of text
    "numbers_words": _numbers_words,  # 30,000 number -> words pairs
    "mlm_corpus": _mlm_corpus,  # 1.3M characters of unlabelled English
    "vader_movie": _vader_movie,  # 10,568 review sentences, positive / negative
    "uci_sentences": _uci_sentences,  # 3,000 sentences, positive / negative
    "co2": _co2,  # 2,284 weekly CO2 readings, 59 missing
    "elnino": _elnino,  # 732 monthly sea-surface temperatures, Nino 1+2
}


def ingest(dataset: str, raw_dir: Path = RAW_DIR) -> Path:
    """Write `raw_dir/<dataset>/` from a built-in source and return the folder."""
    if dataset not in DATASETS:
        raise DataError(f"unknown dataset {dataset!r}; built-in datasets: {', '.join(sorted(DATASETS))}")
    out = Path(raw_dir) / dataset
    out.mkdir(parents=True, exist_ok=True)
    DATASETS[dataset](out)
    return out


NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def dataset_dir(raw_dir: Path, name: str) -> Path:
    """`raw_dir/<name>` for a user's dataset: `name` must be a plain identifier (it becomes a folder, a task and
    an MLflow name) and not a built-in's (`dlpipe data snapshot` rebuilds those)."""
    if not NAME.fullmatch(name):
        raise DataError(f"dataset name {name!r}: use a plain identifier (letters, digits, _; no '/', '..' or spaces)")
    if name in DATASETS:
        raise DataError(f"dataset name {name!r} is a built-in dataset's: choose another name")
    return Path(raw_dir) / name


def ingest_images(source: Path, name: str, raw_dir: Path = RAW_DIR) -> Path:
    """Bring a user's image folder (one sub-folder per class of PNG/JPEG files) in as dataset `name`."""
    source, out = Path(source), dataset_dir(raw_dir, name)
    classes = sorted(p for p in source.iterdir() if p.is_dir()) if source.is_dir() else []
    files = [f for c in classes for f in sorted(c.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]
    if len(classes) < 2 or not files:
        raise DataError(f"{source}: expected one sub-folder of PNG/JPEG images per class (at least 2 classes)")
    for f in files:
        atomic_write(out / f.relative_to(source), lambda tmp, f=f: shutil.copyfile(f, tmp))
    return out


def ingest_csv(source: Path, name: str, raw_dir: Path = RAW_DIR, target: str = "target") -> Path:
    """Bring a user's CSV in as dataset `name`; it must parse and hold a `target` column."""
    source, out = Path(source), dataset_dir(raw_dir, name)
    _read_user_csv(source, [target])
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "data.csv", lambda tmp: shutil.copyfile(source, tmp))
    return out


def ingest_text(source: Path, name: str, raw_dir: Path = RAW_DIR) -> Path:
    """Bring a user's UTF-8 text file in as dataset `name` (a corpus for the causal_lm objective)."""
    source, out = Path(source), dataset_dir(raw_dir, name)
    try:
        text = source.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DataError(_not_utf8(source, err)) from None
    except OSError as err:
        raise DataError(f"{source}: cannot read: {err.strerror}") from None
    if len(text) < 1000:
        raise DataError(f"{source}: only {len(text)} characters; a language model needs at least 1,000")
    atomic_write(out / TEXT_FILE, lambda tmp: shutil.copyfile(source, tmp))
    return out


def ingest_text_csv(source: Path, name: str, raw_dir: Path = RAW_DIR, text: str = "text", label: str = "label") -> Path:
    """Bring a user's labelled texts in as dataset `name`: a UTF-8 CSV with a `text` and a `label` column
    (other names via the arguments). Written as data.csv with columns text, target (label as a string);
    rows with an empty text or label are refused, not dropped silently."""
    source, out = Path(source), dataset_dir(raw_dir, name)
    frame = _read_user_csv(source, [text, label], dtype=str, keep_default_na=False)
    bad = frame.index[(frame[text].str.strip() == "") | (frame[label].str.strip() == "")]
    if len(bad):
        raise DataError(f"{source}: empty {text!r} or {label!r} in {len(bad)} row(s), first at data row {bad[0] + 1}")
    out_frame = pd.DataFrame({"text": frame[text].str.strip(), "target": frame[label].str.strip()})
    if out_frame["target"].nunique() < 2:
        raise DataError(f"{source}: column {label!r} needs at least 2 different labels")
    return _write_frame(out_frame, out)


def ingest_series_csv(
    source: Path, name: str, raw_dir: Path = RAW_DIR, time: str = "date", value: str = "value"
) -> Path:
    """Bring a user's time series in as dataset `name`: a CSV with a time column and a numeric value column
    (empty cells = missing readings, filled by prepare). Written as data.csv with columns date, value,
    sorted by time; unparseable times, non-numeric values and repeated times are refused."""
    out = dataset_dir(raw_dir, name)  # the name is checked before the file is read
    return _write_frame(_series_frame(Path(source), time, value), out)


def _series_frame(source: Path, time: str, value: str) -> pd.DataFrame:
    """The user's series CSV checked and normalised: columns date (ISO), value, sorted by time."""
    frame = _read_user_csv(source, [time, value])
    when = pd.to_datetime(frame[time], errors="coerce")
    if when.isna().any():
        row = int(np.flatnonzero(when.isna().to_numpy())[0])
        raise DataError(f"{source}: {time!r} holds a value that is not a date/time at data row {row + 1}")
    values = pd.to_numeric(frame[value], errors="coerce")
    bad = values.isna() & frame[value].notna()
    if bad.any():
        raise DataError(f"{source}: {value!r} holds a non-numeric value at data row {int(np.flatnonzero(bad)[0]) + 1}")
    if when.duplicated().any():
        raise DataError(f"{source}: repeated time {when[when.duplicated()].iloc[0]} in {time!r}")
    if not np.isfinite(values.dropna().to_numpy(dtype=np.float64)).all():
        raise DataError(f"{source}: {value!r} holds an infinite value")
    order = np.argsort(when.to_numpy(), kind="stable")
    iso = when.dt.strftime("%Y-%m-%dT%H:%M:%S" if (when.dt.normalize() != when).any() else "%Y-%m-%d")
    return pd.DataFrame({"date": iso.to_numpy()[order], "value": values.to_numpy()[order]})


def _read_user_csv(source: Path, columns: list[str], **kwargs) -> pd.DataFrame:
    """The user's CSV: UTF-8, with a header, at least one data row and `columns`; else one line naming why."""
    try:
        frame = pd.read_csv(source, encoding="utf-8", **kwargs)
    except UnicodeDecodeError as err:
        raise DataError(_not_utf8(source, err)) from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{source}: the file is empty (expected a CSV with a header row)") from None
    except OSError as err:
        raise DataError(f"{source}: cannot read: {err.strerror or err}") from None
    except pd.errors.ParserError as err:
        raise DataError(f"{source}: not a well-formed CSV: {str(err).strip()}") from None
    if frame.empty:
        raise DataError(f"{source}: a header but no data rows")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        have = ", ".join(map(str, frame.columns))
        raise DataError(f"{source}: no {', '.join(map(repr, missing))} column (columns: {have})")
    return frame


def _not_utf8(source: Path, err: UnicodeDecodeError) -> str:
    return f"{source}: not UTF-8 (byte 0x{err.object[err.start]:02x} cannot start a UTF-8 character): save it as UTF-8"


def _write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def _write_frame(frame: pd.DataFrame, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    # repr-exact floats and "\n" line endings make the bytes identical on every platform.
    atomic_write(out / "data.csv", lambda tmp: frame.to_csv(tmp, index=False, lineterminator="\n"))
    return out
