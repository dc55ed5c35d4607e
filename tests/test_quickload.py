"""quick_load: a real closed-loop load against the real service."""

from __future__ import annotations

import pytest

from service.settings import ServiceSettings
from workbench._errors import InputError
from workbench.launcher import ServiceProcess
from workbench.quickload import quick_load
from workbench.stack import Stack


def test_quick_load_counts_requests_per_second(stack: Stack) -> None:
    with ServiceProcess(ServiceSettings(serializer="orjson"), stack) as svc:
        result = quick_load(svc.url + "/users/{id}", connections=4, duration=2, id_range=1000)
    summary = result.summary()
    series = result.series()
    assert summary["requests"] > 50 and summary["errors"] == 0
    assert list(series["second"]) == [0.0, 1.0]
    assert series["completed"].sum() == summary["requests"]
    latencies = result.histogram()["latency_ms"]
    assert latencies.is_monotonic_increasing and latencies.iloc[0] > 0


def test_errors_are_counted(stack: Stack) -> None:
    with ServiceProcess(ServiceSettings(), stack) as svc:
        result = quick_load(svc.url + "/users/0", connections=2, duration=1)
    assert result.summary()["errors"] == result.summary()["requests"] > 0


@pytest.mark.parametrize(
    ("kwargs", "name"), [({"connections": 0}, "connections"), ({"duration": -1}, "duration")]
)
def test_bad_input_is_named(kwargs: dict[str, float], name: str) -> None:
    with pytest.raises(InputError, match=f"^{name}: "):
        quick_load("http://127.0.0.1:1/", **kwargs)  # type: ignore[arg-type]
