"""Kernel: one warm Jupyter kernel that runs notebook after notebook, each as a fresh kernel would."""

from __future__ import annotations

import functools
import os
import sys
import types
import uuid
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ENGINE = "workbench-warm"
# What a fresh kernel has imported before the first cell runs would cost each point ~3 s (the
# kernel's start, then pandas, plotly and the workbench); the warm kernel pays it once.
PRELOAD = "__import__('workbench.kernel').kernel._warm()"
RESET_TIMEOUT_S = 60.0


class WarmKernel:
    """A started kernel reset before each notebook: empty namespace, prompt numbers from 1,
    the parent's environment, the notebook's folder, warnings shown again."""

    def __init__(self, *, kernel_name: str, cwd: Path) -> None:
        self.kernel_name = kernel_name
        self.cwd = Path(cwd)
        self.km: Any = None
        self._env0: dict[str, str] = {}

    def start(self) -> WarmKernel:
        """Start the kernel and import what the notebooks import."""
        from jupyter_core.utils import run_sync

        _register_engine()
        self._env0 = dict(os.environ)  # what the kernel inherits (plus what Jupyter adds)
        # the kind of manager nbclient makes for itself (it awaits the manager's methods)
        self.km = local_kernel_manager()(kernel_name=self.kernel_name)
        run_sync(self.km.start_kernel)(cwd=str(self.cwd))
        self._run(PRELOAD)
        return self

    def reset(self, *, cwd: Path | None = None, env: Mapping[str, str] | None = None) -> None:
        """Make the kernel what a fresh one started now (in cwd, with env) would be."""
        from jupyter_core.utils import run_sync

        if self.km is None or not run_sync(self.km.is_alive)():
            self.restart()
        where = str(Path(cwd or self.cwd).resolve())
        now = dict(os.environ if env is None else env)
        changed = {k: v for k, v in now.items() if self._env0.get(k) != v}
        gone = [k for k in self._env0 if k not in now]
        code = f"__import__('workbench.kernel').kernel._reset({changed!r}, {gone!r}, {where!r})"
        try:
            self._run(code)
        except RuntimeError:
            if run_sync(self.km.is_alive)():
                raise
            self.restart()  # it died meanwhile (the last notebook killed it)
            self._run(code)

    def stop_kept(self) -> None:
        """Stop what the last notebook kept up (its stack, services, load workers), as the
        kernel's exit would at the end of a lone papermill run."""
        from jupyter_core.utils import run_sync

        if self.km is None or not run_sync(self.km.is_alive)():
            return  # a dead kernel kept nothing
        self._run("__import__('workbench.notebook').notebook.stop()")

    def restart(self) -> None:
        """A new kernel in place of a dead one."""
        self.close()
        self.start()

    def _run(self, code: str) -> None:
        """Run code silently (no prompt number, no history); RuntimeError when it raised."""
        from jupyter_core.utils import run_sync

        # A client of its own each time: papermill's runs change the event loop in between.
        client = self.km.client()
        client.start_channels()
        try:
            run_sync(client.wait_for_ready)(timeout=RESET_TIMEOUT_S)
            reply = run_sync(client.execute_interactive)(
                code, silent=True, store_history=False, timeout=RESET_TIMEOUT_S, output_hook=_drop
            )
        finally:
            client.stop_channels()
        content = reply["content"]
        if content["status"] != "ok":
            raise RuntimeError(
                f"kernel reset failed: {content.get('ename')}: {content.get('evalue')}"
            )

    def close(self) -> None:
        """Stop the kernel."""
        if self.km is not None:
            from jupyter_core.utils import run_sync

            if self.km.has_kernel:
                run_sync(self.km.shutdown_kernel)(now=True)
            self.km = None

    def __enter__(self) -> WarmKernel:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def _drop(msg: dict[str, Any]) -> None:
    """Outputs of the silent reset and preload go nowhere."""


_KERNEL_ENV0: dict[str, str] = {}
_FRESH_NS: dict[str, Any] = {}


def _warm() -> None:
    """In the kernel, before any notebook: import what notebooks import; keep the environment
    and the namespace (`__spec__`, ... that multiprocessing needs) a fresh kernel starts with."""
    from IPython import get_ipython

    import workbench.experiment
    import workbench.plots  # noqa: F401

    _KERNEL_ENV0.update(os.environ)
    _FRESH_NS.update(get_ipython().user_ns)


