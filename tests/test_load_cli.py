"""`python -m workbench.load` as a subprocess: exit codes, --json, --slo, Ctrl-C cleanup."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from .load_servers import serve

pytestmark = pytest.mark.slow  # the end-to-end tier: `make test-fast` skips it

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workbench.load", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def test_slo_broken_exits_1_and_json_is_written(tmp_path: Path) -> None:
    out = tmp_path / "summary.json"
    with serve() as (url, _):
        common = [url + "/", "--rate", "100", "--duration", "1", "--warmup", "0", "--quiet"]
        broken = _cli(*common, "--slo", "p50=0.001ms,errors=0%", "--json", str(out))
        met = _cli(*common, "--slo", "p99=5s,errors=1%")
    assert broken.returncode == 1, broken.stderr
    assert "SLO broken: p50" in broken.stdout
    summary = json.loads(out.read_text())
    assert summary["requests"] == pytest.approx(100, rel=0.1)
    assert summary["asked_rate"] == 100
    assert met.returncode == 0, met.stdout + met.stderr
    assert "SLO met" in met.stdout


@pytest.mark.parametrize(
    ("args", "name"),
    [
        (["--rate", "-5"], "rate"),
        (["--rate", "fast"], "rate"),
        (["--duration", "0"], "duration"),
        (["--connections", "0"], "connections"),
        (["--slo", "p95=soon"], "slo"),
        (["--arrival", "bursty"], "arrival"),
        (["--transport", "curl"], "transport"),
    ],
)
def test_bad_input_exits_2_naming_the_parameter(args: list[str], name: str) -> None:
    done = _cli("http://127.0.0.1:9/", *args)
    assert done.returncode == 2
    assert done.stdout == ""  # nothing started
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert f"{name}:" in lines[0]


def test_bad_url_and_scenario_exit_2(tmp_path: Path) -> None:
    done = _cli("not a url")
    assert done.returncode == 2 and "url:" in done.stderr
    remote = _cli("http://192.0.2.1/")
    assert remote.returncode == 2 and "allow-remote" in remote.stderr
    scenario = tmp_path / "s.json"
    scenario.write_text(json.dumps({"endpoints": [{"path": "/"}], "speed": 3}))
    done = _cli("http://127.0.0.1:9/", "--scenario", str(scenario))
    assert done.returncode == 2
    assert "scenario:" in done.stderr and "'speed'" in done.stderr and "allowed" in done.stderr


def test_ctrl_c_stops_the_run_and_leaves_no_workers() -> None:
    with serve() as (url, _):
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "workbench.load",
                url + "/",
                "--rate",
                "200",
                "--duration",
                "30",
                "--warmup",
                "0",
                "--processes",
                "2",
                "--connections",
                "4",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        try:
            assert proc.stdout is not None
            deadline = time.monotonic() + 30
            while "(asked" not in proc.stdout.readline() and time.monotonic() < deadline:
                pass  # wait for the first progress line: workers are running
            children = psutil.Process(proc.pid).children(recursive=True)
            workers = [c for c in children if "resource_tracker" not in " ".join(c.cmdline())]
            assert len(workers) == 2
            os.kill(proc.pid, signal.SIGINT)
            proc.wait(15)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 130
    time.sleep(0.2)
    for child in children:
        assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
