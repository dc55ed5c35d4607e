"""The workbench command: help, bad input (exit 2, named), stack up/status/down leaving nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from workbench.stack import Stack


def workbench(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workbench.cli", *args],
        capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}, check=False,
    )  # fmt: skip


@pytest.mark.parametrize("command", [[], ["demo"], ["report"], ["stack"], ["serve"]])
def test_help(command: list[str]) -> None:
    done = workbench(*command, "--help")
    assert done.returncode == 0 and "usage: workbench" in done.stdout


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["report", "01_quickstart", "-p", "connections", "-3"], "connections"),
        (["report", "01_quickstart", "-p", "duraton", "3"], "duraton"),
        (["report", "no_such_notebook"], "notebook"),
        (["demo", "--preset", "fast"], "preset"),
        (["serve", "--set", "pool_size=-1"], "settings.pool_size"),
        (["serve", "--set", "serializer=json"], "settings.serializer"),
    ],
)
def test_bad_input_exits_2_naming_it(args: list[str], named: str) -> None:
    done = workbench(*args)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"error: {named}: ")


def test_stack_up_status_down(stack: Stack) -> None:
    env = {"WORKBENCH_STACK_DIR": str(Path(stack.root) / "detached")}
    up = workbench("stack", "up", "--users", "100", env=env)
    assert up.returncode == 0, up.stderr
    assert "DATABASE_URL=postgresql://" in up.stdout
    try:
        status = workbench("stack", "status", env=env)
        assert status.returncode == 0 and "PostgreSQL 18" in status.stdout
        assert workbench("stack", "up", env=env).returncode == 1  # one at a time
    finally:
        down = workbench("stack", "down", env=env)
    assert "postgres" in down.stdout and "redis" in down.stdout
    assert workbench("stack", "status", env=env).returncode == 1


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
