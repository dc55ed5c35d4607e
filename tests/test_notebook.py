"""A notebook's kernel: the settings diff as a table, an interrupt answered in one line naming the
stored run, and a stack kept up between cells until wb.stop() or the kernel's exit."""

from __future__ import annotations

import dataclasses
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from service.settings import ServiceSettings
from workbench.experiment import Experiment
from workbench.kernel import WarmKernel
from workbench.notebook import KeptSession, settings_table
from workbench.stack import Stack
from workbench.store import Store

from ._kernel import kernel, warm
from .conftest import processes_under

STORED = re.compile(r"^interrupted after (\d+) s measured; partial run stored as (\S+)$")


def test_the_settings_table_shows_what_differs_from_naive() -> None:
    table = settings_table(ServiceSettings.naive().replace(pool_size=20, workers=2))
    assert list(table.index) == ["pool_size", "workers"]
    assert table.loc["pool_size"].tolist() == ["5", "20"]
    assert list(table.columns) == ["naive", "this run"]
    assert "(no setting differs)" in settings_table(ServiceSettings.naive()).index


@pytest.mark.slow
def test_an_interrupt_ends_in_one_line_naming_the_stored_partial_run(
    stack: Stack, tmp_path: Path, warm_kernel: WarmKernel
) -> None:
    code = f"""
import pathlib, workbench as wb
wb.setup()
stack = wb.Stack(database_url={stack.database_url!r}, redis_url={stack.redis_url!r},
                 upstream_url={stack.upstream_url!r}, users={stack.users}).start()
wb.Experiment(connections=4, rate=100, duration=60, warmup=0.2, name="quickstart").run(
    stack, store=wb.Store(pathlib.Path({str(tmp_path)!r})))
"""
    with warm(warm_kernel, watched=True) as k:
        seen: list[str] = []

        def interrupt_at_the_second_second(_: float, message: dict[str, Any]) -> None:
            text = str(message["content"])  # the live chart's title, in a widget update
            if "2 of 60 s measured" in text and not seen:
                seen.append(text)
                k.interrupt()

        cell = k.run(code, on_message=interrupt_at_the_second_second)
    assert seen, "the load never reached its second second"
    assert cell.reply["status"] == "error" and cell.reply["ename"] == "LoadInterrupted"
    assert not cell.of("error")  # no traceback box
    lines = cell.text().strip().splitlines()
    match = STORED.match(lines[-1])
    assert match, lines
    assert cell.text("stderr") == ""
    run = Store(tmp_path).load(match.group(2))
    assert run.status == "interrupted"
    assert run.summary()["measured_s"] == int(match.group(1)) >= 2


@pytest.fixture
def root() -> Any:
    """A stack folder of its own (PostgreSQL's user must reach it)."""
    folder = Path(tempfile.mkdtemp(prefix="workbench-kept-"))
    folder.chmod(0o755)
    yield folder
    import shutil

    shutil.rmtree(folder, ignore_errors=True)


def _pids(root: Path, kernel_pid: int | None = None) -> set[int]:
    """What runs for the stack on root: servers, services, load workers (not the kernel itself,
    nor multiprocessing's resource tracker, which lives as long as the kernel)."""
    out = set()
    for pid in processes_under(root) - {kernel_pid}:
        try:
            if "multiprocessing.resource_tracker" not in " ".join(psutil.Process(pid).cmdline()):
                out.add(pid)
        except psutil.Error:
            continue
    return out


