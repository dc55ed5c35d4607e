"""JupyterLab in a real browser: the quickstart's launch cell draws a live chart while it runs,
the final charts draw, no cell shows an error or warning box, and the panel's Run button adds a
compared run. Screenshots go to data/screenshots/ for a person to look at."""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from workbench._net import free_port, wait_for_port
from workbench.paths import project_dir
from workbench.report import ensure_kernel

from .conftest import processes_under

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = project_dir() / "data" / "screenshots"
# An open loop at a modest rate: nothing here needs the service saturated (a closed loop kept
# both cores busy for both runs).
SHORT = {"duration": 4.0, "warmup": 0.5, "users": 1000, "connections": 4, "rate": 100.0}
LIVE = re.compile(r"([1-3]) of 4 s measured")  # a title drawn while the load runs
RUNNING = "[*]:"


def short_quickstart(folder: Path) -> Path:
    """The quickstart with short parameters in its parameters cell, copied into folder."""
    nb = json.loads((project_dir() / "notebooks" / "01_quickstart.ipynb").read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", []))
    lines = "".join(cell["source"]).splitlines()
    for i, line in enumerate(lines):
        name = line.split("=")[0].strip()
        if name in SHORT:
            lines[i] = f"{name} = {SHORT[name]!r}"
    cell["source"] = "\n".join(lines)
    path = folder / "quickstart.ipynb"
    path.write_text(json.dumps(nb))
    return path


def lab_settings(folder: Path) -> Path:
    """Lab settings for a test: every cell rendered (no windowing, so off-screen outputs can be
    read), no news or update checks (offline)."""
    settings = folder / "lab-settings"
    for name, values in {
        "notebook-extension/tracker": {"windowingMode": "none"},
        "apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    }.items():
        path = settings / "@jupyterlab" / f"{name}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    return settings


@pytest.fixture
def lab(stack_root: Path, tmp_path: Path) -> Iterator[tuple[str, Path, subprocess.Popen[bytes]]]:
    """JupyterLab on a free loopback port, on a folder of its own: the notebook's URL, the
    stack folder its kernels use, the server."""
    ensure_kernel()
    home = tmp_path / "home"
    (home / "data").mkdir(parents=True)
    short_quickstart(tmp_path)
    port, token = free_port(), secrets.token_hex(16)
    root = stack_root / "lab"
    env = {**os.environ, "WORKBENCH_HOME": str(home), "WORKBENCH_STACK_DIR": str(root)}
    for key in ("DATABASE_URL", "REDIS_URL", "UPSTREAM_URL", "JPY_SESSION_NAME"):
        env.pop(key, None)
    argv = [
        sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root",
        "--ip", "127.0.0.1", f"--port={port}", f"--ServerApp.token={token}",
        f"--notebook-dir={tmp_path}", f"--LabApp.user_settings_dir={lab_settings(tmp_path)}",
    ]  # fmt: skip
    log = (tmp_path / "lab.log").open("w")
    server = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        assert wait_for_port(port, timeout=60), (tmp_path / "lab.log").read_text()[-3000:]
        yield f"http://127.0.0.1:{port}/lab/tree/quickstart.ipynb?token={token}", root, server
    finally:
        stop_lab(server)
        log.close()


def stop_lab(server: subprocess.Popen[bytes]) -> None:
    """Stop JupyterLab as Ctrl-C does: it shuts its kernels down (their atexit stops the stack)."""
    if server.poll() is None:
        server.send_signal(signal.SIGINT)
        server.send_signal(signal.SIGINT)  # the second one skips "Shut down? (y/n)"
    try:
        server.wait(timeout=60)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def launch_cell(page: Any) -> Any:
    return page.locator(".jp-CodeCell", has_text="wb.kept_stack(").first


def prompt(cell: Any) -> str:
    return str(cell.locator(".jp-InputArea-prompt").first.inner_text()).strip()


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium")
def test_the_quickstart_in_jupyterlab_draws_live_and_the_panel_adds_a_run(
    lab: tuple[str, Path, subprocess.Popen[bytes]],
) -> None:
    from playwright.sync_api import sync_playwright

    url, root, server = lab
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.goto(url)
        page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=60_000)
        # the kernel is idle before Run All
        page.locator(".jp-StatusBar-Widget", has_text="| Idle").first.wait_for(timeout=60_000)
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()

        cell = launch_cell(page)
        deadline = time.monotonic() + 180
        live_seen = False
        while time.monotonic() < deadline:
            running = prompt(cell) == RUNNING
            drawn = cell.locator(".jp-OutputArea .js-plotly-plot").count()
            title = " ".join(cell.locator(".jp-OutputArea .gtitle").all_text_contents())
            if running and drawn and LIVE.search(title):
                live_seen = True
                cell.scroll_into_view_if_needed()
                page.screenshot(path=str(SHOTS / "lab_live.png"))
                break
            if not running and prompt(cell).startswith("[") and prompt(cell) != "[ ]:":
                break
            time.sleep(0.2)
        assert live_seen, "no chart drawn in the launch cell while it ran: " + prompt(cell)

        # every cell done: the last one (the panel) has its prompt number
        last = page.locator(".jp-CodeCell").last
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not prompt(last)[1:-2].isdigit():
            time.sleep(0.5)
        assert prompt(last)[1:-2].isdigit(), prompt(last)
        assert page.locator(".jp-Notebook .js-plotly-plot").count() >= 7
        boxes = page.locator(
            ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr'],"
            ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.error']"
        )
        assert boxes.count() == 0, boxes.all_inner_texts()

        widget = page.locator(".jp-CodeCell").last.locator(".widget-vbox").first
        widget.wait_for(timeout=30_000)
        rows = widget.locator("table tbody tr")
        assert rows.count() == 1  # the notebook's run
        widget.locator("select").first.select_option("naive")  # the preset: its knobs follow
        widget.locator("button", has_text="Run").first.click()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (
            rows.count() < 2 or "stored as" not in widget.inner_text()
        ):
            time.sleep(0.5)
        assert rows.count() == 2, widget.inner_text()
        assert "stored as" in widget.inner_text()
        widget.locator(".js-plotly-plot").last.wait_for(timeout=30_000)
        # the panel's own run chart (live, then final) and the comparison chart
        assert widget.locator(".js-plotly-plot").count() == 2
        page.set_viewport_size({"width": 1400, "height": 2300})  # the whole panel in one shot
        time.sleep(1.5)  # Lab's relayout and the charts' transitions
        widget.scroll_into_view_if_needed()
        widget.screenshot(path=str(SHOTS / "lab_panel.png"))
        assert boxes.count() == 0, boxes.all_inner_texts()
        browser.close()
    stop_lab(server)
    deadline = time.monotonic() + 30
    while (left := processes_under(root)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not left, "the kernel's stack outlived JupyterLab"
