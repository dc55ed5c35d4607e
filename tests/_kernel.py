"""A real Jupyter kernel for tests: run cells, read every message they sent, with arrival times."""

from __future__ import annotations

import os
import queue
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from workbench.kernel import WarmKernel
from workbench.live import SESSION_ENV
from workbench.paths import project_dir
from workbench.report import ensure_kernel


@dataclass
class Cell:
    """What one execution sent: iopub messages with arrival times (s after the request), its reply."""

    messages: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    reply: dict[str, Any] = field(default_factory=dict)
    ended: float = 0.0  # when the kernel went idle

    def of(self, *types: str) -> list[tuple[float, dict[str, Any]]]:
        return [(t, m) for t, m in self.messages if m["msg_type"] in types]

    def text(self, name: str = "stdout") -> str:
        return "".join(
            m["content"]["text"] for _, m in self.of("stream") if m["content"]["name"] == name
        )


class Kernel:
    """A started kernel and its client."""

    def __init__(self, km: Any, client: Any) -> None:
        self.km = km
        self.client = client

    def interrupt(self) -> None:
        """Interrupt the running cell, as Lab's stop button does."""
        from jupyter_core.utils import ensure_async, run_sync

        async def interrupt() -> None:
            await ensure_async(self.km.interrupt_kernel())

        run_sync(interrupt)()

    def run(
        self,
        code: str,
        *,
        timeout: float = 180,
        on_message: Callable[[float, dict[str, Any]], None] | None = None,
    ) -> Cell:
        """Execute code; every message it caused until the kernel is idle again, and the reply."""
        msg_id = self.client.execute(code)
        cell = Cell()
        start = time.monotonic()
        deadline = start + timeout
        while True:
            assert time.monotonic() < deadline, f"cell still running after {timeout} s: {code}"
            try:
                message = self.client.get_iopub_msg(timeout=1)
            except queue.Empty:
                continue
            if message["parent_header"].get("msg_id") != msg_id:
                continue
            at = time.monotonic() - start
            if message["msg_type"] == "status":
                if message["content"]["execution_state"] == "idle":
                    cell.ended = at
                    break
                continue
            cell.messages.append((at, message))
            if on_message is not None:
                on_message(at, message)
        reply = self.client.get_shell_msg(timeout=30)
        while reply["parent_header"].get("msg_id") != msg_id:
            reply = self.client.get_shell_msg(timeout=30)
        cell.reply = reply["content"]
        return cell


def _environ(*, watched: bool, env: Mapping[str, str | None] | None) -> dict[str, str]:
    """This process's environment with env's changes (None: removed), watched or not."""
    environ = {**os.environ}
    for key, value in (env or {}).items():
        if value is None:
            environ.pop(key, None)
        else:
            environ[key] = value
    environ.pop(SESSION_ENV, None)
    if watched:
        environ[SESSION_ENV] = "test.ipynb"  # what jupyter_server sets for a notebook's kernel
    return environ


@contextmanager
def warm(
    kernel: WarmKernel, *, watched: bool, env: Mapping[str, str | None] | None = None
) -> Iterator[Kernel]:
    """A warm kernel (tests/conftest.py's warm_kernel) made what kernel(...) would start: reset
    to a fresh kernel's state with that environment, in the project folder; what its cells kept
    up (stack, services, load workers) is stopped afterwards, as the kernel's exit would."""
    from jupyter_client.blocking import BlockingKernelClient

    kernel.reset(cwd=project_dir(), env=_environ(watched=watched, env=env))
    client = BlockingKernelClient()
    client.load_connection_info(kernel.km.get_connection_info())
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)
        yield Kernel(kernel.km, client)
    finally:
        client.stop_channels()
        kernel.stop_kept()


@contextmanager
def kernel(
    *, watched: bool, env: Mapping[str, str | None] | None = None, stderr: Any = None
) -> Iterator[Kernel]:
    """The project's kernel, as JupyterLab starts it (watched) or as papermill does.

    env: variables to set (None: to remove); stderr: a file for the kernel process's own stderr.
    """
    from jupyter_client.manager import KernelManager

    environ = _environ(watched=watched, env=env)
    km = KernelManager(kernel_name=ensure_kernel())
    km.start_kernel(cwd=str(project_dir()), env=environ, **({"stderr": stderr} if stderr else {}))
    client = km.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)
        yield Kernel(km, client)
    finally:
        client.stop_channels()
        km.shutdown_kernel(now=False)
