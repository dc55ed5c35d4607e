"""Shared fixtures: one real embedded stack per test session, in a folder of its own."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from workbench.postgres import TEMPLATES_ENV
from workbench.stack import Stack

TEST_USERS = 2_000
# Started in the background (`cmd &` in a script, as some CI runners do), this process and its
# children would ignore SIGINT; the Ctrl-C tests need it delivered. A handler here (not SIG_IGN)
# makes every child start with the default disposition.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
# Jupyter warns on every import when XDG_RUNTIME_DIR is unset (as under CI).
os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.mkdtemp(prefix="runtime-"))


# The longest test files (worker-seconds under `make test`'s four workers, 2026-11-29), longest
# first. Under `--dist loadfile` xdist hands files out in collection order (with
# `--no-loadscope-reorder`; its default order is by test count, which put the one-test Lab file
# last: 30 s with three workers idle). Longest first, no file starts near the end.
LONGEST_FILES = (
    "test_notebooks.py", "test_sweep.py", "test_cluster.py", "test_load_engine.py", "test_cli.py",
    "test_package.py", "test_notebook.py", "test_external.py", "test_report.py",
    "test_faults_interrupt.py", "test_lab.py", "test_live.py", "test_faults_sweep.py",
    "test_panel.py", "test_service_app.py", "test_secrets.py", "test_climb.py",
)  # fmt: skip


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest files first (LONGEST_FILES), then the rest in their order."""
    rank = {name: i for i, name in enumerate(LONGEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture(scope="session", autouse=True)
def initdb_template() -> Iterator[Path]:
    """One initdb per test session: every new stack folder (CLIs and kernels too) copies it."""
    folder = Path(tempfile.mkdtemp(prefix="workbench-test-initdb-"))
    folder.chmod(0o755)
    previous = os.environ.get(TEMPLATES_ENV)
    os.environ[TEMPLATES_ENV] = str(folder / "cache")
    yield folder / "cache"
    if previous is None:
        os.environ.pop(TEMPLATES_ENV, None)
    else:
        os.environ[TEMPLATES_ENV] = previous
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def stack_root() -> Iterator[Path]:
    """A stack folder PostgreSQL's unprivileged user can reach (pytest's tmp is 0700 under root)."""
    root = Path(tempfile.mkdtemp(prefix="workbench-test-stack-"))
    root.chmod(0o755)
    os.environ["WORKBENCH_STACK_DIR"] = str(root)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def stack(stack_root: Path) -> Iterator[Stack]:
    """Real PostgreSQL + Redis, seeded with TEST_USERS users, for the whole session."""
    with Stack(users=TEST_USERS, root=stack_root, progress=lambda _: None) as running:
        yield running


@pytest.fixture(scope="session")
def generators() -> Iterator[Any]:
    """Load worker processes kept between the tests that run loads but test no process's life:
    a spawned worker costs a fresh interpreter and the engine's imports (most of a second)."""
    from workbench.load import Generators

    with Generators() as pool:
        yield pool


@pytest.fixture(scope="session")
def warm_kernel() -> Iterator[Any]:
    """One warm kernel per test process (xdist worker): each test that takes it resets it first
    to what a fresh kernel would be (workbench.kernel), saving a kernel's start and imports."""
    from workbench.kernel import WarmKernel
    from workbench.paths import project_dir
    from workbench.report import ensure_kernel

    with WarmKernel(kernel_name=ensure_kernel(), cwd=project_dir()) as running:
        yield running


@pytest.fixture(scope="session")
def dask_cluster() -> Iterator[Any]:
    """Two single-threaded Dask worker processes on loopback, shared by the session's tests."""
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",  # None still takes 8787, which another worker's cluster may hold
        host="127.0.0.1",
    ) as running:
        yield running


def empty_cache(stack: Stack) -> int:
    """Delete every entry of the service's L2 from the stack's Redis; how many there were.

    The session's stack is shared: entries that earlier tests' runs cached live on for l2_ttl
    (minutes), so a test that needs its lookups to miss L2 empties it first."""
    import redis

    from service.cache import KEY_PREFIX

    client = redis.Redis.from_url(stack.redis)
    try:
        keys = list(client.scan_iter(match=KEY_PREFIX + "*", count=1_000))
        if keys:
            client.delete(*keys)
        return len(keys)
    finally:
        client.close()


def descendants() -> set[int]:
    """Pids of every process this test process started, at any depth, except PostgreSQL's own
    (the session's server forks backends as it pleases) and multiprocessing's resource tracker
    (one per process, alive until it exits)."""
    out = set()
    for proc in psutil.Process().children(recursive=True):
        try:
            tracker = "multiprocessing.resource_tracker" in " ".join(proc.cmdline())
            if proc.name() != "postgres" and not tracker:
                out.add(proc.pid)
        except psutil.NoSuchProcess:
            continue
    return out


def processes_under(root: Path) -> set[int]:
    """Pids of processes anywhere whose WORKBENCH_STACK_DIR lies under root (servers of a run)."""
    found = set()
    for proc in psutil.process_iter():
        try:
            where = proc.environ().get("WORKBENCH_STACK_DIR", "")
        except (psutil.Error, OSError):
            continue
        if where.startswith(str(root)) and proc.pid != os.getpid():
            found.add(proc.pid)
    return found
