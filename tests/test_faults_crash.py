"""A process of the run dies mid-run: the service (the run is stored crashed, with its exit code
and log tail, and a sweep redoes it) or a load worker (the partial result is kept)."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest

from service.settings import ServiceSettings
from workbench.experiment import Experiment
from workbench.launcher import ServiceProcess
from workbench.load import LoadFailed
from workbench.monitor import parse_metrics
from workbench.run import RunStatus
from workbench.stack import Stack
from workbench.store import Store
from workbench.sweep import NotebookSweep, Sweep, point_key

from .conftest import descendants

# The end-to-end tier (`make test-fast` skips it); `alone`: beside three other xdist workers the
# load worker's kill once landed after its run had ended (DID NOT RAISE LoadFailed), though both
# passed 5 runs in 5 beside two busy loops.
pytestmark = [pytest.mark.slow, pytest.mark.alone]

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = str(ROOT / "notebooks" / "01_quickstart.ipynb")


def _served(service: ServiceProcess) -> float:
    """Requests the service answered on the load's route so far."""
    sample = parse_metrics(service.metrics())
    return sum(v for k, v in sample.items() if k.startswith("http_requests_total{route=/users/"))


def _kill_after(service: ServiceProcess, requests: int, killed: dict[str, float]) -> None:
    """SIGKILL the service once it has served `requests` requests of the load."""
    pid = service.pids()[0]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if _served(service) >= requests:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    # Requests flow from the warm-up on (0.3 s); past it by half a second, the kill is mid-run.
    time.sleep(0.8)
    os.kill(pid, signal.SIGKILL)
    killed["at"] = time.time()


def test_service_killed_mid_run_is_stored_crashed_and_redone_by_a_sweep(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(tmp_path / "runs")
    before = descendants()
    # log_level info: the log has lines for its tail to show
    base = Experiment(
        settings=ServiceSettings(serializer="orjson", log_level="info"),
        connections=4, duration=2, warmup=0.3, processes=1, name="service killed",
    )  # fmt: skip
    sweep = Sweep({"pool_size": [5]}, base=base)
    point = sweep.points()[0]
    experiment = sweep.experiment(point)
    killed: dict[str, float] = {}
    with ServiceProcess(experiment.settings, stack) as service:
        killer = threading.Thread(target=_kill_after, args=(service, 100, killed), daemon=True)
        killer.start()
        run = experiment.run(stack, store=store, service=service, progress=False)
        killer.join()
    at = killed["at"] - run.manifest["window_started_at"]
    print(f"service killed at {at:.2f} s\n" + run.series().to_string())
    assert 0 < at < 2, at
    assert run.status is RunStatus.CRASHED
    stored = store.load(run.run_id)
    assert stored.status == "crashed" and stored.summary()["status"] == "crashed"
    assert stored.manifest["service"]["exit_code"] == -signal.SIGKILL
    assert "Application startup complete" in stored.manifest["service"]["log_tail"]
    assert stored.summary()["requests"] > 0  # what was measured is kept
    assert stored.series()["connect"].sum() > 0  # the connect errors after the kill

    # a sweep does not count the crashed point as done: a rerun measures it again
    assert sweep.done(store) == set()
    summary = sweep.run(stack, store=store, progress=False)
    assert len(store.ids()) == 2
    assert list(summary["run_id"]) != [run.run_id] and list(summary["status"]) == ["finished"]
    assert sweep.done(store) == {point_key(point)}
    assert descendants() <= before

    # a papermill sweep redoes a point whose notebook ran but whose latest run crashed
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "home"))
    notebooks = NotebookSweep(QUICKSTART, {"duration": [1]})
    [nb_point] = notebooks.points()
    notebooks.folder.mkdir(parents=True)
    notebooks.notebook_of(nb_point).write_text("{}")  # its notebook was executed
    assert notebooks.done(store) == {point_key(nb_point)}
    labels = {"sweep": notebooks.sweep_id, "point": point_key(nb_point)}
    store.save(
        dataclasses.replace(
            stored,
            run_id=stored.run_id + "-nb",
            summary_row={**stored.summary_row, **labels, "run_id": stored.run_id + "-nb"},
        )
    )
    assert notebooks.done(store) == set()


def _spawned() -> list[psutil.Process]:
    """The processes this test process spawned (multiprocessing spawn), of any purpose."""
    out = []
    for proc in psutil.Process().children():
        with contextlib.suppress(psutil.Error):
            line = " ".join(proc.cmdline())
            if "spawn_main" in line and "resource_tracker" not in line:
                out.append(proc)
    return out


def test_load_worker_killed_mid_run_keeps_the_partial_result(stack: Stack, tmp_path: Path) -> None:
    store = Store(tmp_path)
    before = descendants()
    settings = ServiceSettings(serializer="orjson")
    experiment = Experiment(
        settings=settings, connections=8, duration=4, warmup=0.3, processes=2,
        name="load worker killed",
    )  # fmt: skip
    killed: dict[str, float] = {}
    # The load workers are the processes spawned during the run: others spawned earlier in the
    # session (the Dask workers of the shared cluster, pooled generators) are left alone (in one
    # pytest process, a Dask worker of test_external.py's cluster was the one killed, and the
    # run went on: DID NOT RAISE)
    earlier = {proc.pid for proc in _spawned()}

    def kill_one() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and _served(service) < 1:
            time.sleep(0.05)
        time.sleep(0.3 + 1.5)  # the warm-up, then a second and a half measured
        workers = [proc for proc in _spawned() if proc.pid not in earlier]
        killed["workers"] = len(workers)
        workers[0].kill()
        killed["at"] = time.time()

    with ServiceProcess(settings, stack) as service:
        killer = threading.Thread(target=kill_one, daemon=True)
        killer.start()
        with pytest.raises(LoadFailed) as info:
            experiment.run(stack, store=store, service=service, progress=False)
        killer.join()
    assert killed["workers"] == 2
    assert descendants() <= before  # the other worker is stopped too
    partial = info.value.result
    assert partial is not None and partial.interrupted
    assert partial.failure is not None and "died" in partial.failure
    [run_id] = store.ids()
    run = store.load(run_id)
    at = killed["at"] - run.manifest["window_started_at"]
    print(f"load worker killed at {at:.2f} s: {partial.failure}\n" + run.series().to_string())
    assert run.status == "crashed" and "died" in run.manifest["load_failure"]
    summary = run.summary()
    # the seconds both workers reported before the kill, counted from the partial result
    assert 1 <= len(run.series()) <= at + 1, (len(run.series()), at)
    assert summary["requests"] == partial.requests > 0 and summary["p99_ms"] > 0
    assert run.series()["completed"].sum() == partial.completed
