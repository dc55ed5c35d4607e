"""The optimization ladder measured here: each step's capacity under an SLO and its latency at a
fixed load, repeated in interleaved rounds, with bootstrap confidence intervals."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from service.settings import ServiceSettings
from service.settings import ladder as ladder_steps
from workbench._errors import InputError, StackError, allowed, positive_float, positive_int
from workbench.anatomy import LABELS
from workbench.capacity import MAX_BISECTIONS, TOLERANCE, search
from workbench.compare import interval, resample
from workbench.experiment import Experiment, Session, study_load
from workbench.launcher import ServiceProcess
from workbench.load import SLO, Load
from workbench.load._load import STUDY_CONNECTIONS
from workbench.run import RunResult
from workbench.stack import Stack
from workbench.store import Store, new_run_id

# The account's figures (a cluster behind a load balancer, not one machine): req/s per step.
PUBLISHED_RPS = pd.Series(
    {
        "naive": 5_000,
        "+pool": 8_000,
        "+serialization": 15_000,
        "+async": 25_000,
        "+cache": 35_000,
        "+workers": 50_000,
    },
    name="published (cluster)",
)
PUBLISHED_P95_MS = {"naive": 200.0, "+workers": 45.0}
REPEATS = 3
# The ladder's load unless told otherwise: the account's hot keys and richer responses, open loop
# (connections a cap; the rate is fixed_rate or the capacity step's).
LADDER_LOAD = Load(path="/users/{id}/full", ids="seed", connections=STUDY_CONNECTIONS, duration=3.0)
N_BOOT = 2000
ANATOMY_COLUMNS = ("mean_ms", "p50_ms", "p95_ms", "share")
# A stage's change is noise below this many ms, or this share of its larger time.
NOISE_MS = 0.1
NOISE_SHARE = 0.1


def _ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, NaN when the denominator is 0 or NaN (a base that held no rate)."""
    return numerator / denominator if denominator and denominator == denominator else math.nan


def _optional(run: RunResult, method: str, default: Any) -> Any:
    """run.method() when the run has it (the anatomy and CPU-cost methods land separately)."""
    call = getattr(run, method, None)
    return call() if callable(call) else default


def anatomy(run: RunResult) -> pd.DataFrame:
    """Where a run's request time went: stage × mean/P50/P95 ms and share (empty if not measured)."""
    frame = _optional(run, "anatomy", None)
    return frame if isinstance(frame, pd.DataFrame) else pd.DataFrame(columns=ANATOMY_COLUMNS)


def anatomy_ms(run: RunResult) -> dict[str, float]:
    """Stage → mean ms of a run ({} if not measured)."""
    return {str(k): float(v) for k, v in (_optional(run, "anatomy_ms", None) or {}).items()}


def cpu_ms_per_request(run: RunResult) -> dict[str, float]:
    """Component → CPU ms per request of a run ({} if not measured)."""
    return {str(k): float(v) for k, v in (_optional(run, "cpu_ms_per_request", None) or {}).items()}


def choose_steps(steps: Sequence[str] | None = None) -> list[tuple[str, ServiceSettings]]:
    """The ladder's steps in order, or the named subset of them; InputError names an unknown one."""
    known = ladder_steps()
    if steps is not None and (isinstance(steps, str) or not isinstance(steps, Sequence)):
        raise InputError("steps", f"must be a list of step names, got {steps!r}")
    if not steps:
        return known
    names = [name for name, _ in known]
    for step in steps:
        if step not in names:
            raise InputError("steps", f"unknown step {step!r}; steps are: {allowed(names)}")
    return [(name, settings) for name, settings in known if name in steps]


