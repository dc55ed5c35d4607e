"""The workbench command: help, bad input (exit 2, named), stack up/status/down leaving nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from workbench.cli import main
from workbench.load._load import STUDY_CONNECTIONS
from workbench.stack import Stack
from workbench.store import Store

from .conftest import TEST_USERS, processes_under

pytestmark = pytest.mark.slow  # the end-to-end tier: `make test-fast` skips it


def workbench(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workbench.cli", *args],
        capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}, check=False,
    )  # fmt: skip


def in_process(
    *args: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """`workbench args` through main() in this process (no interpreter start, no imports to pay):
    its exit code and what it printed, as a subprocess would have given them."""
    for name, value in (env or {}).items():
        monkeypatch.setenv(name, value)
    capsys.readouterr()
    previous = signal.getsignal(signal.SIGTERM)
    try:
        code = main(list(args))
    except SystemExit as exc:  # argparse: --help, or a usage error
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        signal.signal(signal.SIGTERM, previous)  # main() installs its own handler
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(list(args), code, out, err)


@pytest.fixture
def run(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., subprocess.CompletedProcess[str]]:
    """`workbench ...` in a subprocess when the case is marked SUBPROCESS, else through main()."""

    def run_(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        if args and args[0] == SUBPROCESS:
            return workbench(*args[1:], env=env, timeout=300)
        return in_process(*args, capsys=capsys, monkeypatch=monkeypatch, env=env)

    return run_


# Marks the one case of a command family run as a real `python -m workbench.cli` process; the
# others go through main() in this process, the same code without ~1 s of interpreter and imports.
SUBPROCESS = "<subprocess>"


@pytest.mark.parametrize(
    "command",
    [[SUBPROCESS], ["demo"], ["report"], ["stack"], ["serve"], ["ladder"], ["capacity"], ["tune"],
     ["compare"], ["init"], ["lab"]],
)  # fmt: skip
def test_help(command: list[str], run: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    done = run(*command, "--help")
    assert done.returncode == 0 and "usage: workbench" in done.stdout


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["report", "01_quickstart", "-p", "connections", "-3"], "connections"),
        (["report", "01_quickstart", "-p", "duraton", "3"], "duraton"),
        (["report", "no_such_notebook"], "notebook"),
        (["demo", "--preset", "fast"], "preset"),
        (["serve", "--set", "pool_size=-1"], "settings.pool_size"),  # both in a process above
        (["serve", "--set", "serializer=json"], "settings.serializer"),
    ],
)
def test_bad_input_exits_2_naming_it(
    args: list[str], named: str, run: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    done = run(*args)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"error: {named}: ")


PROBE = """
import sys
from workbench.cli import main
code = main(sys.argv[1:])
print(code, *sorted(m for m in ("lark", "pandas", "sqlalchemy", "optuna") if m in sys.modules))
"""


@pytest.mark.parametrize(
    ("args", "named", "loaded"),
    [(["serve", "--set", "pool_size=-1"], "settings.pool_size", ""),
     (["capacity", "--ids", "gauss"], "ids", ""),
     (["report", "01_quickstart", "-p", "duraton", "3"], "duraton", "pandas")],  # runs looked up
)  # fmt: skip
def test_bad_input_is_answered_before_the_heavy_imports(
    args: list[str], named: str, loaded: str
) -> None:
    """In a process of its own: a typo costs no SQLAlchemy, pandas or Optuna import (seconds on a
    busy machine), and a command that reads a notebook no Lark grammar (jsonschema's IRI checks,
    under nbformat)."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip
    assert done.stdout.split() == ["2", *loaded.split()], done.stdout + done.stderr
    assert done.stderr.startswith(f"error: {named}: ")


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["ladder", "--ids", "gauss"], "ids"),
        (["ladder", "--repeats", "0"], "repeats"),
        (["ladder", "--duration", "0"], "duration"),
        (["ladder", "--slo", "p95"], "slo"),
        (["ladder", "--steps", "naive,+turbo"], "steps"),
        (["ladder", "--tolerance", "-1"], "tolerance"),
        (["capacity", "--preset", "fast"], "preset"),
        (["capacity", "--set", "pool_size=0"], "settings.pool_size"),
        (["capacity", "--set", "no_such_knob=1"], "settings.no_such_knob"),
        (["capacity", "--ids", "gauss"], "ids"),
        (["capacity", "--slo", "p95=fast"], "slo"),
        (["capacity", "--duration", "-3"], "duration"),
        (["capacity", "--repeats", "0"], "repeats"),
        (["tune", "--trials", "0"], "trials"),
        (["tune", "--connections", "-1"], "connections"),
        (["tune", "--space", '{"pool_size": ["int", 40, 2]}'], "pool_size"),
        (["tune", "--space", '{"no_such_knob": ["bool"]}'], "no_such_knob"),
        (["tune", "--space", "[1]"], "space"),
        (["tune", "--slo", "p95=fast"], "slo"),
        (["tune", "--preset", "fast"], "preset"),
        (["tune", "--json", "/no/such/folder/t.json"], "json"),
        (["compare", "no-such-run", "naive"], "run_a"),
        (["compare", "naive", "fastest"], "run_b"),
        (["compare", "naive", "optimized", "--duration", "0"], "duration"),
        (["compare", "naive", "optimized", "--users", "0"], "users"),
    ],
)
def test_studies_check_input_before_starting(
    args: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    previous = signal.getsignal(signal.SIGTERM)
    try:  # in-process: the same entry point, without an interpreter start
        assert main(args) == 2
    finally:
        signal.signal(signal.SIGTERM, previous)  # main() installs its own handler
    out, err = capsys.readouterr()
    assert err.startswith(f"error: {named}: ")
    assert out == ""  # nothing started


def test_compare_names_the_presets_and_the_latest_runs(
    tmp_path: Path, run: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    done = run("compare", "nope", "naive", env={"WORKBENCH_HOME": str(tmp_path)})
    assert done.returncode == 2
    assert "'naive', 'optimized'" in done.stderr and "latest runs: none yet" in done.stderr


def test_bad_ids_lists_the_allowed_distributions(
    run: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    from workbench.load._scenario import DISTRIBUTIONS

    done = run("capacity", "--ids", "gauss")
    assert all(repr(name) in done.stderr for name in DISTRIBUTIONS), done.stderr


def attached(stack: Stack, home: Path) -> dict[str, str]:
    """The environment of a command attached to the session's stack, storing runs under home."""
    return {
        "DATABASE_URL": stack.url, "REDIS_URL": str(stack.redis),
        "UPSTREAM_URL": str(stack.upstream_url), "WORKBENCH_HOME": str(home),
    }  # fmt: skip


SHORT = ["--duration", "1", "--warmup", "0.2", "--users", str(TEST_USERS), "--start", "100"]


def test_capacity_writes_its_json(
    stack: Stack, tmp_path: Path, run: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    out = tmp_path / "capacity.json"
    done = run(
        "capacity", "--preset", "naive", "--set", "pool_size=4", "--ids", "zipf", *SHORT,
        "--limit", "200", "--tolerance", "1", "--json", str(out),
        env=attached(stack, tmp_path),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "capacity " in done.stdout and "interval [" in done.stdout
    found = json.loads(out.read_text())
    for key in ("capacity_rps", "capacity_ci", "bottleneck", "anatomy_ms", "cpu_ms_per_request"):
        assert key in found
    low, high = found["capacity_ci"]
    assert low == found["capacity_rps"] and (high is None or high > low)
    assert found["settings"]["pool_size"] == 4 and found["ids"] == "zipf"
    assert isinstance(found["anatomy_ms"], dict) and isinstance(found["cpu_ms_per_request"], dict)
    # the open loop's cap is the study's (256), not a closed loop's default of 64: at the rates a
    # service holds under the SLO, 64 in flight would break steps on the generator's side
    assert found["connections"] == STUDY_CONNECTIONS == 256
    step = Store(tmp_path / "data" / "runs").load(found["points"][0]["run_id"])
    assert step.manifest["profile"]["connections"] == 256


def test_ladder_writes_its_json(
    stack: Stack, tmp_path: Path, run: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    out = tmp_path / "ladder.json"
    done = run(
        "ladder", "--steps", "naive", "--repeats", "1", "--fixed-rate", "100", *SHORT,
        "--limit", "100", "--slo", "p95=500ms,errors=5%", "--connections", "100", "--json", str(out),
        env=attached(stack, tmp_path),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "--- round 1/1: naive" in done.stdout and "x naive 95% CI" in done.stdout
    found = json.loads(out.read_text())
    assert found["connections"] == 100
    steps = found["steps"]
    assert [s["step"] for s in steps] == ["naive"]
    keys = ("step", "capacity_rps", "capacity_ci", "ratio_to_naive", "ratio_ci", "p95_ms",
            "anatomy_ms", "cpu_ms_per_request", "mechanism")  # fmt: skip
    assert set(keys) <= set(steps[0])
    low, high = steps[0]["capacity_ci"]
    assert low <= steps[0]["capacity_rps"]
    assert high is None or steps[0]["capacity_rps"] <= high  # None: the search never broke
    assert steps[0]["ratio_to_naive"] == 1.0 and steps[0]["p95_ms"] > 0


def test_tune_writes_its_json_and_exits_1_when_no_trial_holds(
    stack: Stack, tmp_path: Path, run: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    # around the naive preset (one uvicorn worker), not the default's gunicorn x2 per trial
    short = ["--duration", "1", "--warmup", "0.2", "--users", str(TEST_USERS), "--connections", "4",
             "--preset", "naive"]  # fmt: skip
    space = ["--space", '{"pool_size": ["int", 2, 8]}']
    out = tmp_path / "tune.json"
    done = run(
        "tune", "--trials", "2", *short, *space, "--slo", "p95=2000ms,errors=50%",
        "--json", str(out), env=attached(stack, tmp_path),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Best of 2 trials" in done.stdout and "Re-measured" in done.stdout
    found = json.loads(out.read_text())
    assert found["held"] is True and found["best_rps"] > 0
    assert 2 <= found["best_settings"]["pool_size"] <= 8
    assert [t["number"] for t in found["trials"]] == [0, 1]
    assert all(t["run_id"] and "pool_size" in t["params"] for t in found["trials"])
    assert found["confirm_run_id"] and found["confirm_rps"] > 0
    never = run(
        SUBPROCESS, "tune", "--trials", "1", *short, *space, "--slo", "p50=0.001ms",
        "--json", str(out), env=attached(stack, tmp_path),
    )  # fmt: skip
    assert never.returncode == 1, never.stderr
    assert "no trial held the SLO (p50=0.001ms)" in never.stdout
    assert json.loads(out.read_text())["held"] is False


def test_compare_a_stored_run_with_a_preset_measured_now(
    stack: Stack, tmp_path: Path, run: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    from workbench.experiment import Experiment
    from workbench.store import Store

    stored = Experiment(connections=4, duration=1, warmup=0.2).run(
        stack, store=Store(tmp_path / "data" / "runs"), progress=False
    )
    out = tmp_path / "compare.json"
    done = run(
        "compare", stored.run_id, "naive", "--duration", "1", "--warmup", "0.2",
        "--connections", "4", "--users", str(TEST_USERS), "--json", str(out),
        env=attached(stack, tmp_path),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "--- measuring naive (run_b)" in done.stdout
    found = json.loads(out.read_text())
    assert found["run_a"] == stored.run_id and found["run_b"] != stored.run_id
    assert [m["metric"] for m in found["metrics"]] == [
        "throughput_rps",
        "p50_ms",
        "p95_ms",
        "p99_ms",
    ]
    assert all(isinstance(m["significant"], bool) and m["a"] > 0 for m in found["metrics"])
    assert found["verdict"].splitlines()[0].startswith("throughput_rps: ")
    assert found["run_b"] in Store(tmp_path / "data" / "runs").ids()  # measured and stored


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["serve", "--set", "pool_timeout=nan"], "settings.pool_timeout: must be a number from 0.001 to 3600, got 'nan'"),
        (["serve", "--set", "pool_timeout=NaN"], "settings.pool_timeout: must be a number from 0.001 to 3600, got nan"),
        (["serve", "--set", "upstream_timeout=inf"], "settings.upstream_timeout: must be a number from 0.001 to 3600"),
        (["serve", "--set", "workers=1000000"], "settings.workers: must be an integer from 1 to 64, got 1000000"),
        (["serve", "--preset", "fastest", "--set", "workers=2"], "preset: must be one of naive, optimized"),
        (["sweep", "01_quickstart", "-p", "pool_timeout", "1,nan"], "settings.pool_timeout: must be a number from 0.001"),
        (["demo", "--preset", "fastest"], "preset: must be one of naive, optimized"),
        ([SUBPROCESS, "capacity", "--set", "pool_timeout=inf"], "settings.pool_timeout: must be a number from 0.001 to 3600"),
    ],
)  # fmt: skip
def test_bad_settings_exit_2_before_any_server_starts(
    tmp_path: Path, args: list[str], message: str,
    run: Callable[..., subprocess.CompletedProcess[str]],
) -> None:  # fmt: skip
    root = tmp_path / "stack"  # a fresh data folder: a stack started here would leave files
    root.mkdir()
    root.chmod(0o755)
    done = run(*args, env={"WORKBENCH_STACK_DIR": str(root)})
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"error: {message}"), done.stderr
    assert "Traceback" not in done.stderr
    assert list(root.iterdir()) == []  # no postgres/ folder, no logs, no state.json
    assert not processes_under(root)


def test_stack_up_status_down(
    stack: Stack, run: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    env = {"WORKBENCH_STACK_DIR": str(Path(stack.root) / "detached")}
    # `up` in a process of its own, as a user runs it: the servers it leaves are not this one's
    up = run(SUBPROCESS, "stack", "up", "--users", "100", env=env)
    assert up.returncode == 0, up.stderr
    assert "DATABASE_URL=postgresql://postgres:***@127.0.0.1:" in up.stdout
    password = (Path(stack.root) / "detached" / "password").read_text().strip()
    try:
        status = run("stack", "status", env=env)
        assert status.returncode == 0 and "PostgreSQL 18" in status.stdout
        for shown in (up, status):  # the password is in its 0600 file, not in the output
            assert password not in shown.stdout + shown.stderr and "***@" in shown.stdout
        assert run("stack", "up", env=env).returncode == 1  # one at a time
    finally:
        down = run("stack", "down", env=env)
    assert "postgres" in down.stdout and "redis" in down.stdout
    assert run("stack", "status", env=env).returncode == 1


CORRUPT_STATES = {
    "truncated": b'{"database_url": "postgresql://x", "pids": {"postg', "list": b"[1, 2]",
    "no-urls": b'{"pids": {}}', "not-utf8": b"\xff\xfe\x00",
    "pid-not-int": b'{"database_url": "a", "redis_url": "b", "pids": {"postgres": "12"}}',
}  # fmt: skip


@pytest.mark.parametrize(
    ("action", "content"),
    [pytest.param([action], content, id=f"{action}-{name}")
     for action in ("status", "down", "up") for name, content in CORRUPT_STATES.items()]
    + [pytest.param([SUBPROCESS, "up"], CORRUPT_STATES["list"], id="subprocess-up-list")],
)  # fmt: skip
def test_corrupt_state_file_is_a_clear_message(
    tmp_path: Path, content: bytes, action: list[str],
    run: Callable[..., subprocess.CompletedProcess[str]],
) -> None:  # fmt: skip
    root = tmp_path / "stack"
    root.mkdir()
    state = root / "state.json"
    state.write_bytes(content)
    *process, verb = action
    done = run(*process, "stack", verb, env={"WORKBENCH_STACK_DIR": str(root)})
    assert done.returncode == 1
    assert "Traceback" not in done.stderr + done.stdout
    assert done.stderr.startswith(
        f"error: the background stack's state file {state} is corrupt ("
    ), done.stderr
    assert f"pgrep -af {root}" in done.stderr and f"rm {state}" in done.stderr
    assert state.read_bytes() == content  # left for the user, who may still need its pids
    assert sorted(p.name for p in root.iterdir()) == ["state.json"]  # nothing started


def test_serve_runs_until_sigterm_and_stops_everything(stack: Stack) -> None:
    env = {**os.environ, "WORKBENCH_STACK_DIR": str(Path(stack.root) / "serve")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "workbench.cli", "serve", "--preset", "naive", "--users", "100"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("serving"):
                break
        family = psutil.Process(proc.pid).children(recursive=True)
        assert len(family) >= 3  # postgres, redis, service (+ their children)
        proc.terminate()
        assert proc.wait(timeout=30) == 130
    finally:
        proc.kill()
    _, alive = psutil.wait_procs(family, timeout=5)
    assert alive == []
