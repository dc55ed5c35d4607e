"""Sweeps: in-process grids and papermill-per-point grids, resumable after a kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from workbench._errors import InputError
from workbench.experiment import Experiment
from workbench.stack import Stack
from workbench.store import Store
from workbench.sweep import NotebookSweep, Sweep, parse_grid

from .conftest import TEST_USERS, descendants, processes_under

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = str(ROOT / "notebooks" / "01_quickstart.ipynb")


@pytest.mark.slow
def test_in_process_sweep_runs_each_point_once(stack: Stack, tmp_path: Path) -> None:
    before = descendants()
    store = Store(tmp_path)
    # an open loop at a modest rate: nothing here asserts saturation
    base = Experiment(connections=4, rate=100, duration=1, warmup=1.0)
    sweep = Sweep({"pool_size": [5, 10]}, base=base)
    first = sweep.run(stack, store=store, progress=False)
    assert sorted(first["pool_size"]) == [5, 10]
    assert len(store.ids()) == 2
    # each warm-up was judged: it ended once latency was steady (or at the base's 1 s when it
    # never was, as on a loaded machine), and the run says which and when
    warmups = [store.load(run_id).summary() for run_id in store.ids()]
    for w in warmups:
        assert (w["warmup_end"], w["warmup_s"] < 1.0) in {("steady", True), ("capped", False)}, w
        assert 0 < w["warmup_s"] <= 1.0
    # where each point's time went: the second point's service booted during the first's store
    manifests = sorted(
        (store.load(run_id).manifest for run_id in store.ids()), key=lambda m: m["started_at"]
    )
    one, two = (m["timings"] for m in manifests)
    assert "service_wait_s" not in one and one["service_start_s"] >= one["service_boot_s"] > 0
    assert two["service_wait_s"] >= 0 and two["service_start_s"] < two["service_boot_s"]
    assert all(t["sampling_stop_s"] > 0 and t["load_s"] > 1.0 for t in (one, two))
    again = sweep.run(stack, store=store, progress=False)
    assert len(store.ids()) == 2  # nothing re-measured
    assert sorted(again["run_id"]) == sorted(first["run_id"])
    assert descendants() <= before  # load workers and background-stopped services are gone


@pytest.mark.parametrize(
    ("grid", "name", "says"),
    [
        ({"pool_sise": [1]}, "pool_sise", "valid names are: pool_size"),
        ({"pool_size": ["big"]}, "pool_size", "integer"),
        ({"serializer": ["json"]}, "serializer", "pydantic, orjson"),
        ({"rate": [0]}, "rate", "positive"),
        ({}, "grid", "non-empty"),
    ],
)
def test_bad_grid_is_named_before_anything_starts(grid: dict, name: str, says: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(InputError) as info:
        Sweep(grid)
    assert info.value.name == name and says in str(info.value)


def test_notebook_sweep_rejects_unknown_names() -> None:
    with pytest.raises(
        InputError, match="^nope: unknown name; valid names are the notebook's parameters"
    ):
        NotebookSweep(QUICKSTART, parse_grid([("nope", "1,2")])).points()
    with pytest.raises(InputError, match="^connections: "):
        NotebookSweep(QUICKSTART, parse_grid([("connections", "4,-1")])).points()


def test_each_point_is_told_the_users_the_sweep_seeded() -> None:
    """A point that leaves `users` out gets the sweep's: the notebook's default would reseed."""
    sweep = NotebookSweep(QUICKSTART, parse_grid([("pool_size", "5")]))
    (point,) = sweep.points()
    assert sweep.parameters(point, users=300)["users"] == 300
    assert "users" not in sweep.parameters(point)
    chosen = NotebookSweep(QUICKSTART, parse_grid([("users", "700")]))
    (own,) = chosen.points()
    assert chosen.parameters(own, users=300)["users"] == 700


@pytest.mark.slow
def test_cli_sweep_2x2_survives_a_kill_and_resumes(stack_root: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {
        **os.environ,
        "WORKBENCH_HOME": str(home),
        "WORKBENCH_STACK_DIR": str(stack_root / "sweep"),
    }
    for key in ("DATABASE_URL", "REDIS_URL", "UPSTREAM_URL"):
        env.pop(key, None)
    # an open loop at a modest rate: a kill and a resume need no saturated machine
    argv = [
        sys.executable, "-m", "workbench.cli", "sweep", QUICKSTART,
        "-p", "pool_size", "5,10", "-p", "workers", "1,2",
        "-p", "duration", "1", "-p", "connections", "4", "-p", "rate", "50", "--users", "300",
    ]  # fmt: skip
    folder_glob = "data/sweeps/*/[!.]*.ipynb"  # finished points (tmp files start with a dot)

    # 1. kill it once two points are done
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 150
    while (
        len(list(home.glob(folder_glob))) < 2
        and time.monotonic() < deadline
        and proc.poll() is None
    ):
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = len(list(home.glob(folder_glob)))
    assert 2 <= finished < 4
    deadline = time.monotonic() + 15  # its servers and workers see their parent gone
    while processes_under(stack_root / "sweep") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert processes_under(stack_root / "sweep") == set(), "the killed sweep left a process behind"

    # 2. rerun: only the missing points run
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("skip (done)") == finished
    assert "4 finished points" in done.stdout
    runs = Store(home / "data" / "runs").runs()
    finished_runs = runs[runs["status"] == "finished"]
    assert finished_runs["point"].nunique() == 4

    # 3. rerun again: everything is skipped
    again = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert again.returncode == 0 and again.stdout.count("skip (done)") == 4
    assert len(Store(home / "data" / "runs").ids()) == len(runs)


@pytest.mark.slow
def test_cli_sweep_names_the_point_whose_notebook_failed(
    stack: Stack,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import nbformat

    from workbench.cli import main

    notebook = tmp_path / "breaks.ipynb"
    cells = [
        nbformat.v4.new_code_cell("fail = 0", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(
            'if fail:\n    raise ValueError(f"point {fail} broke on purpose")'
        ),
    ]
    kernel = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": kernel}), notebook)
    home = tmp_path / "home"
    env = {**stack.env(), "WORKBENCH_HOME": str(home)}
    args = ["sweep", str(notebook), "-p", "fail", "0,1", "--users", str(TEST_USERS)]
    # the first sweep through main() in this process (no interpreter and imports to pay), the
    # rerun as the real command
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    previous = signal.getsignal(signal.SIGTERM)
    try:
        code = main(args)
    finally:
        signal.signal(signal.SIGTERM, previous)  # main() installs its own handler
    out, err = capsys.readouterr()
    assert code == 1, err[-2000:]
    assert "Traceback" not in err + out
    assert (
        'error: sweep point {"fail": 1} failed in its notebook: '
        "ValueError: point 1 broke on purpose" in err
    )
    executed = Path(err.split("the executed notebook, with the error: ")[1].split()[0])
    assert executed.is_file() and executed.parent.parent == home / "data" / "sweeps"
    assert "point 1 broke on purpose" in executed.read_text()  # the error output is in it
    # the good point is done; a rerun skips it and tries the failed one again
    again = subprocess.run(
        [sys.executable, "-m", "workbench.cli", *args], env={**os.environ, **env},
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert again.returncode == 1 and again.stdout.count("skip (done)") == 1
    assert 'sweep point {"fail": 1} failed' in again.stderr
