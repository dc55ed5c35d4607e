"""Cluster: a sweep's points on Dask workers (one per host), their runs shipped into the local store."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import psutil
import pytest

from service.settings import ServiceSettings
from workbench._errors import InputError
from workbench.cluster import StackSpec, by_machine, wait_spare
from workbench.experiment import Experiment
from workbench.stack import Stack
from workbench.store import Store
from workbench.sweep import Sweep
from workbench.tune import tune

from .conftest import TEST_USERS, processes_under

if TYPE_CHECKING:
    from distributed import LocalCluster

QUICKSTART = str(Path(__file__).resolve().parent.parent / "notebooks" / "01_quickstart.ipynb")
STACK_NAMES = ("postgres", "valkey", "redis", "uvicorn", "gunicorn")


@contextlib.contextmanager
def stack_folder() -> Iterator[Path]:
    """A stack folder the workers inherit (PostgreSQL's unprivileged user can reach it)."""
    root = Path(tempfile.mkdtemp(prefix="workbench-test-cluster-"))
    root.chmod(0o755)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WORKBENCH_STACK_DIR", str(root))
        yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster_root() -> Iterator[Path]:
    """The stack folder of the module's preloaded cluster."""
    with stack_folder() as root:
        yield root


def local_cluster(*, preload: bool) -> LocalCluster:
    """A LocalCluster of 2 worker processes, each with bench=1: two "hosts" on this machine."""
    from distributed import LocalCluster

    return LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        resources={"bench": 1},
        dashboard_address=":0",
        preload=["workbench.cluster"] if preload else None,
    )


@pytest.fixture(scope="module")
def cluster(cluster_root: Path) -> Iterator[object]:
    """Two "hosts" started as the README says (`--preload workbench.cluster`: each keeps an
    idle agent), their agents' imports done before any test times anything. The module's
    tests take turns on it as a user's sweeps do, one after the other; the test that kills a
    worker comes last."""
    from distributed import Client

    with local_cluster(preload=True) as local:
        with Client(local, set_as_default=False) as client:  # type: ignore[no-untyped-call]
            assert set(client.run(wait_spare).values()) == {True}
        yield local


@pytest.fixture
def plain_cluster() -> Iterator[object]:
    """Two "hosts" without the preload: each sweep's agents import, then start their stack."""
    with stack_folder(), local_cluster(preload=False) as local:
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


def serving(root: Path) -> bool:
    """A point's service runs under root (not the stack's upstream fake, `-m service.upstream_fake`)."""
    return any(line.endswith("-m service") for line in stack_processes(root))


def four_points(*, duration: float = 2, warmup: float = 1) -> Sweep:
    """Points of fixed length and little CPU (one uvicorn worker, a low open-loop rate), so that
    two of them side by side on this 2-core machine do not slow each other down much."""
    return Sweep(
        {"pool_size": [4, 6, 8, 10]},
        base=Experiment(
            settings=ServiceSettings(),
            connections=4,
            rate=50,
            duration=duration,
            warmup=warmup,
            seed=1,
        ),
        name="cluster",
    )


def _window(run_id: str, store: Store) -> tuple[float, float]:
    manifest = store.load(run_id).manifest
    start, end = (datetime.fromisoformat(manifest[k]) for k in ("started_at", "finished_at"))
    return start.timestamp(), end.timestamp()


def phases(store: Store, started: float, ended: float) -> tuple[float, float, float, float]:
    """A sweep's wall time, lead-in (its start to the first run's), runs' span and tail (s)."""
    windows = [_window(run_id, store) for run_id in store.ids()]
    first, last = min(start for start, _ in windows), max(end for _, end in windows)
    return ended - started, first - started, last - first, ended - last


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


