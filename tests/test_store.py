"""Store: atomic run folders, runs() as one DataFrame, load() round trip."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from workbench import hdr
from workbench._errors import InputError
from workbench.run import RunResult
from workbench.store import Store, new_run_id


def make_run(run_id: str, latencies_us: list[int], *, pool_size: int = 5) -> RunResult:
    histogram = hdr.new_histogram()
    for value in latencies_us:
        histogram.record_value(value)
    client = pd.DataFrame({"second": [0.0, 1.0], "rate": [100.0, 110.0], "p99_ms": [2.0, 3.0]})
    server = pd.DataFrame({"second": [0.0, 1.0], "service_cpu_pct": [50.0, 60.0]})
    return RunResult(
        run_id=run_id,
        manifest={"run_id": run_id, "status": "finished"},
        summary_row={"run_id": run_id, "pool_size": pool_size, "throughput_rps": 105.0},
        client=client,
        server=server,
        hdr_latency=bytes(histogram.encode()),
        hdr_service=bytes(histogram.encode()),
    )


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    store = Store(tmp_path)
    run = make_run(new_run_id("a b/c"), [1000, 2000, 3000])
    folder = store.save(run)
    assert sorted(p.name for p in folder.iterdir()) == [
        "anatomy.parquet", "latency.hdr", "manifest.json", "series.parquet", "server.parquet",
        "service_time.hdr", "summary.json",
    ]  # fmt: skip
    back = store.load(run.run_id)
    pd.testing.assert_frame_equal(back.series(), run.series())
    assert back.histogram()["latency_ms"].max() == pytest.approx(3.0, rel=1e-3)
    assert list(back.to_frame().columns) == ["second", "rate", "p99_ms", "service_cpu_pct"]


def test_runs_lists_complete_runs_with_settings_as_columns(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.save(make_run("r1", [1000], pool_size=5))
    store.save(make_run("r2", [1000], pool_size=20))
    (tmp_path / ".tmp-r3").mkdir()  # a run being written: never listed
    (tmp_path / ".tmp-r3" / "manifest.json").write_text("{}")
    frame = store.runs()
    assert list(frame["run_id"]) == ["r1", "r2"]
    assert list(frame["pool_size"]) == [5, 20]


def test_unknown_run_is_named(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="run_id: no run 'nope'"):
        Store(tmp_path).load("nope")
