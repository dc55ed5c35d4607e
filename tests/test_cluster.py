"""Cluster: a sweep's points on Dask workers (one per host), their runs shipped into the local store."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import psutil
import pytest

from workbench.experiment import Experiment
from workbench.stack import Stack
from workbench.store import Store
from workbench.sweep import Sweep

from .conftest import TEST_USERS, processes_under

pytestmark = pytest.mark.slow

STACK_NAMES = ("postgres", "valkey", "redis", "uvicorn", "gunicorn")


@pytest.fixture
def cluster_root(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The stack folder the workers inherit (PostgreSQL's unprivileged user can reach it)."""
    root = Path(tempfile.mkdtemp(prefix="workbench-test-cluster-"))
    root.chmod(0o755)
    monkeypatch.setenv("WORKBENCH_STACK_DIR", str(root))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def cluster(cluster_root: Path) -> Iterator[object]:
    """A LocalCluster of 2 worker processes, each with bench=1: two "hosts" on this machine."""
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        resources={"bench": 1},
        dashboard_address=None,
    ) as local:
        yield local


def stack_processes(root: Path) -> list[str]:
    """Servers and services started under root: what the sweep must have stopped."""
    found = []
    for pid in processes_under(root):
        try:
            proc = psutil.Process(pid)
            line = " ".join(proc.cmdline())
        except psutil.Error:
            continue
        if proc.name() in STACK_NAMES or "-m service" in line or "upstream_fake" in line:
            found.append(f"{pid}: {line[:120]}")
    return found


def four_points() -> Sweep:
    return Sweep(
        {"pool_size": [4, 6, 8, 10]},
        base=Experiment(connections=4, duration=2, warmup=0.5, seed=1),
        name="cluster",
    )


def _window(run_id: str, store: Store) -> tuple[float, float]:
    manifest = store.load(run_id).manifest
    start, end = (datetime.fromisoformat(manifest[k]) for k in ("started_at", "finished_at"))
    return start.timestamp(), end.timestamp()


def span_s(store: Store) -> float:
    """Seconds from the first run's start to the last run's end."""
    windows = [_window(run_id, store) for run_id in store.ids()]
    return max(end for _, end in windows) - min(start for start, _ in windows)


def busy_s(store: Store) -> float:
    """The runs' durations added up."""
    return sum(end - start for start, end in (_window(r, store) for r in store.ids()))


def given_urls(stack: Stack) -> Stack:
    """The session's stack by its URLs: each worker attaches to it instead of starting its own."""
    return Stack(
        database_url=stack.database_url,
        redis_url=stack.redis_url,
        upstream_url=stack.upstream_url,
        users=TEST_USERS,
    )


def test_two_hosts_run_four_points_in_half_the_time(
    cluster: object, cluster_root: Path, stack: Stack, tmp_path: Path
) -> None:
    local_store = Store(tmp_path / "local")
    t0 = time.monotonic()
    four_points().run(stack, store=local_store, progress=False)
    local_s = time.monotonic() - t0

    store = Store(tmp_path / "cluster")
    t0 = time.monotonic()
    summary = four_points().run(given_urls(stack), store=store, progress=False, cluster=cluster)
    cluster_s = time.monotonic() - t0
    print(f"4 points: {local_s:.1f} s here, {cluster_s:.1f} s on 2 workers")

    assert len(store.ids()) == 4 and len(summary) == 4
    assert set(summary["status"]) == {"finished"}
    assert sorted(summary["pool_size"]) == [4, 6, 8, 10]
    assert set(summary["worker"]) == {"0", "1"}  # each run names the worker that ran it
    for run_id in store.ids():
        run = store.load(run_id)
        assert run.manifest["environment"]["host"] == socket.gethostname()
        assert run.manifest["labels"]["worker"] in ("0", "1")
        assert len(run.series()) >= 1 and run.hdr_latency and run.hdr_service
    assert summary.attrs["machines"] == 1
    # Points take turns here and run two at a time there: the span from the first point's start
    # to the last one's end about halves (the cluster adds a fixed cost: each worker starting its
    # agent, not paid again per point).
    here, there = span_s(local_store), span_s(store)
    print(f"points' span: {here:.1f} s here, {there:.1f} s on 2 workers ({there / here:.0%})")
    assert there < 0.7 * here
    assert busy_s(store) > 1.6 * there  # two points at once, most of the time
    assert not stack_processes(cluster_root)
    # resumable: a rerun measures nothing again
    again = four_points().run(given_urls(stack), store=store, progress=False, cluster=cluster)
    assert sorted(again["run_id"]) == sorted(summary["run_id"])


def test_a_killed_worker_s_point_is_redone_on_the_other(
    cluster: object, cluster_root: Path, tmp_path: Path
) -> None:
    from distributed import Client
    from distributed.core import Status

    with Client(cluster, set_as_default=False) as client:  # type: ignore[no-untyped-call]
        pids = client.run(os.getpid)
        names = {a: str(w["name"]) for a, w in client.scheduler_info()["workers"].items()}
    victim = next(pid for address, pid in pids.items() if names[address] == "1")
    store = Store(tmp_path)
    out: dict[str, object] = {}

    def sweep() -> None:
        try:
            out["summary"] = four_points().run(
                Stack(users=TEST_USERS), store=store, progress=False, cluster=cluster
            )
        except BaseException as exc:
            out["error"] = exc

    thread = threading.Thread(target=sweep)
    thread.start()
    # kill worker 1 while its first point loads the service (its own stack under its folder)
    deadline = time.monotonic() + 120
    while not any("-m service" in line for line in stack_processes(cluster_root / "cluster" / "1")):
        assert time.monotonic() < deadline and thread.is_alive(), out
        time.sleep(0.2)
    cluster.workers[1].status = Status.closing_gracefully  # type: ignore[attr-defined]  # no restart
    os.kill(victim, signal.SIGKILL)
    thread.join(timeout=240)
    assert not thread.is_alive() and "error" not in out, out
    summary = out["summary"]
    assert len(summary) == 4 and set(summary["status"]) == {"finished"}  # type: ignore[arg-type,index]
    assert set(summary["worker"]) == {"0"}  # type: ignore[index]
    deadline = time.monotonic() + 30
    while (left := stack_processes(cluster_root)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not left
