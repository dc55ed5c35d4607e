"""Tuning: an auto-tuning study's outcome, and how a trial draws its settings from the space."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import optuna
import pandas as pd

from service.settings import ServiceSettings
from workbench.run import RunResult


def suggest(trial: optuna.Trial, space: Mapping[str, tuple[Any, ...]]) -> dict[str, Any]:
    """The values a trial asks for, one per setting of the space."""
    values: dict[str, Any] = {}
    for name, spec in space.items():
        kind = spec[0]
        if kind == "int":
            values[name] = trial.suggest_int(
                name, spec[1], spec[2], log=spec[2] / max(spec[1], 1) > 50
            )
        elif kind == "float":
            values[name] = trial.suggest_float(name, spec[1], spec[2])
        elif kind == "bool":
            values[name] = trial.suggest_categorical(name, [False, True])
        else:
            values[name] = trial.suggest_categorical(name, list(spec[1:]))
    return values


@dataclass(frozen=True, eq=False)
class Tuning:
    """An auto-tuning outcome: the study, the best settings, and the best re-measured."""

    study: optuna.Study = field(repr=False)
    base: ServiceSettings
    best: ServiceSettings
    best_value: float
    confirm: RunResult | None
    trials: pd.DataFrame = field(repr=False)

    @classmethod
    def of(cls, study: optuna.Study, *, base: ServiceSettings, confirm: RunResult | None) -> Tuning:
        """The outcome of a finished study whose trials drew settings over `base`."""
        return cls(
            study=study,
            base=base,
            best=base.replace(**dict(study.best_params)),
            best_value=float(study.best_value),
            confirm=confirm,
            trials=study.trials_dataframe(),
        )

    def sentence(self) -> str:
        """The finding in words."""
        changed = (
            ", ".join(f"{k}={v}" for k, v in self.best.diff(self.base).items())
            or "the base settings"
        )
        text = f"Best of {len(self.trials)} trials: {self.best_value:,.0f} req/s with {changed}."
        if self.confirm is not None:
            again = self.confirm.summary().get("throughput_rps", math.nan)
            text += (
                f" Re-measured: {again:,.0f} req/s ({again / self.best_value:.0%} of the trial)."
            )
        return text
