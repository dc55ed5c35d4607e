"""Compare two runs (or two groups of runs): differences with bootstrap confidence intervals."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from workbench import hdr
from workbench.run import RunResult

PERCENTILES = (("p50_ms", 50.0), ("p95_ms", 95.0), ("p99_ms", 99.0))


def _group(runs: RunResult | Sequence[RunResult]) -> list[RunResult]:
    return [runs] if isinstance(runs, RunResult) else list(runs)


def _rates(runs: list[RunResult]) -> np.ndarray:
    """Per-second completed requests of every run in the group."""
    return np.concatenate(
        [r.series()["rate"].to_numpy(dtype=float) for r in runs if len(r.series())]
    )


def _distribution(runs: list[RunResult]) -> tuple[np.ndarray, np.ndarray]:
    """Latency values (ms) and their counts from the merged HDR histogram of the group."""
    merged = hdr.merge(r.hdr_latency for r in runs)
    values, counts = [], []
    for item in merged.get_recorded_iterator():
        values.append(item.value_iterated_to / 1000)
        counts.append(item.count_at_value_iterated_to)
    return np.asarray(values, dtype=float), np.asarray(counts, dtype=np.int64)


def resample(n: int, *, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap draws: n_boot rows of n indices into a sample of n, with replacement.

    Indexing several aligned arrays with the same draws resamples them paired (by row).
    """
    return rng.integers(0, n, size=(n_boot, n))


def interval(replicates: np.ndarray, *, confidence: float = 0.95) -> tuple[float, float]:
    """The percentile bootstrap interval of replicates (NaN replicates left out)."""
    tail = (1 - confidence) / 2 * 100
    finite = np.where(np.isfinite(replicates), replicates, np.nan)
    if np.isnan(finite).all():
        return (float("nan"), float("nan"))
    low, high = np.nanpercentile(finite, [tail, 100 - tail])
    return float(low), float(high)


def _boot_percentile(
    values: np.ndarray, counts: np.ndarray, q: float, n: int, rng: np.random.Generator
) -> np.ndarray:
    """Bootstrap replicates of the q-th percentile: resample counts (multinomial), read the percentile."""
    total = int(counts.sum())
    if total == 0:
        return np.full(n, np.nan)
    draws = rng.multinomial(total, counts / total, size=n)
    cumulative = draws.cumsum(axis=1)
    index = (cumulative < np.ceil(total * q / 100)).sum(axis=1)
    return values[np.minimum(index, len(values) - 1)]


def compare(
    a: RunResult | Sequence[RunResult],
    b: RunResult | Sequence[RunResult],
    *,
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """b against a: throughput and percentiles, b - a with a bootstrap CI and whether it excludes 0."""
    rng = np.random.default_rng(seed)
    group_a, group_b = _group(a), _group(b)
    rows = []

    rates_a, rates_b = _rates(group_a), _rates(group_b)
    boot_a = rates_a[resample(len(rates_a), n_boot=n_boot, rng=rng)].mean(axis=1)
    boot_b = rates_b[resample(len(rates_b), n_boot=n_boot, rng=rng)].mean(axis=1)
    rows.append(("throughput_rps", rates_a.mean(), rates_b.mean(), boot_b - boot_a))

    dist_a, dist_b = _distribution(group_a), _distribution(group_b)
    for name, q in PERCENTILES:
        rep_a = _boot_percentile(*dist_a, q, n_boot, rng)
        rep_b = _boot_percentile(*dist_b, q, n_boot, rng)
        point_a = float(np.median(rep_a))
        point_b = float(np.median(rep_b))
        rows.append((name, point_a, point_b, rep_b - rep_a))

    out = []
    for metric, value_a, value_b, diffs in rows:
        low, high = interval(diffs, confidence=confidence)
        out.append(
            {
                "metric": metric,
                "a": float(value_a),
                "b": float(value_b),
                "diff": float(value_b - value_a),
                "ratio": float(value_b / value_a) if value_a else np.nan,
                "ci_low": float(low),
                "ci_high": float(high),
                "significant": bool(low > 0 or high < 0),
            }
        )
    return pd.DataFrame(out)


def verdict(table: pd.DataFrame) -> str:
    """One sentence per metric: the difference with its CI, or 'no significant difference'."""
    lines = []
    for row in table.itertuples():
        if row.significant:
            lines.append(
                f"{row.metric}: {row.a:,.2f} → {row.b:,.2f} ({row.ratio:.2f}×; "
                f"95% CI of the difference {row.ci_low:+,.2f} .. {row.ci_high:+,.2f})"
            )
        else:
            lines.append(f"{row.metric}: no significant difference ({row.a:,.2f} vs {row.b:,.2f})")
    return "\n".join(lines)


def estimate(
    runs: RunResult | Sequence[RunResult],
    *,
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """One run's (or group's) throughput and latency percentiles, each with a bootstrap CI.

    One row per metric (throughput_rps, p50_ms, p95_ms, p99_ms): value, ci_low, ci_high; the
    throughput resamples the per-second rates, a percentile the latency histogram.
    """
    rng = np.random.default_rng(seed)
    group = _group(runs)
    rows = []
    rates = _rates(group)
    if len(rates):
        boot = rates[resample(len(rates), n_boot=n_boot, rng=rng)].mean(axis=1)
        rows.append(("throughput_rps", float(rates.mean()), *interval(boot, confidence=confidence)))
    else:
        rows.append(("throughput_rps", float("nan"), float("nan"), float("nan")))
    values, counts = _distribution(group)
    for name, q in PERCENTILES:
        replicates = _boot_percentile(values, counts, q, n_boot, rng)
        point = float(np.median(replicates)) if np.isfinite(replicates).any() else float("nan")
        rows.append((name, point, *interval(replicates, confidence=confidence)))
    return pd.DataFrame(rows, columns=["metric", "value", "ci_low", "ci_high"]).set_index("metric")