# `window`, not `alone`: its points are light (one uvicorn worker, 50 req/s) and its bounds were
# chosen to hold on a busy machine, so it shares the cores with one fault window.
@pytest.mark.window
@pytest.mark.slow
def test_two_hosts_run_four_points_in_half_the_time(
    cluster: object, cluster_root: Path, stack: Stack, tmp_path: Path
) -> None:
    from distributed import Client

    # Points of 1.5 s after a 0.5 s warm-up (not 2 after 1): the cluster's share held (the whole
    # sweep 0.46-0.56 of the local one in 6 runs, 0.55-0.58 with the longer points); 1 s points
    # made it 0.70.
    short = four_points(duration=1.5, warmup=0.5)
    local_store = Store(tmp_path / "local")
    t0 = time.time()
    short.run(stack, store=local_store, progress=False)
    local = phases(local_store, t0, time.time())

    store = Store(tmp_path / "cluster")
    t0 = time.time()
    summary = short.run(given_urls(stack), store=store, progress=False, cluster=cluster)
    there = phases(store, t0, time.time())
    # The ideal is 1/2. On this 2-core machine the two "hosts" share the cores with the test
    # process and the shared PostgreSQL (and, under `make test` or beside other work, with more),
    # so two points side by side take longer than one alone (4.4 s alone, 8.5 s each side by side
    # at a load average of 12): the points' span measured 0.57-0.63 of the local one, the whole
    # sweep 0.62-0.69 with preloaded workers (lead-in ~0.2 s, tail ~0.5 s). Hence bounds of 0.7
    # and 0.8, not 0.5-0.65, which would fail on a busy machine; the ratios are printed, and
    # benchmarks/cluster_sweep.py prints the same phases for plain and preloaded workers.
    for label, (wall, lead_in, span, tail) in (("here", local), ("2 workers", there)):
        print(
            f"4 points {label}: {wall:.1f} s (lead-in {lead_in:.1f}, span {span:.1f}, tail {tail:.1f})"
        )
    print(f"cluster / here: {there[0] / local[0]:.2f} (whole), {there[2] / local[2]:.2f} (span)")

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
    # to the last one's end shrinks by about half; the whole sweep too, its fixed cost included
    # (connecting; each worker's idle agent starting its stack, not paid again per point).
    assert there[2] < 0.7 * local[2]
    assert there[0] < 0.8 * local[0]
    assert busy_s(store) > 1.6 * there[2]  # two points at once, most of the time
    assert not stack_processes(cluster_root)
    with Client(cluster, set_as_default=False) as client:  # type: ignore[no-untyped-call]
        assert set(client.run(wait_spare).values()) == {True}  # an idle agent for the next sweep
    # resumable: a rerun measures nothing again
    again = short.run(given_urls(stack), store=store, progress=False, cluster=cluster)
    assert sorted(again["run_id"]) == sorted(summary["run_id"])


@pytest.mark.slow
def test_tuner_runs_trials_in_parallel_one_per_host(
    plain_cluster: object, stack: Stack, tmp_path: Path
) -> None:
    from distributed import Client

    store = Store(tmp_path)
    tuning = tune(
        given_urls(stack),
        cluster=plain_cluster,
        base=ServiceSettings(),  # one uvicorn worker per trial, not the default's gunicorn x2
        space={"pool_size": ("int", 2, 10)},
        trials=4,
        slo="p95=10s",
        connections=4,
        rate=50,  # an open loop at a modest rate: trials side by side, not their throughput
        duration=1,
        warmup=0.3,
        confirm=False,
        store=store,
        progress=False,
    )
    assert len(tuning.trials) == 4 and tuning.best_value > 0
    workers = tuning.trials["user_attrs_worker"]
    assert set(workers) == {"0", "1"}
    assert len(store.ids()) == 4
    assert busy_s(store) > 1.4 * span_s(store)  # trials overlapped: n_jobs = hosts
    with Client(plain_cluster, set_as_default=False) as client:  # type: ignore[no-untyped-call]
        assert set(client.run(wait_spare).values()) == {False}  # no idle agent kept here


