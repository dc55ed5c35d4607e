"""HDR histograms of latencies in microseconds (1 µs – 60 s, 3 significant digits): encoded, merged, read."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np
from hdrh.histogram import HdrHistogram

if TYPE_CHECKING:
    import pandas as pd

LOWEST_US = 1
HIGHEST_US = 60_000_000
DIGITS = 3
SUMMARY = {"p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0, "p999": 99.9}
_TICKS_PER_HALF = 5


def new_histogram() -> HdrHistogram:
    """An empty latency histogram in microseconds."""
    return HdrHistogram(LOWEST_US, HIGHEST_US, DIGITS)


def record_counts(histogram: HdrHistogram, counts: dict[int, int]) -> None:
    """Add a {microseconds: count} tally to a histogram (values clamped to the range)."""
    for value, count in counts.items():
        histogram.record_value(min(max(value, 0), HIGHEST_US), count)


def encode(histogram: HdrHistogram) -> bytes:
    """Encode a histogram to the standard compressed HDR form (base64 bytes)."""
    return bytes(histogram.encode())


def decode(blob: bytes) -> HdrHistogram:
    """Decode a histogram encoded with encode()."""
    if not blob:
        return new_histogram()
    return HdrHistogram.decode(blob)


def merge(blobs: Iterable[bytes]) -> HdrHistogram:
    """Merge encoded histograms by adding their counts."""
    total = new_histogram()
    for blob in blobs:
        if blob:
            total.add(decode(blob))
    return total


def percentile_ms(histogram: HdrHistogram, percentile: float) -> float:
    """The value at a percentile (0–100) in milliseconds; NaN for an empty histogram."""
    return percentiles_ms(histogram, [percentile])[0]


def percentiles_ms(histogram: HdrHistogram, percentiles: Iterable[float]) -> list[float]:
    """The values at several percentiles (0–100) in milliseconds, in one pass over the counts;
    NaN for an empty histogram. Equal to hdrh's get_value_at_percentile, which walks the counts
    in Python once per percentile (~17,000 buckets: milliseconds of CPU each)."""
    wanted = list(percentiles)
    if histogram.get_total_count() == 0:
        return [float("nan")] * len(wanted)
    # A decoded histogram's payload may be shorter than counts_len: the rest counts as zero.
    size = min(histogram.counts_len, histogram.encoder.payload.counts_len)
    cumulative = np.cumsum(np.ctypeslib.as_array(histogram.counts)[:size], dtype=np.uint64)
    out = []
    for percentile in wanted:
        target = histogram.get_target_count_at_percentile(percentile)
        index = int(np.searchsorted(cumulative, target, side="left"))
        if index >= size:  # as hdrh: counts short of the target (an inconsistent total)
            out.append(0.0)
            continue
        value = histogram.get_value_from_index(index)
        if percentile:
            value = histogram.get_highest_equivalent_value(value)
        else:
            value = histogram.get_lowest_equivalent_value(value)
        out.append(float(value) / 1000.0)
    return out


def max_ms(histogram: HdrHistogram) -> float:
    """The largest recorded value in milliseconds; NaN for an empty histogram."""
    if histogram.get_total_count() == 0:
        return float("nan")
    return float(histogram.get_max_value()) / 1000.0


def percentiles(blob: bytes) -> dict[str, float]:
    """p50, p90, p95, p99, p999 and max in milliseconds of an encoded histogram (NaN when empty)."""
    histogram = decode(blob)
    values = dict(zip(SUMMARY, percentiles_ms(histogram, SUMMARY.values()), strict=True))
    values["max"] = max_ms(histogram)
    return values


def _fractions(total: int) -> list[float]:
    """Percentile fractions spaced evenly on 1/(1-p), as HdrHistogram's percentile output."""
    fractions = []
    level = 0.0
    while True:
        fraction = 1.0 - 0.5**level
        if 1.0 / (1.0 - fraction) > total:
            break
        fractions.append(fraction)
        level += 1.0 / _TICKS_PER_HALF
    return fractions


def spectrum(blob: bytes) -> pd.DataFrame:
    """Percentile spectrum: percentile (%), latency_ms, inverse_tail = 1/(1-p) for a log axis."""
    import pandas as pd

    histogram = decode(blob)
    total = histogram.get_total_count()
    rows = []
    if total:
        fractions = _fractions(total)
        values = percentiles_ms(histogram, [100.0 * f for f in fractions])
        for fraction, value in zip(fractions, values, strict=True):
            rows.append((100.0 * fraction, value, min(1.0 / (1.0 - fraction), float(total))))
        rows.append((100.0, histogram.get_max_value() / 1000.0, float(total)))
    return pd.DataFrame(rows, columns=["percentile", "latency_ms", "inverse_tail"])
