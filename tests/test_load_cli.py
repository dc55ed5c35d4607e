"""`python -m workbench.load` as a subprocess: exit codes, --json, --slo, Ctrl-C cleanup."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from workbench.load._cli import add_arguments, main

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


def _in_process(*args: str, capsys: pytest.CaptureFixture[str]) -> subprocess.CompletedProcess[str]:
    """What `python -m workbench.load args` does, through its main() in this process (no
    interpreter start nor imports to pay): exit code and output as a subprocess gives them."""
    parser = argparse.ArgumentParser(prog="workbench load", description="Load an HTTP service.")
    add_arguments(parser)
    capsys.readouterr()
    code = main(parser.parse_args(list(args)))
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(list(args), code, out, err)


def test_slo_broken_exits_1_and_json_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "summary.json"
    with serve() as (url, _):
        common = [url + "/", "--rate", "100", "--duration", "1", "--warmup", "0", "--quiet"]
        broken = _cli(*common, "--slo", "p50=0.001ms,errors=0%", "--json", str(out))
        met = _in_process(*common, "--slo", "p99=5s,errors=1%", capsys=capsys)
    assert broken.returncode == 1, broken.stderr
    assert "SLO broken: p50" in broken.stdout
    summary = json.loads(out.read_text())
    assert summary["requests"] == pytest.approx(100, rel=0.1)
    assert summary["asked_rate"] == 100
    assert met.returncode == 0, met.stdout + met.stderr
    assert "SLO met" in met.stdout


@pytest.mark.parametrize(
    ("args", "name", "real"),  # real: one case in a process of its own, the rest through main()
    [
        (["--rate", "-5"], "rate", True),
        (["--rate", "fast"], "rate", False),
        (["--duration", "0"], "duration", False),
        (["--connections", "0"], "connections", False),
        (["--slo", "p95=soon"], "slo", False),
        (["--arrival", "bursty"], "arrival", False),
        (["--transport", "curl"], "transport", False),
    ],
)
def test_bad_input_exits_2_naming_the_parameter(
    args: list[str], name: str, real: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    if real:
        done = _cli("http://127.0.0.1:9/", *args)
    else:
        done = _in_process("http://127.0.0.1:9/", *args, capsys=capsys)
    assert done.returncode == 2
    assert done.stdout == ""  # nothing started
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert f"{name}:" in lines[0]


def test_bad_url_and_scenario_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    done = _cli("not a url")
    assert done.returncode == 2 and "url:" in done.stderr
    remote = _in_process("http://192.0.2.1/", capsys=capsys)
    assert remote.returncode == 2 and "allow-remote" in remote.stderr
    scenario = tmp_path / "s.json"
    scenario.write_text(json.dumps({"endpoints": [{"path": "/"}], "speed": 3}))
    done = _in_process("http://127.0.0.1:9/", "--scenario", str(scenario), capsys=capsys)
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
