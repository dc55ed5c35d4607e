"""HDR histograms of latencies in microseconds (1 µs – 60 s, 3 significant digits), merged."""

from __future__ import annotations

from collections.abc import Iterable

from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 60_000_000
DIGITS = 3


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
    if histogram.get_total_count() == 0:
        return float("nan")
    return float(histogram.get_value_at_percentile(percentile)) / 1000.0


def max_ms(histogram: HdrHistogram) -> float:
    """The largest recorded value in milliseconds; NaN for an empty histogram."""
    if histogram.get_total_count() == 0:
        return float("nan")
    return float(histogram.get_max_value()) / 1000.0
