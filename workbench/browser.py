"""Headless Chromium, offline: count the charts a report draws and take its screenshot."""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

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
    "--hide-scrollbars",
]
# After the load event, the page's timers may still draw: they run until it is quiet this long.
SETTLE_S = 0.1
_SETTLED = f"new Promise(done => setTimeout(done, {SETTLE_S * 1000:.0f}))"
_COUNT = f"document.getElementsByClassName({CHART_CLASS!r}).length"


def chromium() -> str:
    """The Chromium binary (Debian's `chromium`), or StackError saying how to install it."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    raise StackError("Chromium not found: install it with `apt-get install -y chromium`")


class Browser:
    """One headless Chromium, offline, driven over its DevTools pipe: the reports it opens one
    after the other share its start (about a CPU-second each time) and its compiled scripts."""

    def __init__(self, *, timeout: float = 90.0) -> None:
        self.timeout = timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self._profile: tempfile.TemporaryDirectory[str] | None = None
        self._to: int = -1
        self._from: int = -1
        self._buffer = b""
        self._events: list[dict[str, Any]] = []
        self._next_id = 0
        self._session = ""

    def __enter__(self) -> Browser:
        self._profile = tempfile.TemporaryDirectory(prefix="workbench-chromium-")
        commands, self._to = os.pipe()
        self._from, replies = os.pipe()
        # above 4, so that moving them onto 3 and 4 below never overwrites one with the other
        commands, replies = (_above(fd, 10) for fd in (commands, replies))
        argv = [chromium(), *_OFFLINE, f"--user-data-dir={self._profile.name}"]
        argv += ["--remote-debugging-pipe", "about:blank"]
        # The DevTools pipe is fds 3 (commands in) and 4 (replies out) of the browser: a bare
        # interpreter (-S: no site, ~15 ms) moves them there and execs Chromium (sh takes
        # one-digit fds only, and preexec_fn is unsafe beside threads).
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-S", "-c", _ONTO_3_AND_4, str(commands), str(replies), *argv],
                pass_fds=(commands, replies),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        finally:
            os.close(commands)
            os.close(replies)
        try:
            target = self._call("Target.createTarget", url="about:blank")["targetId"]
            attached = self._call("Target.attachToTarget", targetId=target, flatten=True)
            self._session = attached["sessionId"]
            self._call("Page.enable")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop Chromium and forget its profile."""
        if self.proc is not None:
            if self.proc.poll() is None:
                try:
                    self._send("Browser.close", {}, session=False)
                    self.proc.wait(timeout=10)
                except (OSError, subprocess.TimeoutExpired):
                    self.proc.kill()
                    self.proc.wait()
            self.proc = None
        for fd in (self._to, self._from):
            if fd >= 0:
                os.close(fd)
        self._to = self._from = -1
        if self._profile is not None:
            self._profile.cleanup()
            self._profile = None

    # --- pages ---------------------------------------------------------------------------
    def open(self, html: str | Path, *, width: int = 1280, height: int = 3000) -> None:
        """Show a page in a window of width × height and wait until it has loaded and settled."""
        self._call(
            "Emulation.setDeviceMetricsOverride",
            width=width, height=height, deviceScaleFactor=1, mobile=False,
        )  # fmt: skip
        self._events.clear()
        url = Path(html).resolve().as_uri()
        navigated = self._call("Page.navigate", url=url)
        if navigated.get("errorText"):
            raise StackError(f"Chromium could not open {html}: {navigated['errorText']}")
        self._wait_event("Page.loadEventFired")
        self.evaluate(_SETTLED)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (a promise is awaited)."""
        reply = self._call(
            "Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True
        )
        if "exceptionDetails" in reply:
            raise StackError(f"Chromium: {expression} raised {reply['exceptionDetails']}")
        return reply["result"].get("value")

    def count_charts(self, html: str | Path) -> int:
        """How many plotly charts the page drew (plotly marks each drawn chart js-plotly-plot)."""
        self.open(html)
        return int(self.evaluate(_COUNT))

    def dom(self, html: str | Path) -> str:
        """The page's DOM after its scripts ran."""
        self.open(html)
        return str(self.evaluate("document.documentElement.outerHTML"))

    def screenshot(
        self, html: str | Path, png: str | Path, *, width: int = 1280, height: int = 3000
    ) -> Path:
        """A PNG of the page as Chromium draws it in a window of width × height."""
        self.open(html, width=width, height=height)
        data = self._call("Page.captureScreenshot", format="png")["data"]
        png = Path(png).resolve()
        png.write_bytes(base64.b64decode(data))
        return png

    # --- the DevTools protocol ------------------------------------------------------------
    def _send(self, method: str, params: dict[str, Any], *, session: bool = True) -> int:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session and self._session:
            message["sessionId"] = self._session
        data = json.dumps(message).encode() + b"\0"
        while data:
            data = data[os.write(self._to, data) :]
        return self._next_id

    def _call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send a command; its result (StackError on an error or when Chromium is silent)."""
        sent = self._send(method, params)
        while True:
            message = self._receive()
            if message.get("id") == sent:
                if "error" in message:
                    raise StackError(f"Chromium: {method} failed: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result
            if "method" in message:
                self._events.append(message)

    def _wait_event(self, method: str) -> dict[str, Any]:
        while True:
            for event in self._events:
                if event["method"] == method and event.get("sessionId") == self._session:
                    self._events.remove(event)
                    return event
            message = self._receive()
            if "method" in message:
                self._events.append(message)

    def _receive(self) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from], [], [], left)[0]:
                raise StackError(f"Chromium did not answer within {self.timeout:g} s")
            chunk = os.read(self._from, 1 << 20)
            if not chunk:
                raise StackError("Chromium exited")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        message: dict[str, Any] = json.loads(raw)
        return message


# argv: the commands fd, the replies fd, then the browser's argv
_ONTO_3_AND_4 = """import os, sys
for fd, onto in ((int(sys.argv[1]), 3), (int(sys.argv[2]), 4)):
    os.dup2(fd, onto)
    os.close(fd)
os.execv(sys.argv[3], sys.argv[3:])
"""


def _above(fd: int, lowest: int) -> int:
    """fd moved to a number >= lowest (the old one closed)."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, lowest)
    os.close(fd)
    return moved
