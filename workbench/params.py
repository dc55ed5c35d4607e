"""Notebook and CLI parameters: checked in one place, before anything starts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from service.settings import ServiceSettings, SettingsError
from workbench._errors import InputError, positive_float, positive_int
from workbench._net import check_url
from workbench.load._load import Load

if TYPE_CHECKING:
    from workbench.experiment import Experiment

PRESETS = ("naive", "optimized")
MAX_DURATION = 3600.0
MAX_CONNECTIONS = 10_000


def preset_settings(
    preset: str, overrides: Mapping[str, Any] | None = None, *, name: str = "preset"
) -> ServiceSettings:
    """A preset's settings with overrides applied; InputError naming a bad preset or setting."""
    if preset not in PRESETS:
        raise InputError(name, f"must be one of {', '.join(PRESETS)}; got {preset!r}")
    if overrides is not None and not isinstance(overrides, Mapping):
        raise InputError("settings", f"must be a dict of setting: value, got {overrides!r}")
    base = getattr(ServiceSettings, preset)()
    try:
        return ServiceSettings.from_dict(dict(overrides or {}), base=base)
    except SettingsError as exc:
        raise InputError(f"settings.{exc.name}", exc.reason) from None


@dataclass(frozen=True)
class Params:
    """Checked parameters of a run: the load, the data size, the stack's URLs and the settings."""

    load: Load
    users: int
    settings: ServiceSettings
    database_url: str | None = None
    redis_url: str | None = None

    def experiment(self, **fields: Any) -> Experiment:
        """The checked load and settings as an Experiment (fields: name, labels, overrides)."""
        from workbench.experiment import Experiment

        return Experiment(**{"settings": self.settings, "load": self.load, **fields})


def check_params(
    *,
    duration: Any = 5.0,
    warmup: Any = 1.0,
    connections: Any = 16,
    rate: Any = 0,
    users: Any = 100_000,
    preset: Any = "optimized",
    settings: Any = None,
    endpoint: Any = "/users/{id}",
    database_url: Any = "",
    redis_url: Any = "",
    ids: Any = "uniform",
    zipf_s: Any = 1.1,
) -> Params:
    """Check a notebook's parameters; raise InputError naming the first bad one."""
    if not isinstance(endpoint, str) or not endpoint.startswith("/"):
        raise InputError("endpoint", f"must be a path starting with '/', got {endpoint!r}")
    load = Load(  # InputError names duration, warmup, connections, rate, ids or zipf_s
        path=endpoint, duration=duration, warmup=warmup, connections=connections,
        rate=positive_float("rate", rate, strict=False) or None, ids=ids, zipf_s=zipf_s,
    )  # fmt: skip
    if load.duration > MAX_DURATION:
        raise InputError("duration", f"must be <= {MAX_DURATION:g} s, got {load.duration:g}")
    if load.connections > MAX_CONNECTIONS:
        raise InputError("connections", f"must be <= {MAX_CONNECTIONS}, got {load.connections}")
    users = positive_int("users", users)
    if database_url:
        check_url("database_url", database_url, schemes=("postgresql", "postgres"))
    if redis_url:
        check_url("redis_url", redis_url, schemes=("redis",))
    return Params(
        load=load,
        users=users,
        settings=preset_settings(preset, settings),
        database_url=database_url or None,
        redis_url=redis_url or None,
    )


def check_ints(name: str, values: Any, *, minimum: int = 1) -> list[int]:
    """A non-empty list of integers >= minimum (a grid axis), or InputError naming it."""
    if isinstance(values, int) and not isinstance(values, bool):
        values = [values]
    if not isinstance(values, list | tuple) or not values:
        raise InputError(name, f"must be a non-empty list of integers, got {values!r}")
    return [positive_int(name, v, minimum=minimum) for v in values]


def check_positive(name: str, value: Any) -> float:
    """A number > 0, or InputError naming it."""
    return positive_float(name, value)


def check_ladder(*, repeats: Any = 3, tolerance: Any = 0.05, steps: Any = None) -> list[str]:
    """Check a ladder's repeats, bisection tolerance and steps; the step names to climb."""
    from workbench.climb import choose_steps

    positive_int("repeats", repeats)
    positive_float("tolerance", tolerance)
    return [name for name, _ in choose_steps(steps)]


def check_run_id(name: str, run_id: Any) -> str:
    """The id of a stored run, or InputError naming it (and the latest ids)."""
    from workbench.store import Store

    if not isinstance(run_id, str) or not run_id:
        raise InputError(name, f"must be a run id from data/runs, got {run_id!r}")
    store = Store()
    if run_id not in store.ids():
        latest = ", ".join(store.ids()[-3:]) or "none yet"
        raise InputError(name, f"no run {run_id!r} in {store.root}; latest: {latest}")
    return run_id


def slo_from(*, p95_ms: Any = 50.0, p99_ms: Any = 0.0, errors_pct: Any = 1.0) -> Any:
    """An SLO from notebook parameters (0 leaves a threshold out); InputError names a bad one."""
    from workbench.load import SLO

    parts = []
    for name, value, unit, key in (
        ("slo_p95_ms", p95_ms, "ms", "p95"),
        ("slo_p99_ms", p99_ms, "ms", "p99"),
        ("slo_errors_pct", errors_pct, "%", "errors"),
    ):
        number = positive_float(name, value, strict=False)
        if number:
            parts.append(f"{key}={number:g}{unit}")
    if not parts:
        raise InputError(
            "slo_p95_ms", "at least one of slo_p95_ms, slo_p99_ms, slo_errors_pct must be > 0"
        )
    return SLO.parse(",".join(parts))