def _reset(changed: dict[str, str], gone: list[str], cwd: str) -> None:
    """In the kernel: forget the last notebook (namespace, prompt numbers, environment, folder);
    the environment becomes the starting one with the parent's changes since then."""
    from IPython import get_ipython

    shell = get_ipython()
    shell.reset(new_session=True)  # user namespace and Out cache; execution_count back to 1
    for name, value in _FRESH_NS.items():  # what reset drops but a fresh kernel has
        shell.user_ns.setdefault(name, value)
    shell.kernel.execution_count = 0  # the next cell's execute_input says 1, as in a new kernel
    shell.custom_exceptions = ()  # notebook.setup's one-line interrupt handler, until it runs
    live = sys.modules.get("workbench.live")
    if live is not None:
        live.uninstall()  # notebook.setup installs the live view again
    package = sys.modules.get("workbench")
    for name, (_, attr) in getattr(package, "_NAMES", {}).items():
        # `wb.compare` is a function that a submodule of that name shadows once imported (by
        # the preload or the last notebook); a fresh kernel resolves it lazily: so does this one
        if attr is not None and isinstance(vars(package).get(name), types.ModuleType):
            delattr(package, name)
    os.environ.clear()
    os.environ.update(_KERNEL_ENV0)
    for key in gone:
        os.environ.pop(key, None)
    os.environ.update(changed)
    os.chdir(cwd)
    # Warnings already shown once (per location) would stay silent in the next notebook.
    mutated = getattr(warnings, "_filters_mutated", None)
    if mutated is not None:
        mutated()


_REGISTERED = False


@functools.cache
def local_kernel_manager() -> type:
    """Jupyter's async kernel manager on IPC sockets in Jupyter's runtime folder: a kernel on
    this machine needs no TCP port, and over TCP ipykernel warns in the user's terminal at every
    start that its traffic is unencrypted."""
    from jupyter_client.manager import AsyncKernelManager
    from jupyter_core.paths import jupyter_runtime_dir
    from traitlets import default

    class LocalKernelManager(AsyncKernelManager):
        @default("transport")
        def _transport_default(self) -> str:
            return "ipc"

        @default("ip")
        def _ip_default(self) -> str:
            # else "kernel-ipc-N" socket files in the notebook's folder
            folder = Path(jupyter_runtime_dir())
            folder.mkdir(parents=True, exist_ok=True)
            return str(folder / f"kernel-{uuid.uuid4().hex[:12]}")

    return LocalKernelManager


def _register_engine() -> None:
    """Papermill's nbclient engine on a given kernel, closing its client after each notebook."""
    global _REGISTERED
    if _REGISTERED:
        return
    from papermill.clientwrap import PapermillNotebookClient
    from papermill.engines import NBClientEngine, papermill_engines
    from papermill.log import logger
    from papermill.utils import merge_kwargs, remove_args

    class WarmEngine(NBClientEngine):
        @classmethod
        def execute_managed_notebook(
            cls,
            nb_man: Any,
            kernel_name: str,
            log_output: bool = False,
            stdout_file: Any = None,
            stderr_file: Any = None,
            start_timeout: int = 60,
            execution_timeout: int | None = None,
            **kwargs: Any,
        ) -> Any:
            # NBClientEngine's own body, except that the client's channels are closed at the end
            # (papermill leaves them open when the kernel is not its own).
            kwargs = remove_args(["input_path"], **kwargs)
            safe_kwargs = remove_args(["timeout", "startup_timeout"], **kwargs)
            final_kwargs = merge_kwargs(
                safe_kwargs,
                timeout=execution_timeout if execution_timeout else kwargs.get("timeout"),
                startup_timeout=start_timeout,
                kernel_name=kernel_name,
                log=logger,
                log_output=log_output,
                stdout_file=stdout_file,
                stderr_file=stderr_file,
            )
            client = PapermillNotebookClient(nb_man, **final_kwargs)
            # The executed notebook written once, by papermill's notebook_complete after this
            # returns or raises (a dead kernel's partial notebook too), not at every cell's start
            # and end: each write serializes and validates the whole notebook, figures included
            # (~0.3 CPU-s per quickstart point); nobody reads a point's temporary file midway.
            output_path, nb_man.output_path = nb_man.output_path, None
            try:
                return client.execute()
            finally:
                nb_man.output_path = output_path
                if client.kc is not None:
                    client.kc.stop_channels()

    papermill_engines.register(ENGINE, WarmEngine)
    _REGISTERED = True