@pytest.mark.slow
def test_cli_notebook_sweep_on_a_cluster(
    cluster: object, cluster_root: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    env = {**os.environ, "WORKBENCH_HOME": str(home)}
    for key in ("DATABASE_URL", "REDIS_URL", "UPSTREAM_URL"):
        env.pop(key, None)
    # one uvicorn worker under an open loop at a modest rate: the sweep's way round the
    # cluster is tested, not gunicorn nor a saturated machine
    argv = [
        sys.executable, "-m", "workbench.cli", "sweep", QUICKSTART,
        "-p", "pool_size", "5,10", "-p", "duration", "1", "-p", "connections", "4",
        "-p", "preset", "naive", "-p", "rate", "50", "--users", "300", "--cluster", cluster.scheduler_address,  # type: ignore[attr-defined]
    ]  # fmt: skip
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "2 finished points" in done.stdout
    notebooks = list(home.glob("data/sweeps/*/[!.]*.ipynb"))
    assert len(notebooks) == 2  # the executed notebooks came home
    runs = Store(home / "data" / "runs").runs()
    assert set(runs["status"]) == {"finished"} and set(runs["worker"]) == {"0", "1"}
    assert not stack_processes(cluster_root)
    again = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert again.returncode == 0 and again.stdout.count("skip (done)") == 2


def test_summary_groups_by_machine_and_says_when_a_grid_mixed_them() -> None:
    summary = pd.DataFrame(
        {
            "point": ["a", "b", "c"],
            "host": ["big-1", "small-1", "big-2"],
            "machine": ["m-big", "m-small", "m-big"],
        }
    )
    said: list[str] = []
    grouped = by_machine(summary, say=said.append)
    assert list(grouped["point"]) == ["a", "c", "b"] and grouped.attrs["machines"] == 2
    assert said and "2 different machines" in said[0] and "big-1, big-2" in said[0]
    said.clear()
    assert by_machine(summary.iloc[[0, 2]], say=said.append).attrs["machines"] == 1 and not said


def test_an_embedded_stack_s_urls_stay_home(stack: Stack) -> None:
    assert StackSpec.of(stack) == StackSpec(users=stack.users)  # loopback URLs of this host
    given = StackSpec.of(given_urls(stack))
    assert given.database_url == stack.database_url and given.users == TEST_USERS


def test_a_cluster_without_bench_workers_is_refused() -> None:
    from distributed import LocalCluster

    with (
        LocalCluster(n_workers=1, processes=False, dashboard_address=":0") as local,
        pytest.raises(InputError, match="bench=1"),
    ):
        four_points().run(Stack(users=TEST_USERS), progress=False, cluster=local)


@pytest.mark.slow
def test_a_host_whose_stack_cannot_start_is_reported_and_nothing_stored(
    cluster: object, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nowhere = Stack(
        database_url="postgresql://bench:secret@127.0.0.1:9/bench",
        redis_url="redis://127.0.0.1:9/0",
        upstream_url="http://127.0.0.1:9",
        users=TEST_USERS,
    )
    store = Store(tmp_path)
    summary = four_points().run(nowhere, store=store, progress=False, cluster=cluster)
    assert summary.empty and not store.ids()
    said = capsys.readouterr().err
    assert said.count("could not run (a rerun redoes it)") == 4
    assert "PostgreSQL at postgresql://bench:***@127.0.0.1:9/bench does not answer" in said


@pytest.mark.slow
def test_ctrl_c_cancels_the_points_ships_the_interrupted_runs_and_stops_every_stack(
    cluster: object, cluster_root: Path, tmp_path: Path
) -> None:
    def interrupt_once_both_load() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if all(serving(cluster_root / "cluster" / n) for n in ("0", "1")):
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.2)

    store = Store(tmp_path)
    threading.Thread(target=interrupt_once_both_load, daemon=True).start()
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        four_points().run(Stack(users=TEST_USERS), store=store, progress=False, cluster=cluster)
    assert time.monotonic() - started < 100
    assert not stack_processes(cluster_root)  # both hosts' stacks, services and loads are gone
    # the remaining points were cancelled; the two running ones came home as a local sweep
    # stores them: interrupted, each naming its worker, and redone by a rerun
    runs = store.runs()
    interrupted = runs[runs["status"] == "interrupted"]
    assert len(interrupted) == 2 and set(interrupted["worker"]) == {"0", "1"}, runs
    assert len(runs) < 4
    assert not set(interrupted["point"]) & four_points().done(store)


@pytest.mark.slow
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
            # short points: the other worker runs all four, one after the other
            out["summary"] = four_points(duration=1, warmup=0.2).run(
                Stack(users=TEST_USERS), store=store, progress=False, cluster=cluster
            )
        except BaseException as exc:
            out["error"] = exc

    thread = threading.Thread(target=sweep)
    thread.start()
    # kill worker 1 while its first point loads the service (its own stack under its folder)
    deadline = time.monotonic() + 120
    while not serving(cluster_root / "cluster" / "1"):
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
