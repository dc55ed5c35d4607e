"""HDR histograms of latency: 1 µs – 60 s, 3 significant digits, encoded for storage and merging."""

from __future__ import annotations

import pandas as pd
from hdrh.histogram import HdrHistogram

LOWEST_US, HIGHEST_US, DIGITS = 1, 60_000_000, 3
SPECTRUM = (0, 10, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 99.95, 99.99, 100)
SUMMARY = (50.0, 90.0, 95.0, 99.0, 99.9)


def new() -> HdrHistogram:
    """An empty latency histogram in microseconds."""
    return HdrHistogram(LOWEST_US, HIGHEST_US, DIGITS)


def decode(blob: bytes) -> HdrHistogram:
    """A histogram from its encoded form."""
    return HdrHistogram.decode(blob)


def merge(blobs: list[bytes]) -> bytes:
    """The encoded sum of encoded histograms."""
    total = new()
    for blob in blobs:
        total.add(decode(blob))
    return bytes(total.encode())


def percentiles_ms(blob: bytes) -> dict[str, float]:
    """p50, p90, p95, p99, p999 and max in milliseconds."""
    hist = decode(blob)
    out = {f"p{p:g}".replace(".", ""): hist.get_value_at_percentile(p) / 1000 for p in SUMMARY}
    out["max"] = hist.get_max_value() / 1000
    return out


def spectrum(blob: bytes) -> pd.DataFrame:
    """Percentile spectrum: percentile, latency_ms, inverse_tail = 1/(1-p) for a log axis."""
    hist = decode(blob)
    rows = [
        {
            "percentile": p,
            "latency_ms": hist.get_value_at_percentile(p) / 1000,
            "inverse_tail": 1 / (1 - min(p, 99.999) / 100),
        }
        for p in SPECTRUM
    ]
    return pd.DataFrame(rows)
