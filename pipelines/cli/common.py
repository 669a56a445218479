"""What the command modules share: argument types, the step config (`resolve`), --help field tables, output."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import typer
from pydantic import BaseModel

from components.config import STAGE_MODELS, load_params, resolve, resolve_experiment, task_block

Task = Annotated[str, typer.Argument(help="task name: a key of params.yaml's prepare section")]
ParamsFile = Annotated[Path, typer.Option("--params", "-p", help="params file")]
Overrides = Annotated[
    list[str] | None, typer.Option("--set", "-s", help="override a field, e.g. -s lr=0.01 -s model.hidden=[128,64]")
]


def describe(stage: str) -> str:
    """A field table for --help, generated from the stage's config model so it never goes stale."""
    lines = [f"Fields of params.yaml `{stage}.<task>` (override with -s KEY=VALUE):\n\n"]
    lines += fields_of(STAGE_MODELS[stage], "")
    return "".join(lines)


def fields_of(model: type[BaseModel], prefix: str) -> list[str]:
    lines = []
    for name, field in model.model_fields.items():
        default = field.get_default(call_default_factory=True)
        options = [get_args(a)[0] if get_origin(a) is Annotated else a for a in get_args(field.annotation)]
        variants = [a for a in options if isinstance(a, type) and issubclass(a, BaseModel)]
        if len(variants) > 1:  # a choice of configs (model: ffn | cnn | ...): each with its own fields
            for variant in variants:
                lines.append(f"  {prefix}{name} with name={variant.model_fields['name'].default}:\n\n")
                lines += fields_of(variant, f"{prefix}{name}.")
            continue
        if isinstance(default, BaseModel):
            lines += fields_of(type(default), f"{prefix}{name}.")
            continue
        doc = field.description or ""
        if get_origin(field.annotation) is Literal:
            doc = f"one of {' | '.join(map(str, get_args(field.annotation)))}. {doc}"
        lines.append(f"  {prefix}{name} = {default!r}  {doc}\n\n")
    return lines


def config_for(stage: str, task: str, params_file: Path, overrides: list[str] | None, tuned: Path | None = None) -> Any:
    """The step's config from params.yaml's `stage.task` block, the command line's overrides and (train --tuned)
    tuning's best point: `resolve`, the path every runner takes."""
    return resolve(stage, task, task_block(load_params(params_file), stage, task), overrides, tuned)


def experiment_config(model: type[BaseModel], name: str, params_file: Path, overrides: list[str] | None) -> Any:
    """An experiment's config from params.yaml `experiments.<name>` and the command line's overrides."""
    block = load_params(params_file).get("experiments", {}).get(name)
    return resolve_experiment(model, name, block, overrides)


def show(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=True))
