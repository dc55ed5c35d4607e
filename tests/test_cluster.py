"""Cluster: a sweep's points on Dask workers (one per host), their runs shipped into the local store."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
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


def test_two_hosts_run_four_points_in_half_the_time(
    cluster: object, cluster_root: Path, stack: Stack, tmp_path: Path
) -> None:
    local_store = Store(tmp_path / "local")
    t0 = time.monotonic()
    four_points().run(stack, store=local_store, progress=False)
    local_s = time.monotonic() - t0

    store = Store(tmp_path / "cluster")
    t0 = time.monotonic()
    summary = four_points().run(
        Stack(users=TEST_USERS), store=store, progress=False, cluster=cluster
    )
    cluster_s = time.monotonic() - t0
    print(f"4 points: {local_s:.1f} s here, {cluster_s:.1f} s on 2 workers")

    assert len(store.ids()) == 4 and len(summary) == 4
    assert set(summary["status"]) == {"finished"}
    assert sorted(summary["pool_size"]) == [4, 6, 8, 10]
    assert set(summary["worker"]) == {"0", "1"}  # each run names the worker that ran it
    for run_id in store.ids():
        run = store.load(run_id)
        assert run.manifest["environment"]["host"]
        assert run.manifest["labels"]["worker"] in ("0", "1")
        assert len(run.series()) >= 1 and run.hdr_latency
    assert summary.attrs["machines"] == 1
    assert cluster_s < 0.75 * local_s
    assert not stack_processes(cluster_root)
    # resumable: a rerun measures nothing again
    again = four_points().run(Stack(users=TEST_USERS), store=store, progress=False, cluster=cluster)
    assert sorted(again["run_id"]) == sorted(summary["run_id"])
