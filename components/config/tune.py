"""params.yaml `tune.<task>`: the Optuna study (sampler, pruner, workers, objectives, search space)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    Field,
    model_validator,
)

from components.config.base import _Strict

MULTI_OBJECTIVE_SAMPLERS = ("nsga2", "tpe", "random")


class ParamSpace(_Strict):
    """One searched field: float / int (low, high, log, step) or categorical (choices, any YAML values)."""

    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[Any] | None = None
    when: dict[str, list[Any]] | None = Field(None, description="sample only when earlier params take these values")

    @model_validator(mode="after")
    def _bounds(self) -> ParamSpace:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("categorical needs a non-empty `choices` list")
            return self
        if self.low is None or self.high is None or self.low >= self.high:
            raise ValueError("needs `low` < `high`")
        if self.log and self.low <= 0:
            raise ValueError("log scale needs low > 0")
        if self.log and self.step:
            raise ValueError("log and step cannot be combined")
        return self


class TuneConfig(_Strict):
    """params.yaml `tune.<task>`; n_trials 0 (the default) skips tuning and the task trains as configured."""

    n_trials: int = Field(0, ge=0, description="trials in the study (over all workers); 0 = no tuning")
    sampler: Literal["tpe", "random", "grid", "cmaes", "gp", "nsga2"] = "tpe"
    pruner: Literal["median", "hyperband", "none"] = "median"
    workers: int = Field(1, ge=1, description="worker processes sharing the study")
    metric: str = Field("val_loss", description="validation metric each trial reports every epoch")
    direction: Literal["minimize", "maximize"] = "minimize"
    second_objective: Literal["none", "n_parameters"] = Field(
        "none", description="a second objective to minimise (multi-objective: a Pareto front)"
    )
    epochs: int | None = Field(None, ge=1, description="epoch budget per trial (default: train.epochs)")
    startup_trials: int = Field(10, ge=1, description="random trials before tpe / gp / cmaes model the space")
    prune_after_trials: int = Field(5, ge=0, description="median pruner: complete trials before any pruning")
    prune_warmup_epochs: int = Field(3, ge=0, description="median pruner: epochs every trial runs before pruning")
    seed: int = 42
    study_name: str | None = None
    storage: str | None = Field(None, description="default: $OPTUNA_STORAGE, else sqlite:///<home>/optuna.db")
    heartbeat_s: int = Field(30, ge=1, description="RDB storage: a trial silent this long x2 is marked FAIL")
    space: dict[str, ParamSpace] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> TuneConfig:
        if self.n_trials and not self.space:
            raise ValueError("n_trials > 0 needs a non-empty search `space`")
        for name, p in self.space.items():
            for other in p.when or {}:
                if other not in self.space or other == name:
                    raise ValueError(f"space.{name}.when refers to {other!r}, which is not another parameter")
        self.ordered_space()  # rejects circular conditions
        multi = self.second_objective != "none"
        if multi and self.sampler not in MULTI_OBJECTIVE_SAMPLERS:
            raise ValueError(f"a second objective needs sampler {' | '.join(MULTI_OBJECTIVE_SAMPLERS)}")
        if multi and self.pruner != "none":
            raise ValueError("Optuna prunes single-objective studies only; set pruner: none")
        if self.sampler == "nsga2" and not multi:
            raise ValueError("nsga2 is the multi-objective sampler; set second_objective or use tpe")
        if self.sampler == "grid":
            for name, p in self.space.items():
                if p.type != "categorical" and p.step is None:
                    raise ValueError(f"grid sampling needs space.{name} categorical or with a `step`")
        return self

    def ordered_space(self) -> list[tuple[str, ParamSpace]]:
        """Parameters by name, each after the ones its `when` tests: a canonical sampling order, because a
        mapping's order does not survive every runner (Kubeflow's parameters come back with sorted keys)."""
        placed: list[str] = []
        while len(placed) < len(self.space):
            ready = [n for n in sorted(self.space) if n not in placed and set(self.space[n].when or {}) <= set(placed)]
            if not ready:
                raise ValueError(f"circular `when` conditions among {sorted(set(self.space) - set(placed))}")
            placed.append(ready[0])
        return [(n, self.space[n]) for n in placed]

    def directions(self) -> list[str]:
        return [self.direction] + (["minimize"] if self.second_objective != "none" else [])
