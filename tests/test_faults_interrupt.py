"""Ctrl-C, SIGTERM and a kernel interrupt during a run: everything started is ended, the partial
result is stored and marked interrupted."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from workbench.paths import project_dir
from workbench.store import Store

from .conftest import processes_under
from .fault_run import CODE

pytestmark = pytest.mark.slow  # the end-to-end tier: `make test-fast` skips it

MEASURED = re.compile(r"^\s+2\.0s\s")  # the progress line of the second measured second


@pytest.fixture
def root() -> Iterator[Path]:
    """A stack folder of the run's own (PostgreSQL's user must reach it)."""
    path = Path(tempfile.mkdtemp(prefix="workbench-fault-stack-"))
    path.chmod(0o755)
    yield path
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def _gone(root: Path, *, exclude: int | None = None, timeout: float = 10.0) -> set[int]:
    """Pids still running under root after waiting up to timeout (empty when all ended)."""
    deadline = time.monotonic() + timeout
    while True:
        left = {p for p in processes_under(root) - {exclude} if not _tracker(p)}
        if not left or time.monotonic() > deadline:
            return {p for p in left if p is not None}
        time.sleep(0.2)


def _tracker(pid: int) -> bool:
    """multiprocessing's resource tracker: one per process that used it, alive until that exits."""
    try:
        return "multiprocessing.resource_tracker" in " ".join(psutil.Process(pid).cmdline())
    except psutil.Error:
        return True


def _describe(pids: set[int]) -> list[str]:
    out = []
    for pid in pids:
        try:
            out.append(f"{pid} {' '.join(psutil.Process(pid).cmdline())[:120]}")
        except psutil.Error:
            continue
    return out


def _check_stored(store: Path, *, late: float) -> None:
    """The stored partial result; the interrupt came `late` s after the 2nd second was shown."""
    ids = Store(store).ids()
    assert len(ids) == 1, ids
    run = Store(store).load(ids[0])
    summary = run.summary()
    assert run.status == "interrupted" and summary["status"] == "interrupted"
    assert summary["requests"] > 0 and summary["p99_ms"] > 0
    assert run.series()["completed"].sum() > 0
    assert summary["load_duration"] == 60  # asked for
    # what was measured: the seconds merged until the interrupt, not the 60 asked for
    measured = summary["measured_s"]
    assert measured == len(run.series())
    assert 2 <= measured <= 2 + late + 2, (measured, late)  # + the second being merged, + slack
    assert summary["throughput_rps"] == pytest.approx(
        run.series()["completed"].sum() / measured, rel=0.01
    )
    assert run.manifest["timings"]["service_start_s"] > 0


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_interrupted_run_ends_every_process_and_stores_the_partial_result(
    root: Path, tmp_path: Path, how: str
) -> None:
    store = tmp_path / "runs"
    env = {**os.environ, "WORKBENCH_STACK_DIR": str(root), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fault_run", str(store)],
        cwd=project_dir(), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,  # its own process group, as a shell gives a foreground job
    )  # fmt: skip
    assert proc.stdout is not None
    seen = []
    try:
        for line in proc.stdout:
            seen.append(line)
            if MEASURED.match(line):
                shown = time.monotonic()
                break
        else:
            pytest.fail("the run ended before two seconds were measured:\n" + "".join(seen))
        running = processes_under(root)
        assert len(running) >= 5, _describe(
            running
        )  # run, postgres, redis, upstream, service, load
        late = time.monotonic() - shown
        if how == "ctrl-c":
            os.killpg(proc.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
        else:
            proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0
    assert "LoadInterrupted" in out or "KeyboardInterrupt" in out, out[-2000:]
    left = _gone(root)
    assert not left, _describe(left)
    _check_stored(store, late=late)


def test_kernel_interrupt_ends_every_process_and_stores_the_partial_result(
    root: Path, tmp_path: Path
) -> None:
    from jupyter_client.manager import KernelManager

    store = tmp_path / "runs"
    km = KernelManager(kernel_name="python3")
    km.start_kernel(cwd=str(project_dir()), env={**os.environ, "WORKBENCH_STACK_DIR": str(root)})
    client = km.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)
        kernel_pid = km.provisioner.pid  # type: ignore[union-attr]
        msg_id = client.execute(CODE.format(preset="optimized", store=str(store)))
        deadline = time.monotonic() + 90
        text = ""
        while not any(MEASURED.match(line) for line in text.splitlines()):
            assert time.monotonic() < deadline, text
            try:
                message = client.get_iopub_msg(timeout=1)
            except queue.Empty:
                continue
            if message["msg_type"] == "stream":
                text += message["content"]["text"]
                shown = time.monotonic()
        late = time.monotonic() - shown
        km.interrupt_kernel()
        reply = client.get_shell_msg(timeout=60)
        while reply["parent_header"].get("msg_id") != msg_id:
            reply = client.get_shell_msg(timeout=60)
        assert reply["content"]["status"] == "error"
        assert reply["content"]["ename"] in ("LoadInterrupted", "KeyboardInterrupt")
        assert km.is_alive()  # the kernel lives on: cleanup did not rely on its death
        left = _gone(root, exclude=kernel_pid)
        assert not left, _describe(left)
        _check_stored(store, late=late)
    finally:
        client.stop_channels()
        km.shutdown_kernel(now=True)


def test_load_command_interrupted_prints_and_writes_the_partial_result(tmp_path: Path) -> None:
    from .load_servers import serve

    report = tmp_path / "load.json"
    with serve() as (url, _):
        proc = subprocess.Popen(
            [sys.executable, "-m", "workbench.load", url + "/", "--rate", "200", "--duration",
             "30", "--warmup", "0", "--processes", "1", "--connections", "4",
             "--json", str(report)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=project_dir(),
        )  # fmt: skip
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                if MEASURED.match(line):
                    break
            children = psutil.Process(proc.pid).children(recursive=True)
            os.kill(proc.pid, signal.SIGINT)
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 130, err
    assert "INTERRUPTED: partial result of the first" in out and "interrupted" in err
    summary = json.loads(report.read_text())
    assert summary["interrupted"] is True and summary["requests"] >= 2 * 200 * 0.9
    assert summary["duration_s"] >= 2
    # the workers are gone; multiprocessing's resource tracker follows its parent within moments
    _, alive = psutil.wait_procs(children, timeout=5)
    assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]
