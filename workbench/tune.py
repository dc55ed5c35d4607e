"""Auto-tuning: an Optuna study over ServiceSettings, maximizing throughput under an SLO."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import optuna

from service.settings import ServiceSettings
from workbench._errors import InputError, positive_int
from workbench.capacity import breaks
from workbench.experiment import Experiment, Session, study_load
from workbench.load import SLO, Load
from workbench.stack import Stack
from workbench.store import Store, new_run_id
from workbench.tuning import Tuning, suggest

# name → ("int", low, high) | ("float", low, high) | ("bool",) | ("choice", options...)
DEFAULT_SPACE: dict[str, tuple[Any, ...]] = {
    "pool_size": ("int", 2, 40),
    "max_overflow": ("int", 0, 40),
    "workers": ("int", 1, 2),
    "cache": ("bool",),
    "l1_size": ("int", 100, 20_000),
    "batcher": ("bool",),
    "batch_size": ("int", 5, 100),
    "serializer": ("choice", "pydantic", "orjson"),
}


# A trial's load unless told otherwise: closed loop, so that throughput is what is maximised.
TUNE_LOAD = Load(path="/users/{id}", connections=32, duration=3.0)


def check_space(space: Mapping[str, Sequence[Any]]) -> dict[str, tuple[Any, ...]]:
    """The search space, each name a setting and each range well-formed."""
    if not space:
        raise InputError("space", "is empty; e.g. {'pool_size': ('int', 2, 40)}")
    names = ServiceSettings.names()
    out = {}
    for name, spec in space.items():
        if name not in names:
            raise InputError(name, f"unknown setting; valid names are: {', '.join(names)}")
        spec = tuple(spec)
        kind = spec[0] if spec else None
        ok = (
            (kind in ("int", "float") and len(spec) == 3 and spec[1] < spec[2])
            or (kind == "bool" and len(spec) == 1)
            or (kind == "choice" and len(spec) >= 2)
        )
        if not ok:
            raise InputError(
                name,
                f"range must be ('int', low, high), ('float', low, high), ('bool',) or ('choice', ...), got {spec!r}",
            )
        out[name] = spec
    return out


def tune(
    stack: Stack | None,
    *,
    base: ServiceSettings | None = None,
    space: Mapping[str, Sequence[Any]] | None = None,
    trials: int = 12,
    slo: SLO | str = "p95=50ms,errors=1%",
    seed: int = 0,
    confirm: bool = True,
    store: Store | None = None,
    progress: bool = True,
    cluster: object = None,
    load: Load | None = None,
    experiment: Experiment | None = None,
    **shape: Any,
) -> Tuning:
    """Search settings for the highest closed-loop throughput whose run holds the SLO.

    seed is the sampler's. The load of every trial is `experiment`'s, else `load` (default
    TUNE_LOAD), with Load's fields by keyword (path, connections, duration...) over it.
    cluster (a Dask scheduler address, Client or LocalCluster): trials run in parallel, one per
    worker with the resource `bench` (one per host), each on that host's stack (or stack's URLs).
    """
    point = study_load(experiment, load, TUNE_LOAD, shape)
    checked = check_space(space or DEFAULT_SPACE)
    trials = positive_int("trials", trials)
    slo = SLO.parse(slo) if isinstance(slo, str) else slo
    base = base or ServiceSettings.optimized()
    study_id = new_run_id("tune")
    if cluster is not None:
        from workbench.cluster import tune_on

        def trial_run(settings: ServiceSettings, labels: dict[str, Any]) -> Experiment:
            return replace(
                point, settings=settings,
                name="tune-confirm" if labels["trial"] == "confirm" else "tune",
                labels={"tune": study_id, **labels},
            )  # fmt: skip

        return tune_on(
            cluster, stack=stack, base=base, space=checked, trials=trials, slo=slo,
            experiment=trial_run, seed=seed, confirm=confirm, store=store or Store(),
            progress=progress,
        )  # fmt: skip
    if stack is None:
        raise InputError("stack", "is needed without a cluster: give a started Stack")
    limit = stack.connection_limit()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))

    def objective(trial: optuna.Trial) -> float:
        try:
            settings = base.replace(**suggest(trial, checked))
            settings.check_database_limit(limit)
        except ValueError as exc:  # an infeasible combination scores nothing
            trial.set_user_attr("skipped", str(exc))
            return 0.0
        run = replace(
            point, settings=settings, name="tune",
            labels={"tune": study_id, "trial": trial.number},
        ).run(stack, store=store, progress=False, session=session)  # fmt: skip
        broken = breaks(run, slo)
        rps = float(run.summary().get("throughput_rps") or 0.0)
        trial.set_user_attr("run_id", run.run_id)
        trial.set_user_attr("broken", "; ".join(broken))
        trial.set_user_attr("p95_ms", run.summary().get("p95_ms"))
        if progress:
            verdict = "holds the SLO" if not broken else "breaks: " + "; ".join(broken)
            print(f"trial {trial.number:>3}: {rps:>9,.0f} req/s, {verdict}", flush=True)
        return 0.0 if broken else rps

    # One session: load workers kept across trials, each service stopped during the next boot.
    with Session() as session:
        study.optimize(objective, n_trials=trials)
        best = base.replace(**{k: v for k, v in study.best_params.items()})
        again = None
        if confirm and study.best_value > 0:
            again = replace(
                point, settings=best, name="tune-confirm",
                labels={"tune": study_id, "trial": "confirm"},
            ).run(stack, store=store, progress=False, session=session)  # fmt: skip
    return Tuning.of(study, base=base, confirm=again)
