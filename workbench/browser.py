"""Headless Chromium, offline: count the charts a report draws and take its screenshot."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from workbench._errors import StackError

CHART_CLASS = "js-plotly-plot"
_OFFLINE = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # No network at all: every host resolves to nothing and every request goes nowhere.
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--proxy-server=127.0.0.1:9",
    "--virtual-time-budget=10000",
]


def chromium() -> str:
    """The Chromium binary (Debian's `chromium`), or StackError saying how to install it."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    raise StackError("Chromium not found: install it with `apt-get install -y chromium`")


def _run(html: Path, *args: str, timeout: float = 90) -> str:
    with tempfile.TemporaryDirectory(prefix="workbench-chromium-") as profile:
        done = subprocess.run(
            [chromium(), *_OFFLINE, f"--user-data-dir={profile}", *args, html.resolve().as_uri()],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    if done.returncode != 0:
        raise StackError(f"Chromium failed on {html}: {done.stderr[-2000:]}")
    return done.stdout


def rendered_dom(html: str | Path) -> str:
    """The page's DOM after its scripts ran, offline."""
    return _run(Path(html), "--dump-dom")


def count_charts(html: str | Path) -> int:
    """How many plotly charts the page drew (plotly marks each drawn chart js-plotly-plot)."""
    classes = re.findall(r'class="([^"]*)"', rendered_dom(html))
    return sum(CHART_CLASS in value.split() for value in classes)


def screenshot(html: str | Path, png: str | Path, *, width: int = 1280, height: int = 3000) -> Path:
    """A PNG of the page as Chromium draws it offline."""
    png = Path(png).resolve()
    _run(Path(html), f"--screenshot={png}", f"--window-size={width},{height}", "--hide-scrollbars")
    return png
