"""`dlpipe predict TASK --input rows.csv|images/ --output out.csv`: batch inference from the registry."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipelines.cli.app import app
from pipelines.cli.common import Task


@app.command()
def predict(
    task: Task,
    input_: Annotated[
        Path, typer.Option("--input", "-i", help="a CSV (features, pixel0.. or text) or an image folder")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="the CSV to write: inputs + one answer per row")],
    model_uri: Annotated[str | None, typer.Option(help="registry URI; default models:/<task>@champion")] = None,
    model_dir: Annotated[Path | None, typer.Option(help="a local export (artifacts/<task>) instead")] = None,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
) -> None:
    """Score a CSV (features, pixels or texts) or an image folder with the registered model: one answer per row,
    as `dlpipe serve` answers."""
    from pipelines.batch import predict as run

    answers = run(task, input_, output, model_uri, model_dir, progress)
    typer.echo(f"{task}: {len(answers)} rows -> {output}", err=True)