def _gone(root: Path, kernel_pid: int | None = None, timeout: float = 15) -> set[int]:
    deadline = time.monotonic() + timeout
    while (left := _pids(root, kernel_pid)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


@pytest.mark.slow
def test_the_kept_stack_outlives_a_cell_and_stops_on_stop_or_at_exit(
    root: Path, tmp_path: Path
) -> None:
    setup = f"""
import pathlib, time, workbench as wb
wb.setup()
store = wb.Store(pathlib.Path({str(tmp_path)!r}))
def measure(users=1000):
    t = time.monotonic()
    stack = wb.kept_stack(users=users)
    run = wb.Experiment(connections=4, rate=100, duration=0.5, warmup=0.1, name="quickstart").run(
        stack, store=store, session=wb.kept_session())
    return stack, run, time.monotonic() - t
"""
    run_cell = (
        "stack, run, took = measure(); "
        "print(stack.pids()['postgres'], run.manifest['service']['pid'], round(took, 2))"
    )
    with kernel(watched=True, env={"WORKBENCH_STACK_DIR": str(root)}) as k:
        pid = k.km.provisioner.pid
        assert k.run(setup).reply["status"] == "ok"
        first = k.run(run_cell)
        assert first.reply["status"] == "ok", first.reply
        assert "PostgreSQL (embedded)" in first.text()
        second = k.run(run_cell)
        assert second.reply["status"] == "ok", second.reply
        assert "PostgreSQL (embedded)" not in second.text()  # the same stack, not started again
        pid_1, service_1, took_1 = first.text().split()[-3:]
        pid_2, service_2, took_2 = second.text().split()[-3:]
        assert pid_1 == pid_2
        assert service_1 == service_2  # the same settings: the kept service measured again
        assert float(took_2) < float(took_1)
        other = k.run("stack, run, took = measure(users=1500); print(stack.pids()['postgres'])")
        assert other.reply["status"] == "ok", other.reply
        assert other.text().split()[-1] != pid_2  # other users: a stack of their own
        assert int(pid_1) not in _pids(root, pid)
        assert int(service_1) not in _pids(root, pid)  # it went with its stack
        assert _pids(root, pid)
        assert k.run("wb.stop()").reply["status"] == "ok"
        assert _gone(root, pid) == set()
        assert k.run(run_cell).reply["status"] == "ok"  # started again on demand
        assert _pids(root, pid)
    assert _gone(root) == set()  # the kernel's exit stopped it


@pytest.mark.slow
def test_the_kept_session_measures_the_same_settings_on_the_same_service_and_says_so(
    stack: Stack, tmp_path: Path
) -> None:
    store = Store(tmp_path)
    chatty = ServiceSettings.naive().replace(log_level="info")  # logs its boot
    naive = Experiment(
        settings=chatty, connections=2, rate=100, duration=0.5, warmup=0.1, name="kept"
    )
    other = dataclasses.replace(naive, settings=chatty.replace(pool_size=7))
    with KeptSession() as session:
        first = naive.run(stack, store=store, session=session, progress=False)
        second = naive.run(stack, store=store, session=session, progress=False)
        changed = other.run(stack, store=store, session=session, progress=False)
        fresh = other.run(stack, store=store, session=session, progress=False, fresh_service=True)
        kept = session.service
        assert kept is not None and kept.proc is not None
        last_pid = kept.proc.pid
    services = [store.load(r.run_id).manifest["service"] for r in (first, second, changed, fresh)]
    assert [s["reused"] for s in services] == [False, True, False, False]
    assert services[1]["runs_before"] == [first.run_id]
    assert services[0]["pid"] == services[1]["pid"]  # the same process measured twice
    assert len({services[1]["pid"], services[2]["pid"], services[3]["pid"]}) == 3
    assert services[3]["pid"] == last_pid
    for pid in (services[0]["pid"], services[2]["pid"]):
        assert not psutil.pid_exists(pid)  # gone before the next run's load
    assert not psutil.pid_exists(last_pid)  # closing the session stopped the kept one
    # each run stores its own part of the kept service's log: the boot is in the first only
    logs = [(tmp_path / r.run_id / "service.log").read_text() for r in (first, second)]
    assert "Application startup complete" in logs[0]
    assert "Application startup complete" not in logs[1]
    # under papermill (keep_service=False) every run gets its own service, as a sweep's points
    with KeptSession(keep_service=False) as session:
        runs = [naive.run(stack, store=store, session=session, progress=False) for _ in range(2)]
        assert session.service is None
    assert [r.manifest["service"]["reused"] for r in runs] == [False, False]
    assert runs[0].manifest["service"]["pid"] != runs[1].manifest["service"]["pid"]
