"""Warm kernel: notebook after notebook on one kernel, each executed exactly as a lone papermill run."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import nbformat
import psutil
import pytest

from workbench.kernel import WarmKernel
from workbench.report import ensure_kernel, execute

pytestmark = pytest.mark.slow  # the end-to-end tier: `make test-fast` skips it

CELLS = [
    "value = 0",
    "import os, sys, warnings\nleftover = globals().get('carried')\ncarried = value\nprint(leftover, value)",
    "warnings.warn('shown in every notebook', UserWarning)\nos.environ.get('WB_KERNEL_TEST_MARK')",
    "print(os.environ.get('WB_KERNEL_TEST_LEAK'), os.getcwd() == NOTEBOOK_DIR)\nos.environ['WB_KERNEL_TEST_LEAK'] = 'leaked'",
    "sorted(name for name in globals() if name.startswith('__'))",
    "value * 2",
]


def _notebook(folder: Path) -> Path:
    cells = [nbformat.v4.new_code_cell(source) for source in CELLS]
    cells[0].metadata["tags"] = ["parameters"]
    cells[1].source = f"NOTEBOOK_DIR = {str(folder.resolve())!r}\n" + cells[1].source
    spec = {"name": ensure_kernel(), "display_name": "workbench", "language": "python"}
    path = folder / "probe.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": spec}), path)
    return path


def normalized(path: Path) -> dict[str, Any]:
    """An executed notebook without what differs between any two runs (times, output paths, the
    kernel's pid in its cells' file names)."""
    nb = json.loads(re.sub(r"ipykernel_\d+", "ipykernel_PID", path.read_text()))
    for cell in nb["cells"]:
        cell.pop("id", None)
        cell["metadata"].get("papermill", {}).clear()
        cell["metadata"].pop("execution", None)
    paper = nb["metadata"]["papermill"]
    for key in ("start_time", "end_time", "duration", "output_path", "input_path"):
        paper.pop(key, None)
    return nb


def test_each_notebook_on_the_warm_kernel_is_what_a_lone_papermill_run_gives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, warm_kernel: WarmKernel
) -> None:
    """On the worker's warm kernel (tests/conftest.py), whatever ran on it before."""
    notebook = _notebook(tmp_path)
    monkeypatch.setenv("WB_KERNEL_TEST_MARK", "first")
    kernel = warm_kernel
    pid = kernel.km.provisioner.pid
    warm = [execute(notebook, parameters={"value": 1}, output=tmp_path / "w1.ipynb", log_output=False, kernel=kernel)]  # fmt: skip
    monkeypatch.setenv("WB_KERNEL_TEST_MARK", "second")
    warm.append(execute(notebook, parameters={"value": 2}, output=tmp_path / "w2.ipynb", log_output=False, kernel=kernel))  # fmt: skip
    assert kernel.km.provisioner.pid == pid  # one kernel for both
    lone = execute(notebook, parameters={"value": 2}, output=tmp_path / "lone.ipynb", log_output=False)  # fmt: skip
    assert normalized(warm[1]) == normalized(lone)
    texts = [json.dumps(normalized(w)) for w in warm]
    assert "None 1" in texts[0] and "None 2" in texts[1]  # nothing carried over
    assert "'first'" in texts[0] and "'second'" in texts[1]  # the environment of its own time
    assert "UserWarning: shown in every notebook" in texts[1]  # shown again
    assert "None True" in texts[1]  # the first notebook's os.environ change is gone
    counts = [c["execution_count"] for c in normalized(warm[1])["cells"]]
    assert counts == [1, 2, 3, 4, 5, 6, 7]  # parameters, injected parameters, the rest


def test_a_dead_warm_kernel_is_replaced_for_the_next_notebook(
    tmp_path: Path, warm_kernel: WarmKernel
) -> None:
    """The worker's warm kernel (tests/conftest.py) killed: its replacement serves the next tests."""
    notebook = _notebook(tmp_path)
    kernel = warm_kernel
    first = kernel.km.provisioner.pid
    os.kill(first, 9)
    psutil.Process(first).wait(10)  # as when the last notebook killed it
    out = execute(notebook, parameters={"value": 3}, output=tmp_path / "after.ipynb", log_output=False, kernel=kernel)  # fmt: skip
    assert kernel.km.provisioner.pid != first
    assert "None 3" in out.read_text()
