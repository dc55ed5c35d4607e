"""Reports: a notebook executed headless with papermill, rendered into one self-contained HTML file."""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from workbench import _fs, _secrets
from workbench._errors import InputError
from workbench.kernel import ENGINE, WarmKernel, local_kernel_manager
from workbench.paths import notebooks_dir, reports_dir

KERNEL_NAME = "fastapi-workbench"
NOTEBOOK_ENV = "WORKBENCH_NOTEBOOK"
RUN_NOTEBOOK = "00_run"
TEMPLATES = Path(__file__).parent / "templates"


def ensure_kernel() -> str:
    """Install this environment's Jupyter kernel (once) and return its name."""
    _runtime_dir()
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(KERNEL_NAME)
        if Path(spec.argv[0]).resolve() == Path(sys.executable).resolve():
            return KERNEL_NAME
    except NoSuchKernel:
        pass
    from ipykernel.kernelspec import install

    install(kernel_name=KERNEL_NAME, display_name="Python (FastAPI workbench)", prefix=sys.prefix)
    return KERNEL_NAME


def _runtime_dir() -> None:
    # Jupyter warns in every cell output when XDG_RUNTIME_DIR is unset (as under CI and cron).
    if "XDG_RUNTIME_DIR" not in os.environ:
        # a predictable name in a shared folder: ours, 0700, or refused
        path = _fs.private_dir(Path(tempfile.gettempdir()) / f"runtime-{os.getuid()}")
        os.environ["XDG_RUNTIME_DIR"] = str(path)


def find_notebook(name: str | Path) -> Path:
    """A notebook by path or by name in notebooks/ (with or without .ipynb)."""
    candidates = [Path(name), notebooks_dir() / Path(name).name]
    candidates += [c.with_suffix(".ipynb") for c in list(candidates) if c.suffix != ".ipynb"]
    for path in candidates:
        if path.is_file():
            return path
    known = ", ".join(sorted(p.stem for p in notebooks_dir().glob("*.ipynb")))
    raise InputError("notebook", f"no notebook {str(name)!r}; known notebooks: {known}")


def parse_value(text: str) -> Any:
    """A -p value from the command line: JSON when it parses (numbers, true, {...}), else the text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def execute(
    notebook: str | Path,
    *,
    parameters: Mapping[str, Any] | None = None,
    output: Path | None = None,
    log_output: bool = True,
    kernel: WarmKernel | None = None,
) -> Path:
    """Run a notebook headless with papermill; the executed copy goes to data/reports/.

    URL parameters with a password reach the notebook masked (user:***@) and its Stack gets the
    real URL from the environment (_secrets.reveal): no password is written into the notebook.
    On a warm kernel (sweeps), the kernel is reset first to what a fresh one would be.
    """
    import papermill

    from workbench.live import LINES_ENV

    source = find_notebook(notebook)
    output = output or reports_dir() / source.name
    output.parent.mkdir(parents=True, exist_ok=True)
    # a new file, never the old one rewritten: an earlier run's folder may hold it (a hard link)
    output.unlink(missing_ok=True)
    if log_output:
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    kernel_name = kernel.kernel_name if kernel is not None else ensure_kernel()
    # Runs made by this execution record the notebook (the kernel inherits the environment),
    # and get a copy of it in their folder once it is written.
    previous = {key: os.environ.get(key) for key in (NOTEBOOK_ENV, _secrets.REVEAL_ENV, LINES_ENV)}
    os.environ[NOTEBOOK_ENV] = str(output.resolve())
    # the loads' per-second lines: in the terminal beside papermill's log, or (sweeps) nowhere
    os.environ[LINES_ENV] = "log" if log_output else "off"
    shown, real = _secrets.hide(dict(parameters or {}))
    if real:
        known = json.loads(previous[_secrets.REVEAL_ENV] or "{}")
        os.environ[_secrets.REVEAL_ENV] = json.dumps({**known, **real})
    engine: dict[str, Any] = {"kernel_manager_class": local_kernel_manager()}
    try:
        if kernel is not None:
            kernel.reset(cwd=source.parent)  # after the environment above is set: it gets it
            engine = {"engine_name": ENGINE, "km": kernel.km}
        papermill.execute_notebook(
            str(source),
            str(output),
            parameters=shown,
            kernel_name=kernel_name,
            log_output=log_output,
            progress_bar=False,
            cwd=str(source.parent),
            **engine,
        )
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        _scrub(output, [p for url in real.values() if (p := _secrets.password_of(url))])
        _attach_to_runs(output)
    return output


def _scrub(executed: Path, passwords: list[str]) -> None:
    """Mask, in an executed notebook, URL passwords and the given ones its cells may have printed."""
    try:
        text = executed.read_text()
    except OSError:
        return
    clean = _secrets.mask_text(text)
    for password in passwords:
        clean = clean.replace(password, _secrets.MASK)
    if clean != text:
        tmp = executed.with_name(f".{executed.name}.scrub.tmp")
        tmp.write_text(clean)
        tmp.replace(executed)


def _attach_to_runs(executed: Path) -> None:
    """Give the folder of every run an executed notebook made its notebook.ipynb (one copy on disk).

    A hard link where the file system allows it: a sweep's folder and the run's folder share one
    copy, and each keeps it when the other is deleted; writers replace the file, never rewrite it.
    """
    import shutil

    from workbench.store import Store

    store = Store()
    for run_id in store.ids()[-200:]:
        manifest = store.path(run_id) / "manifest.json"
        try:
            if json.loads(manifest.read_text()).get("notebook") == str(executed.resolve()):
                target = store.path(run_id) / "notebook.ipynb"
                target.unlink(missing_ok=True)
                try:
                    os.link(executed, target)
                except OSError:  # another file system, or no hard links there
                    shutil.copyfile(executed, target)
        except (OSError, ValueError):
            continue


def to_html(executed: str | Path, *, output: Path | None = None, no_input: bool = False) -> Path:
    """Render an executed notebook into one self-contained HTML file (plotly.js inside)."""
    import nbformat
    from nbconvert import HTMLExporter

    executed = Path(executed)
    output = output or reports_dir() / (executed.stem + ".html")
    exporter = HTMLExporter(
        template_name="offline",
        extra_template_basedirs=[str(TEMPLATES)],
        exclude_input=no_input,
    )
    import plotly.offline

    # plotly.js once, in the page's head: executed notebooks no longer carry it (notebook.setup)
    resources = {"plotly_js": plotly.offline.get_plotlyjs()}
    body, _ = exporter.from_notebook_node(
        nbformat.read(executed, as_version=4), resources=resources
    )
    tmp = output.with_suffix(".html.tmp")
    tmp.write_text(body, encoding="utf-8")
    tmp.replace(output)
    return output
