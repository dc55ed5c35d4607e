"""LoadResult from a real short run: summary keys, series, percentile spectrum, text."""

from __future__ import annotations

import json

import pytest

from workbench._errors import InputError
from workbench.load import LoadResult, run_load
from workbench.load._result import SERIES_COLUMNS

from .load_servers import serve


@pytest.fixture(scope="module")
def result() -> LoadResult:
    with serve() as (url, _):
        return run_load(
            url + "/status/404",
            rate=200,
            duration=2.0,
            warmup=0.2,
            connections=8,
            processes=1,
            progress=False,
        )


def test_summary_has_the_documented_keys(result: LoadResult) -> None:
    summary = result.summary()
    for key in (
        "requests",
        "errors",
        "error_classes",
        "duration_s",
        "throughput_rps",
        "asked_rate",
        "latency_ms",
        "service_time_ms",
        "generator_saturated",
        "saturation_reason",
    ):
        assert key in summary
    assert set(summary["latency_ms"]) == {"p50", "p90", "p95", "p99", "p999", "max"}
    assert set(summary["service_time_ms"]) == set(summary["latency_ms"])
    assert summary["asked_rate"] == 200
    assert summary["errors"] == summary["error_classes"]["status_4xx"] == summary["requests"]
    assert summary["throughput_rps"] == pytest.approx(200, rel=0.05)
    json.dumps(summary)  # serialisable for --json


# `window`: seconds are bucketed by the wall clock, so a stall of ~0.2 s at the boundary (four
# xdist workers on two cores: [166, 234] once) moves requests from one second to the next.
@pytest.mark.window
def test_series_one_row_per_second(result: LoadResult) -> None:
    series = result.series()
    assert list(series.columns) == list(SERIES_COLUMNS)
    assert series["second"].tolist() == [0, 1]
    assert series["rate"].tolist() == pytest.approx([200, 200], rel=0.05)
    assert (series["p99_ms"] > 0).all()
    assert (series["asked_rate"] == 200).all()


def test_histogram_spectrum(result: LoadResult) -> None:
    spectrum = result.histogram()
    assert list(spectrum.columns) == ["percentile", "latency_ms", "inverse_tail"]
    assert spectrum["percentile"].iloc[0] == 0
    assert spectrum["percentile"].iloc[-1] == 100
    assert spectrum["latency_ms"].is_monotonic_increasing
    assert spectrum["inverse_tail"].is_monotonic_increasing
    row = spectrum[spectrum["percentile"].round(6) == 87.5].iloc[0]
    assert row["inverse_tail"] == pytest.approx(8)
    assert len(result.histogram("service")) == len(spectrum)
    with pytest.raises(InputError, match="kind"):
        result.histogram("bogus")


def test_encoded_histograms_and_text(result: LoadResult) -> None:
    assert isinstance(result.hdr_latency, bytes) and result.hdr_latency
    assert isinstance(result.hdr_service, bytes)
    text = result.text()
    assert "open loop" in text and "status_4xx" in text and "p99" in text
