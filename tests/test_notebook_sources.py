"""The notebooks are their own source: edited in JupyterLab, committed without outputs, with cell
ids that stay put and a parameters cell papermill can override line by line."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import nbformat
import papermill
import pytest

from workbench.report import KERNEL_NAME

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
NAMES = sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb"))
CLEAR = "run `make format` to clear outputs"


def cells(name: str) -> list[dict]:
    return json.loads((NOTEBOOKS / f"{name}.ipynb").read_text())["cells"]


def test_the_folder_holds_notebooks_only() -> None:
    # nothing generates them: an edit made in Lab is the source
    others = sorted(p.name for p in NOTEBOOKS.iterdir() if p.suffix != ".ipynb")
    assert others == []
    assert len(NAMES) >= 7


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_valid_with_unique_ids_and_the_workbench_kernel(name: str) -> None:
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    nbformat.validate(nb)
    ids = [cell["id"] for cell in nb.cells]
    assert len(set(ids)) == len(ids), f"{name}: duplicate cell ids"
    assert nb.metadata["kernelspec"]["name"] == KERNEL_NAME


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_committed_without_outputs(name: str) -> None:
    for cell in cells(name):
        if cell["cell_type"] != "code":
            continue
        assert cell["outputs"] == [], f"{name} cell {cell['id']} has outputs: {CLEAR}"
        assert cell["execution_count"] is None, f"{name} cell {cell['id']}: {CLEAR}"
        assert "execution" not in cell["metadata"], f"{name} cell {cell['id']}: {CLEAR}"


@pytest.mark.parametrize("name", NAMES)
def test_every_parameter_line_is_one_papermill_can_override(name: str) -> None:
    code = [c for c in cells(name) if c["cell_type"] == "code"]
    tagged = [c for c in code if "parameters" in c["metadata"].get("tags", [])]
    assert len(tagged) == 1, f"{name}: one cell tagged 'parameters'"
    assert code[0]["id"] == tagged[0]["id"], f"{name}: the parameters cell comes first"
    assigned = [
        target.id
        for node in ast.parse("".join(tagged[0]["source"])).body
        for target in (node.targets if isinstance(node, ast.Assign) else [])
        if isinstance(target, ast.Name)
    ]
    # papermill skips a line it cannot parse (e.g. two '='): that parameter could not be set
    parsed = papermill.inspect_notebook(str(NOTEBOOKS / f"{name}.ipynb"))
    assert assigned and list(parsed) == assigned
    # the check right after the parameters is what stops a bad value before anything starts
    assert "import workbench as wb" in "".join(code[1]["source"])
