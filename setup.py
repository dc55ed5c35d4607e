"""The build step pyproject.toml cannot declare: notebooks/ ships inside the wheel as workbench/notebooks."""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

NOTEBOOKS = Path(__file__).resolve().parent / "notebooks"


class BuildWithNotebooks(build_py):
    """build_py that also copies the top-level notebooks/*.ipynb into the built workbench package."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:  # an editable install finds them in the checkout (workbench.paths)
            return
        target = Path(self.build_lib) / "workbench" / "notebooks"
        target.mkdir(parents=True, exist_ok=True)
        for notebook in sorted(NOTEBOOKS.glob("*.ipynb")):
            shutil.copyfile(notebook, target / notebook.name)


setup(cmdclass={"build_py": BuildWithNotebooks})
