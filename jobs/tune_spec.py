"""The `tune:` section of a job spec: search space, search algorithm, scheduler, budget.

Search-space keys are training field names (`learning_rate`, `dropout`, ...) or model fields
prefixed `model.` (`model.depth`, `model.molecule_features`, ...); every bound or choice is
validated against that field's own rules before any trial starts.
"""

from __future__ import annotations

import importlib.util
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Distribution(_Spec):
    """Exactly one of the keys below."""

    choice: list[Any] | None = Field(default=None, min_length=1, description="Sample uniformly from these values.")
    grid: list[Any] | None = Field(default=None, min_length=1, description="Try every value (grid search); crossed with the other grid keys.")
    uniform: tuple[float, float] | None = Field(default=None, description="[low, high], sampled uniformly.")
    loguniform: tuple[float, float] | None = Field(default=None, description="[low, high], both > 0, sampled uniformly in log space.")
    randint: tuple[int, int] | None = Field(default=None, description="[low, high): an integer, high excluded.")

    @model_validator(mode="after")
    def _one_kind(self) -> "Distribution":
        kinds = [k for k in ("choice", "grid", "uniform", "loguniform", "randint") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(f"give exactly one of choice, grid, uniform, loguniform, randint (got {kinds or 'none'})")
        low_high = getattr(self, kinds[0]) if kinds[0] in ("uniform", "loguniform", "randint") else None
        if low_high is not None and not low_high[0] < low_high[1]:
            raise ValueError(f"{kinds[0]} needs low < high, got {list(low_high)}")
        if self.loguniform is not None and self.loguniform[0] <= 0:
            raise ValueError(f"loguniform needs low > 0, got {list(self.loguniform)}")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ("choice", "grid", "uniform", "loguniform", "randint") if getattr(self, k) is not None)

    def extremes(self) -> list[Any]:
        """Values that must all be valid for the field: every choice, or both bounds."""
        if self.choice is not None or self.grid is not None:
            return list(self.choice or self.grid)
        if self.randint is not None:
            return [self.randint[0], self.randint[1] - 1]
        return list(self.uniform or self.loguniform)

    def to_tune(self):
        from ray import tune

        if self.choice is not None:
            return tune.choice(self.choice)
        if self.grid is not None:
            return tune.grid_search(self.grid)
        if self.uniform is not None:
            return tune.uniform(*self.uniform)
        if self.loguniform is not None:
            return tune.loguniform(*self.loguniform)
        return tune.randint(*self.randint)


class SchedulerSpec(_Spec):
    type: Literal["asha", "none"] = Field(default="asha", description="asha: stop weak trials early (successive halving); none: run every trial to the end.")
    grace_period: int = Field(
        default=3,
        ge=1,
        description="Epochs every trial runs before ASHA may stop it. Short grace periods stop slow starters that end up best; see the README.",
    )
    reduction_factor: float = Field(default=2.0, gt=1.0, description="ASHA keeps the top 1/reduction_factor of trials at each rung.")
    max_epochs: int | None = Field(default=None, ge=1, description="Longest a trial may run, in epochs. Omitted: the largest epochs a trial can get.")


class TuneSpec(_Spec):
    search_space: dict[str, Distribution] = Field(
        min_length=1,
        description="Training field name, or model field as model.NAME, → distribution, e.g. learning_rate: {loguniform: [1e-5, 1e-3]}, model.depth: {choice: [3, 4, 5]}.",
    )
    num_samples: int = Field(default=8, ge=1, le=10_000, description="Trials to sample (with grid keys: repetitions of the whole grid).")
    search_algorithm: Literal["random", "grid", "optuna"] = Field(
        default="random", description="random (Tune's variant generator), grid (every key a grid) or optuna (TPE; needs the optuna package)."
    )
    scheduler: SchedulerSpec = Field(default_factory=SchedulerSpec, description="Early stopping.")
    max_concurrent_trials: int = Field(default=2, ge=1, description="Trials running at once; each is a Ray Train run with the spec's scaling (its own workers/GPUs).")
    time_budget_s: float | None = Field(default=None, gt=0, description="Stop starting and running trials after this many seconds.")
    metric: str | None = Field(default=None, description="Validation metric to optimise. Omitted: the spec's checkpointing metric.")
    mode: Literal["max", "min"] | None = Field(default=None, description="Omitted: the metric's natural direction.")
    seed: int = Field(default=0, ge=0, description="Seed of the search algorithm.")
    include_spec_values: bool = Field(
        default=True,
        description="Run the spec's own training values as the first trial (Tune's points_to_evaluate), so the search never ends worse than the hand-set config on its metric. Not with grid search.",
    )

    @model_validator(mode="after")
    def _algorithm_fits_space(self) -> "TuneSpec":
        kinds = {name: d.kind for name, d in self.search_space.items()}
        if self.search_algorithm == "grid" and any(k != "grid" for k in kinds.values()):
            raise ValueError(f"search_algorithm 'grid' needs every search_space key to be a grid, got {kinds}")
        if self.search_algorithm == "optuna" and any(k == "grid" for k in kinds.values()):
            raise ValueError(f"search_algorithm 'optuna' cannot take grid keys (use choice), got {kinds}")
        if self.search_algorithm == "optuna" and importlib.util.find_spec("optuna") is None:
            raise ValueError("search_algorithm 'optuna' needs the optuna package: pip install 'biomed-ray[tune]' (or pip install optuna)")
        return self

    def check_fields(self, training: BaseModel, model: BaseModel | None = None) -> None:
        """Every key is a training field (or `model.` a model field) and every value the
        distribution can take is valid for it."""
        for name, dist in self.search_space.items():
            section, field = ("model", name.removeprefix("model.")) if name.startswith("model.") else ("training", name)
            spec = model if section == "model" else training
            fields = type(spec).model_fields if spec is not None else {}
            if field not in fields or field in UNTUNABLE_MODEL_FIELDS and section == "model":
                allowed = sorted(fields) if section == "training" else sorted(f"model.{f}" for f in fields if f not in UNTUNABLE_MODEL_FIELDS)
                raise ValueError(f"tune.search_space: {name!r} is not a {section} field that can be searched (fields: {allowed})")
            for value in dist.extremes():
                try:
                    type(spec).model_validate({**spec.model_dump(), field: value})
                except ValidationError as error:
                    reason = error.errors()[0]["msg"]
                    raise ValueError(f"tune.search_space.{name}: value {value!r} is invalid for {section}.{field}: {reason}") from None


# Which model a trial trains and reads is fixed by the spec, not searched.
UNTUNABLE_MODEL_FIELDS = frozenset({"backbone", "path", "pretrained"})


def split_params(params: dict) -> tuple[dict, dict]:
    """A trial's sampled values as (training updates, model updates)."""
    training = {k: v for k, v in params.items() if not k.startswith("model.")}
    model = {k.removeprefix("model."): v for k, v in params.items() if k.startswith("model.")}
    return training, model
