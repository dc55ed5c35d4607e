"""One gunicorn worker killed mid-run: it is replaced, the errors are counted, the result is saved."""

from __future__ import annotations

import time
from pathlib import Path

import psutil
import pytest

from service.settings import ServiceSettings
from workbench.experiment import Experiment
from workbench.faults import kill_worker, workers
from workbench.launcher import ServiceProcess
from workbench.load import progress
from workbench.stack import Stack
from workbench.store import Store

from .conftest import descendants

pytestmark = pytest.mark.slow  # the end-to-end tier: `make test-fast` skips it


def _wait_workers(service: ServiceProcess, count: int, timeout: float = 15.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while len(found := workers(service)) < count and time.monotonic() < deadline:
        time.sleep(0.1)
    return found


def test_killed_worker_is_replaced_and_its_errors_counted(stack: Stack, tmp_path: Path) -> None:
    store = Store(tmp_path)
    before = descendants()
    settings = ServiceSettings(serializer="orjson", server="gunicorn", workers=2)
    experiment = Experiment(
        # closed loop: every connection always has a request in flight, some on the victim
        settings=settings, connections=8, duration=5, warmup=0.5, processes=1,
        name="worker killed",
    )  # fmt: skip
    killed: dict[str, float] = {}
    with ServiceProcess(settings, stack) as service:
        original = _wait_workers(service, 2)
        assert len(original) == 2

        def kill(event: object) -> bool:
            # once the first measured second is in (about 1 s into the window), however long
            # the load's worker took to start: seconds 3 and 4 are left to show the recovery
            if isinstance(event, progress.Second) and not killed:
                killed["pid"] = kill_worker(service)
                killed["at"] = time.time()
            return False

        with progress.listening(kill):
            run = experiment.run(stack, store=store, service=service, progress=False)
        replaced = _wait_workers(service, 2)
        assert killed["pid"] in original and killed["pid"] not in replaced
        assert len(replaced) == 2 and not psutil.pid_exists(killed["pid"])
    assert descendants() <= before
    at = killed["at"] - run.manifest["window_started_at"]
    series = run.series().set_index("second")
    print(f"worker {killed['pid']} killed at {at:.2f} s\n" + series[
        ["sent", "completed", "errors", "reset", "connect", "status_5xx", "p99_ms"]
    ].to_string())  # fmt: skip
    assert 0 < at < 5, at
    summary = run.summary()
    assert run.status == "finished" and summary["errors"] == series["errors"].sum()
    # requests in flight on the killed worker are lost as resets; nothing else fails
    classes = series[["reset", "connect", "status_5xx", "timeout"]].sum()
    assert classes.sum() == summary["errors"] >= 1 and classes["reset"] >= 1
    assert int(at) + 2 <= series.index.max(), series.to_string()  # the recovery is in the run
    assert (series.loc[int(at) + 2 :, "errors"] == 0).all(), series.to_string()
    assert store.load(run.run_id).summary()["errors"] == summary["errors"]
