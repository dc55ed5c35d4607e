"""A sweep whose process is killed: finished points are kept, the broken one reads crashed and is
redone on resume; the store never shows a half-written run as finished."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from workbench.paths import project_dir
from workbench.stack import Stack
from workbench.store import Store

from .conftest import TEST_USERS, processes_under
from .fault_run import sweep


@pytest.mark.slow
def test_killed_sweep_resumes_and_marks_the_broken_run_crashed(
    stack: Stack, tmp_path: Path
) -> None:
    store_dir = tmp_path / "runs"
    root = Path(tempfile.mkdtemp(prefix="workbench-fault-stack-"))
    root.chmod(0o755)
    env = {**os.environ, "WORKBENCH_STACK_DIR": str(root), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fault_run", "sweep", str(store_dir)],
        cwd=project_dir(), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    seen = []
    try:
        for line in proc.stdout:
            seen.append(line)
            if "req/s" in line and '"pool_size": 3' in line:
                break  # the first point is stored; the second is starting
        else:
            raise AssertionError("the sweep ended early:\n" + "".join(seen))
        store = Store(store_dir)
        deadline = time.monotonic() + 30
        while store.unfinished().empty and time.monotonic() < deadline:
            time.sleep(0.05)
        assert store.unfinished()["status"].tolist() == ["running"]
        time.sleep(0.6)  # into the second point's load (0.2 s warm-up at most, 1 s load)
        proc.send_signal(signal.SIGKILL)  # no cleanup code runs
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # servers and the service die with the killed process (PDEATHSIG), load workers on their own
    deadline = time.monotonic() + 15
    while processes_under(root) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not processes_under(root), [psutil.Process(p).cmdline() for p in processes_under(root)]

    store = Store(store_dir)
    runs = store.runs()
    assert runs["status"].tolist() == ["finished"] and runs["pool_size"].tolist() == [3]
    crashed = store.unfinished()
    assert crashed["status"].tolist() == ["crashed"] and crashed["pool_size"].tolist() == [4]
    assert store.runs(unfinished=True)["status"].tolist() == ["finished", "crashed"]

    the_sweep = sweep()
    summary = the_sweep.run(stack, store=store, progress=False)  # resume
    assert sorted(summary["pool_size"]) == [3, 4, 5]
    finished = store.runs()
    assert len(finished) == 3 and (finished["status"] == "finished").all()
    first = runs["run_id"].iloc[0]
    assert first in finished["run_id"].tolist()  # the finished point was kept, not redone


@pytest.mark.slow
def test_a_sweep_killed_inside_store_save_leaves_no_run_and_redoes_it(
    stack: Stack, tmp_path: Path
) -> None:
    store_dir = tmp_path / "runs"
    env = {**os.environ, **stack.env(), "PYTHONUNBUFFERED": "1"}  # attached to the session's stack
    done = subprocess.run(
        [sys.executable, "-m", "tests.fault_run", "save-killed", str(store_dir), str(TEST_USERS)],
        cwd=project_dir(), env=env, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert done.returncode == -signal.SIGKILL, done.stdout[-2000:] + done.stderr[-2000:]
    # it died midway through Store.save: the first files of the run are written, in a temporary
    # folder, and its summary there says finished
    (half,) = (p for p in store_dir.iterdir() if p.is_dir())
    assert half.name.startswith(".tmp-")
    assert sorted(p.name for p in half.iterdir()) == [
        "manifest.json", "series.parquet", "server.parquet", "summary.json",
    ]  # fmt: skip
    assert json.loads((half / "summary.json").read_text())["status"] == "finished"

    store = Store(store_dir)
    assert store.ids() == [] and store.runs().empty  # no half-written run is listed
    crashed = store.unfinished()
    assert crashed["status"].tolist() == ["crashed"] and crashed["pool_size"].tolist() == [3]

    summary = sweep().run(stack, store=store, progress=False)  # a later sweep redoes the point
    assert sorted(summary["pool_size"]) == [3, 4, 5]
    finished = store.runs()
    assert len(finished) == 3 and (finished["status"] == "finished").all()
    assert store.unfinished()["run_id"].tolist() == crashed["run_id"].tolist()  # a record of it


def test_markers_of_gone_processes_read_crashed_and_of_live_ones_running(tmp_path: Path) -> None:
    store = Store(tmp_path)
    # a run begun by a process that is gone reads crashed, one by a live process running
    store.begin("20260101T000001-gone-000000", {"name": "gone", "labels": {"point": 1}})
    marker = tmp_path / ".running-20260101T000001-gone-000000.json"
    data = json.loads(marker.read_text())
    marker.write_text(json.dumps({**data, "pid": 2**22 + 1}))
    store.begin("20260101T000002-live-000000", {"name": "live"})
    unfinished = store.unfinished().set_index("name")
    assert unfinished.loc["gone", "status"] == "crashed" and unfinished.loc["gone", "point"] == 1
    assert unfinished.loc["live", "status"] == "running"
    assert store.ids() == []
