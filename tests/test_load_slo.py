"""SLO parsing and checking."""

from __future__ import annotations

import pytest

from workbench import hdr as hist
from workbench._errors import InputError
from workbench.load import SLO, LoadResult


def _result(latency_us: dict[int, int], *, errors: int, requests: int) -> LoadResult:
    h = hist.new_histogram()
    hist.record_counts(h, latency_us)
    blob = hist.encode(h)
    return LoadResult(
        url="http://127.0.0.1:1/",
        transport="raw",
        processes=1,
        connections=1,
        arrival=None,
        asked_rate=None,
        duration_s=1.0,
        warmup_s=0.0,
        requests=requests,
        completed=requests,
        late=0,
        sent=requests,
        errors=errors,
        error_classes={"status_5xx": errors},
        hdr_latency=blob,
        hdr_service=blob,
        hdr_send_lag=hist.encode(hist.new_histogram()),
        connections_used=1,
        rows=(),
        worker_requests=(requests,),
        generator_saturated=False,
        saturation_reason=None,
    )


def test_parse() -> None:
    slo = SLO.parse("p95=50ms,p99=0.12s, errors=0.1%")
    assert dict(slo.latency_ms) == {"p95": 50.0, "p99": 120.0}
    assert slo.error_rate == pytest.approx(0.001)
    assert SLO.parse("max=500us,errors=0.02").error_rate == 0.02


def test_check_lists_broken_thresholds() -> None:
    result = _result({10_000: 90, 200_000: 10}, errors=5, requests=100)  # p95 = 200 ms, 5% errors
    assert SLO.parse("p50=20ms").check(result) == []
    broken = SLO.parse("p50=20ms,p95=50ms,errors=1%").check(result)
    assert len(broken) == 2
    assert broken[0].startswith("p95 = 200")
    assert broken[1].startswith("errors = 5.000%")


@pytest.mark.parametrize(
    "text", ["", "p95", "p95=fast", "p97=5ms", "p95=5parsecs", "errors=5ms", "p99=0ms"]
)
def test_bad_slo_is_an_input_error(text: str) -> None:
    with pytest.raises(InputError) as info:
        SLO.parse(text)
    assert info.value.name == "slo"