def measure(
    stack: Stack,
    *,
    slo: SLO | str = "p95=50ms,errors=1%",
    fixed_rate: float = 300.0,
    start: float = 250.0,
    limit: float = 50_000.0,
    tolerance: float = TOLERANCE,
    max_bisections: int = MAX_BISECTIONS,
    repeats: int = REPEATS,
    steps: Sequence[str] | None = None,
    store: Store | None = None,
    progress: bool = True,
    load: Load | None = None,
    experiment: Experiment | None = None,
    **shape: Any,
) -> pd.DataFrame:
    """Every step measured `repeats` times, interleaved: round 1 climbs every step, then round 2...

    One row per round and step: the capacity search's bracket and the run at `fixed_rate` (its
    P95/P99, anatomy and CPU cost). All runs share one Session (load workers started once).
    The load is `experiment`'s, else `load` (default LADDER_LOAD), with Load's fields by keyword
    over it.
    """
    slo = SLO.parse(slo) if isinstance(slo, str) else slo
    chosen = choose_steps(steps)
    repeats = positive_int("repeats", repeats)
    fixed_rate = positive_float("fixed_rate", fixed_rate)
    point = study_load(experiment, load, LADDER_LOAD, shape)
    climb_id = new_run_id("ladder")
    rows = []
    with Session() as session:
        # Interleaved so that drift over time (a neighbour's load, caches, the disk) hits every
        # step alike instead of whichever step happens to run last.
        for round_ in range(1, repeats + 1):
            for name, settings in chosen:
                if progress:
                    print(f"--- round {round_}/{repeats}: {name}", flush=True)
                labels = {"ladder": climb_id, "ladder_step": name, "ladder_round": round_}
                with ServiceProcess(settings, stack) as svc:
                    fixed = replace(
                        point, settings=settings, load=point.load.replace(rate=fixed_rate),
                        name=f"ladder {name}",
                        labels=labels,
                    ).run(stack, store=store, progress=False, service=svc, session=session)  # fmt: skip
                    if not svc.wait_idle():
                        raise StackError(f"requests still in flight after {name}; log {svc.log}")
                    found = search(
                        stack, settings=settings, slo=slo, start=start, limit=limit,
                        tolerance=tolerance, max_bisections=max_bisections, experiment=point,
                        labels=labels, store=store, session=session, service=svc,
                        progress=progress,
                    )  # fmt: skip
                row = fixed.summary()
                rows.append(
                    {
                        "round": round_,
                        "step": name,
                        "capacity_rps": found.max_rate or 0.0,
                        "broke_at": found.broke_at,
                        "bottleneck": found.bottleneck.get("kind", ""),
                        "p95_ms": row.get("p95_ms"),
                        "p99_ms": row.get("p99_ms"),
                        "anatomy": anatomy(fixed),
                        "cpu_ms_per_request": cpu_ms_per_request(fixed),
                        "fixed_run_id": fixed.run_id,
                    }
                )
    return pd.DataFrame(rows)


def _median_ci(
    values: np.ndarray, draws: np.ndarray, confidence: float
) -> tuple[float, float, float]:
    """The median of values and the bootstrap interval of the median (resampled by draws)."""
    if np.isnan(values).all():
        return (float("nan"),) * 3
    low, high = interval(np.nanmedian(values[draws], axis=1), confidence=confidence)
    return float(np.nanmedian(values)), low, high


