"""`dlpipe data`: raw datasets, versioned with DVC (data.dvc), built from offline sources."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

data_app = typer.Typer(
    help="Raw data: versioned with DVC (data.dvc), built from offline sources.", no_args_is_help=True
)


@data_app.command("pull")
def data_pull() -> None:
    """Materialise data/raw as data.dvc records it: from the DVC remote, every file checked against its md5.

    A local-folder remote that lacks the snapshot (a fresh clone) gets it rebuilt from the built-in sources,
    verified and pushed; any other failed pull is reported, and nothing is rebuilt or pushed."""
    from components.data.datastore import pull

    how = "pulled from the DVC remote" if pull() == "remote" else "rebuilt from the sources, verified, pushed"
    typer.echo(f"data/raw matches data.dvc ({how})")


@data_app.command("snapshot")
def data_snapshot() -> None:
    """Rebuild the built-in datasets in data/raw, record data/raw in data.dvc and push it (commit data.dvc after).

    Your own datasets (written by `dlpipe data ingest`) stay as they are and are recorded with the rest."""
    from components.data.datastore import snapshot

    typer.echo(f"data.dvc now records {snapshot()}")


@data_app.command("list")
def data_list() -> None:
    """List the built-in datasets."""
    from components.data.ingest import DATASETS

    typer.echo("\n".join(sorted(DATASETS)))


@data_app.command("ingest")
def data_ingest(
    name: Annotated[str, typer.Argument(help="dataset name (built-in, or the name to give --csv)")],
    csv: Annotated[Path | None, typer.Option(help="a CSV of your own with a 'target' column")] = None,
    images: Annotated[Path | None, typer.Option(help="an image folder: one sub-folder of PNG/JPEG per class")] = None,
    text_csv: Annotated[
        Path | None, typer.Option(help="a UTF-8 CSV of labelled texts (columns --text-column, --label-column)")
    ] = None,
    series_csv: Annotated[
        Path | None, typer.Option(help="a CSV time series (columns --time-column, --value-column)")
    ] = None,
    text_file: Annotated[Path | None, typer.Option(help="a UTF-8 text file (a corpus for causal_lm)")] = None,
    text_column: str = "text",
    label_column: str = "label",
    time_column: str = "date",
    value_column: str = "value",
) -> None:
    """Write one dataset into data/raw/<name>/ (then `dlpipe data snapshot` to version it with the built-ins).

    NAME is a plain identifier (letters, digits, _) and not a built-in's; the file must be UTF-8 with data rows."""
    from components.data.ingest import (
        ingest,
        ingest_csv,
        ingest_images,
        ingest_series_csv,
        ingest_text,
        ingest_text_csv,
    )

    if text_file:
        out = ingest_text(text_file, name)
    elif text_csv:
        out = ingest_text_csv(text_csv, name, text=text_column, label=label_column)
    elif series_csv:
        out = ingest_series_csv(series_csv, name, time=time_column, value=value_column)
    else:
        out = ingest_csv(csv, name) if csv else ingest_images(images, name) if images else ingest(name)
    typer.echo(f"wrote {out}")
