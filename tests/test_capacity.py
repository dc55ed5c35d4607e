"""Capacity search against the real service: steps up, breaks, bisects, explains."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from service.settings import ServiceSettings
from workbench._errors import InputError
from workbench.capacity import holds, search
from workbench.stack import Stack
from workbench.store import Store


def test_search_finds_the_last_rate_that_holds(stack: Stack, tmp_path: Path) -> None:
    found = search(
        stack, settings=ServiceSettings.naive(), slo="p95=20ms", start=200, factor=4,
        bisections=1, duration=1, warmup=0.5, store=Store(tmp_path), progress=False,
    )  # fmt: skip
    points = found.points
    assert found.max_rate is not None and found.broke_at is not None
    assert found.max_rate < found.broke_at
    assert points.loc[points["rate"] == found.max_rate, "ok"].item()
    assert not points.loc[points["rate"] == found.broke_at, "ok"].item()
    assert found.broken and found.bottleneck["kind"] and "Holds the SLO up to" in found.sentence()
    assert len(Store(tmp_path).ids()) == len(points)  # every step is a stored run


def test_holds_reads_summary_rows() -> None:
    frame = pd.DataFrame({"p95_ms": [10.0, 60.0], "requests": [100, 100], "errors": [0, 0]})
    assert list(holds(frame, "p95=50ms")) == [True, False]


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"start": 0}, "start"), ({"factor": 1}, "factor"), ({"slo": "p95"}, "slo")],
)
def test_bad_input_is_named(stack: Stack, kwargs: dict[str, object], name: str) -> None:
    with pytest.raises(InputError, match=f"^{name}: "):
        search(stack, settings=ServiceSettings(), **kwargs)  # type: ignore[arg-type]