def _mean_anatomy(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Stage-wise mean of anatomy frames (a stage missing from a run counts as absent, not 0)."""
    frames = [f for f in frames if isinstance(f, pd.DataFrame) and len(f)]
    if not frames:
        return pd.DataFrame(columns=ANATOMY_COLUMNS)
    order = list(dict.fromkeys(stage for f in frames for stage in f.index))
    return pd.concat(frames).groupby(level=0).mean(numeric_only=True).reindex(order)


def _spread_ms(frames: Sequence[pd.DataFrame]) -> dict[str, float]:
    """Per stage, the range (max - min) of its mean ms over runs: the noise between repeats."""
    frames = [f for f in frames if isinstance(f, pd.DataFrame) and len(f) and "mean_ms" in f]
    if len(frames) < 2:
        return {}
    means = pd.concat([f["mean_ms"] for f in frames], axis=1)
    return {str(k): float(v) for k, v in (means.max(axis=1) - means.min(axis=1)).items()}


def _ms(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 else f"{value:.1f}" if value >= 1 else f"{value:.2f}"


def mechanism(
    step: str,
    before: pd.DataFrame,
    after: pd.DataFrame,
    *,
    noise_ms: Mapping[str, float] | None = None,
    floor_ms: float = NOISE_MS,
    share: float = NOISE_SHARE,
) -> str:
    """One sentence: the anatomy stage whose mean time per request changed most from `before` to
    `after`, with its P95 (among requests through the stage) beside it.

    A change counts when it exceeds floor_ms, `share` of the stage's larger time and the
    stage's spread between repeats (noise_ms); otherwise "no stage changed beyond noise".
    """
    if after.empty or "mean_ms" not in after:
        return f"{step}: no anatomy measured"
    if before.empty or "mean_ms" not in before:
        return f"{step}: the baseline"
    stages = before.index.union(after.index)

    def column(frame: pd.DataFrame, name: str) -> dict[str, float]:
        values = frame[name].reindex(stages).fillna(0.0) if name in frame else None
        return {str(k): float(v) for k, v in values.items()} if values is not None else {}

    mean_before, mean_after = column(before, "mean_ms"), column(after, "mean_ms")
    noise = noise_ms or {}
    moved = {
        stage: mean_after[stage] - mean_before[stage]
        for stage in mean_after
        if abs(mean_after[stage] - mean_before[stage])
        > max(floor_ms, share * max(mean_before[stage], mean_after[stage]), noise.get(stage, 0.0))
    }
    if not moved:
        return f"{step}: no stage changed beyond noise"
    stage = max(moved, key=lambda name: abs(moved[name]))
    label = LABELS.get(stage, stage)
    text = f"{step}: {label} {_ms(mean_before[stage])} → {_ms(mean_after[stage])} ms per request"
    p95_before, p95_after = column(before, "p95_ms"), column(after, "p95_ms")
    if p95_before and p95_after:
        text += f" (P95 {_ms(p95_before[stage])} → {_ms(p95_after[stage])} ms)"
    # the stages (with `other`) add up to the mean service time
    text += f"; service time {_ms(sum(mean_before.values()))} → {_ms(sum(mean_after.values()))} ms"
    return text


def cpu_change(before: Mapping[str, float], after: Mapping[str, float]) -> str:
    """The change of server-side CPU per request between two steps, as a sentence's tail.

    Capacity is where the CPU runs out: at the fixed rate a stage's time may barely move while
    the CPU each request costs (what limits capacity on these cores) drops.
    """
    old, new = before.get("server", math.nan), after.get("server", math.nan)
    if not (old == old and new == new):
        return ""
    text = f"; server CPU {_ms(old)} → {_ms(new)} ms per request"
    service_old, service_new = before.get("service", math.nan), after.get("service", math.nan)
    if service_old == service_old and service_new == service_new:
        text += f" (service {_ms(service_old)} → {_ms(service_new)})"
    return text


def table(
    measured: pd.DataFrame, *, n_boot: int = N_BOOT, confidence: float = 0.95, seed: int = 0
) -> pd.DataFrame:
    """One row per step from `measure`'s rows: medians of the repeats with bootstrap intervals.

    Capacity and P95 intervals resample each step's repeats. The ratio to the first step
    (naive) resamples rounds *paired*: a draw takes step and naive from the same rounds, since a
    round measured them minutes apart and shares their drift.
    """
    rng = np.random.default_rng(seed)
    names = list(dict.fromkeys(measured["step"]))
    wide = measured.pivot(index="round", columns="step", values="capacity_rps").astype(float)
    p95 = measured.pivot(index="round", columns="step", values="p95_ms").astype(float)
    draws = resample(len(wide), n_boot=n_boot, rng=rng)
    base = wide[names[0]].to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        base_boot = np.nanmedian(base[draws], axis=1)
    rows = []
    previous = pd.DataFrame()
    previous_frames: list[pd.DataFrame] = []
    previous_cpu: dict[str, float] = {}
    # One search per step: its bisection bracket [held, broke) is the interval it gives.
    broke = (
        measured.set_index("step")["broke_at"].astype(float)
        if len(wide) == 1 and "broke_at" in measured
        else None
    )
    for name in names:
        repeats = measured[measured["step"] == name]
        capacity = wide[name].to_numpy()
        cap, cap_low, cap_high = _median_ci(capacity, draws, confidence)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio_boot = np.nanmedian(capacity[draws], axis=1) / base_boot
            ratio = _ratio(cap, float(np.nanmedian(base)))
        ratio_low, ratio_high = interval(ratio_boot, confidence=confidence)
        if broke is not None:  # the ratio's interval spans the two brackets' ends
            cap_high = float(broke.get(name, math.nan))
            base_low, base_high = float(base[0]), float(broke.get(names[0], math.nan))
            ratio_low, ratio_high = _ratio(cap_low, base_high), _ratio(cap_high, base_low)
        p95_ms, p95_low, p95_high = _median_ci(p95[name].to_numpy(), draws, confidence)
        frames = list(repeats["anatomy"])
        current = _mean_anatomy(frames)
        cpu = pd.DataFrame(list(repeats["cpu_ms_per_request"])).mean()
        cpu_now = {str(k): float(v) for k, v in cpu.items()}
        # noise: how far a stage moves between repeats of the same step (either step)
        spreads = (_spread_ms(previous_frames), _spread_ms(frames))
        noise = {k: max(s.get(k, 0.0) for s in spreads) for k in {*spreads[0], *spreads[1]}}
        rows.append(
            {
                "step": name,
                "capacity_rps": cap,
                "capacity_ci_low": cap_low,
                "capacity_ci_high": cap_high,
                "ratio_to_naive": ratio if np.isfinite(ratio) else float("nan"),
                "ratio_ci_low": ratio_low,
                "ratio_ci_high": ratio_high,
                "p95_ms": p95_ms,
                "p95_ci_low": p95_low,
                "p95_ci_high": p95_high,
                "p99_ms": float(repeats["p99_ms"].astype(float).median()),
                "repeats": len(repeats),
                "capacity_repeats": [float(v) for v in capacity],
                "published_rps": float(PUBLISHED_RPS.get(name, float("nan"))),
                "published_ratio": float(PUBLISHED_RPS.get(name, float("nan")))
                / PUBLISHED_RPS["naive"],
                "bottleneck": repeats["bottleneck"].mode().iloc[0] if len(repeats) else "",
                "anatomy": current,
                "anatomy_ms": {str(k): float(v) for k, v in current.get("mean_ms", {}).items()},
                "cpu_ms_per_request": {str(k): float(v) for k, v in cpu.items()},
                "mechanism": mechanism(
                    name,
                    previous if name != names[0] else pd.DataFrame(),
                    current,
                    noise_ms=noise,
                )
                + (cpu_change(previous_cpu, cpu_now) if name != names[0] else ""),  # fmt: skip
            }
        )
        previous, previous_frames, previous_cpu = current, frames, cpu_now
    return pd.DataFrame(rows)


def anatomies(table: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Step → its anatomy at the fixed rate (stage-wise mean over the repeats), for plots.anatomy."""
    return dict(zip(table["step"], table["anatomy"], strict=True))


def shown(table: pd.DataFrame) -> pd.DataFrame:
    """The ladder table as shown (notebook, command): figures rounded, intervals as [low, high]."""

    def span(low: float, high: float, digits: int) -> str:
        return f"[{low:,.{digits}f}, {high:,.{digits}f}]"

    return pd.DataFrame(
        {
            "step": table["step"],
            "capacity req/s": table["capacity_rps"].map(lambda v: f"{v:,.0f}"),
            "95% CI": [
                span(lo, hi, 0) for lo, hi in zip(table["capacity_ci_low"], table["capacity_ci_high"], strict=True)
            ],
            "x naive": table["ratio_to_naive"].map(lambda v: f"{v:.2f}"),
            "x naive 95% CI": [
                span(lo, hi, 2) for lo, hi in zip(table["ratio_ci_low"], table["ratio_ci_high"], strict=True)
            ],
            "published x": table["published_ratio"].map(lambda v: f"{v:.1f}"),
            "P95 ms at fixed rate": table["p95_ms"].map(lambda v: f"{v:.1f}"),
            "bottleneck": table["bottleneck"],
        }
    )  # fmt: skip


def records(table: pd.DataFrame) -> list[dict[str, Any]]:
    """The ladder table as JSON-able dicts, one per step, intervals as [low, high] lists."""
    out = []
    for row in table.to_dict("records"):
        out.append(
            {
                "step": row["step"],
                "capacity_rps": row["capacity_rps"],
                "capacity_ci": [row["capacity_ci_low"], row["capacity_ci_high"]],
                "capacity_repeats": row["capacity_repeats"],
                "ratio_to_naive": row["ratio_to_naive"],
                "ratio_ci": [row["ratio_ci_low"], row["ratio_ci_high"]],
                "p95_ms": row["p95_ms"],
                "p95_ci": [row["p95_ci_low"], row["p95_ci_high"]],
                "p99_ms": row["p99_ms"],
                "published_rps": row["published_rps"],
                "published_ratio": row["published_ratio"],
                "bottleneck": row["bottleneck"],
                "anatomy_ms": row["anatomy_ms"],
                "cpu_ms_per_request": row["cpu_ms_per_request"],
                "mechanism": row["mechanism"],
            }
        )
    return out


def climb(stack: Stack, **options: Any) -> pd.DataFrame:
    """One row per ladder step: capacity under the SLO with its CI, ratio to naive with its CI,
    P95 at fixed_rate, anatomy, CPU per request and the mechanism, beside the published ladder.

    The options are `measure`'s (declared there once).
    """
    return table(measure(stack, **options))
