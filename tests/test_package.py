"""The workbench as an installed tool: a wheel carries the notebooks, and from an empty folder
`workbench init` makes a working folder where demo, report, sweep and lab run.

The wheel goes into a fresh venv without its dependencies (--no-deps); a .pth file and links to
their data files (Lab's assets, nbconvert's templates) lend it this environment's installed ones,
so nothing is downloaded."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
import urllib.request
import zipfile
from pathlib import Path

import psutil
import pytest

from workbench._net import free_port
from workbench.stack import Stack

from .conftest import TEST_USERS

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))
SOURCES = (
    "pyproject.toml",
    "README.md",
    "service",
    "workbench",
    "notebooks",
)


def run(argv: list[str | Path], **kwargs: object) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, check=False, **kwargs
    )  # type: ignore[call-overload]
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done


def copy_sources(source: Path) -> Path:
    """A copy of the project's sources in source (builds leave the checkout clean); source."""
    for name in SOURCES:
        if (ROOT / name).is_dir():  # workbench/notebooks, a link to notebooks/, copied as files
            shutil.copytree(
                ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            shutil.copy(ROOT / name, source / name)
    return source


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's wheel, built from a copy of its sources."""
    source = copy_sources(tmp_path_factory.mktemp("source"))
    dist = tmp_path_factory.mktemp("dist")
    # the build backend itself, as pip's `wheel --no-build-isolation` calls it, without pip
    build = [sys.executable, "-c", "import sys; from setuptools import build_meta; "
             "print(build_meta.build_wheel(sys.argv[1]))", dist]  # fmt: skip
    name = run(build, cwd=source).stdout.strip().splitlines()[-1]
    return dist / name


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel installed; its bin/ folder."""
    folder = tmp_path_factory.mktemp("venv")
    # no pip of its own (ensurepip takes seconds): this environment's pip installs into it
    run([sys.executable, "-m", "venv", "--without-pip", folder])
    python = folder / "bin" / "python"
    purelib = run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"])
    # appended after the venv's own site-packages: the wheel's workbench comes first
    Path(purelib.stdout.strip(), "borrowed-deps.pth").write_text(sysconfig.get_path("purelib"))
    # the data files those packages install (Lab's assets, nbconvert's templates), not kernels
    data = Path(sysconfig.get_path("data"))
    for kind in ("share/jupyter", "etc/jupyter"):
        (folder / kind).mkdir(parents=True, exist_ok=True)
        for item in (data / kind).iterdir():
            if item.name != "kernels":
                (folder / kind / item.name).symlink_to(item)
    run([sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps",
         "--no-index", wheel])  # fmt: skip
    return folder / "bin"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """An empty folder outside the checkout."""
    empty = tmp_path / "work"
    empty.mkdir()
    return empty


def env_for(stack: Stack) -> dict[str, str]:
    """The environment of a user's shell, attached to the session's stack (no WORKBENCH_HOME)."""
    env = {k: v for k, v in os.environ.items() if k not in ("WORKBENCH_HOME", "VIRTUAL_ENV")}
    return {**env, "DATABASE_URL": stack.url, "REDIS_URL": str(stack.redis),
            "UPSTREAM_URL": str(stack.upstream_url)}  # fmt: skip


def test_the_wheel_carries_every_notebook_and_template(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert (
        sorted(n.split("/")[-1] for n in names if n.startswith("workbench/notebooks/")) == NOTEBOOKS
    )
    assert "workbench/templates/offline/index.html.j2" in names


def test_an_editable_install_is_a_path_line_built_without_a_banner(tmp_path: Path) -> None:
    (source := tmp_path / "source").mkdir()
    copy_sources(source)
    build = [sys.executable, "-c", "from setuptools import build_meta; "
             "print(build_meta.build_editable('dist'))"]  # fmt: skip
    done = run(build, cwd=source)
    # setuptools' import-finder strategy ends with an "Editable installation." banner on stderr
    assert "Editable installation" not in done.stderr and "Warning" not in done.stderr
    editable = zipfile.ZipFile(source / "dist" / done.stdout.strip().splitlines()[-1])
    (pth,) = [n for n in editable.namelist() if n.endswith(".pth")]
    assert editable.read(pth).decode().strip() == str(source)  # the checkout on sys.path


def test_demo_from_an_empty_folder_then_init_report_and_sweep_there(
    venv: Path, folder: Path, stack: Stack
) -> None:
    env = env_for(stack)
    where = run([venv / "python", "-c", "import workbench; print(workbench.__file__)"], cwd=folder)
    assert where.stdout.startswith(str(venv.parent))  # the installed copy, not the checkout
    # one uvicorn worker (naive), and the sweep's point an open loop at a modest rate: the
    # installed tool is tested here, not gunicorn nor a saturated machine
    demo = run([venv / "workbench", "demo", "--duration", "1", "--users", str(TEST_USERS),
                "--preset", "naive"], cwd=folder, env=env, timeout=600)  # fmt: skip
    html = Path(demo.stdout.strip().splitlines()[-1])
    assert html == folder / "data" / "reports" / "01_quickstart.html" and html.stat().st_size > 0
    # the kernel ran the shipped notebook in site-packages, and stored its run here
    (run_id,) = [p.name for p in (folder / "data" / "runs").iterdir() if p.is_dir()]
    assert not list(Path(where.stdout.strip()).parent.rglob("data"))  # nothing in the package
    init = run([venv / "workbench", "init"], cwd=folder, env=env)
    assert "next: cd" in init.stdout
    assert sorted(p.name for p in (folder / "notebooks").iterdir()) == NOTEBOOKS
    report = run([venv / "workbench", "report", run_id], cwd=folder, env=env, timeout=600)
    assert Path(report.stdout.strip().splitlines()[-1]) == html.with_name(f"{run_id}.html")
    edited = folder / "notebooks" / "01_quickstart.ipynb"  # the working folder's copy runs
    edited.write_text(edited.read_text().replace("# Quickstart", "# Edited quickstart"))
    sweep = run([venv / "workbench", "sweep", "01_quickstart", "-p", "duration", "1",
                 "-p", "preset", "naive", "-p", "rate", "50", "--users", str(TEST_USERS)],
                cwd=folder, env=env, timeout=600)  # fmt: skip
    assert "1 finished points" in sweep.stdout
    (swept,) = (folder / "data" / "sweeps").iterdir()
    (executed,) = swept.glob("*.ipynb")
    assert "# Edited quickstart" in executed.read_text()
    assert len([p for p in (folder / "data" / "runs").iterdir() if p.is_dir()]) == 2


def test_init_keeps_edited_notebooks_unless_forced(venv: Path, folder: Path) -> None:
    run([venv / "workbench", "init", folder / "w"])
    edited = folder / "w" / "notebooks" / "01_quickstart.ipynb"
    edited.write_text(edited.read_text().replace("Quickstart", "My quickstart"))
    again = run([venv / "workbench", "init", folder / "w"])
    assert "kept as they were" in again.stdout and "My quickstart" in edited.read_text()
    run([venv / "workbench", "init", "--force", folder / "w"])
    assert "My quickstart" not in edited.read_text()
    (folder / "file").write_text("")
    bad = subprocess.run([venv / "workbench", "init", folder / "file"], capture_output=True,
                         text=True, check=False)  # fmt: skip
    assert bad.returncode == 2 and bad.stderr.startswith("error: dir: ")


def test_lab_serves_the_working_folder_with_the_workbench_kernel(venv: Path, folder: Path) -> None:
    empty = subprocess.run([venv / "workbench", "lab", "--no-browser"], cwd=folder,
                           capture_output=True, text=True, check=False)  # fmt: skip
    assert empty.returncode == 2 and "workbench init" in empty.stderr  # nothing to edit yet
    run([venv / "workbench", "init"], cwd=folder)
    port, token = free_port(), "t0ken"
    env = {**os.environ, "JUPYTER_TOKEN": token}
    lab = subprocess.Popen([venv / "workbench", "lab", "--no-browser", "--port", str(port)],
                           cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        contents = None
        deadline = time.monotonic() + 90
        while contents is None and time.monotonic() < deadline and lab.poll() is None:
            try:
                with urllib.request.urlopen(f"{base}/api/contents?token={token}", timeout=5) as r:
                    contents = json.load(r)
            except OSError:
                time.sleep(0.5)
        assert contents is not None, "JupyterLab did not answer"
        assert sorted(item["name"] for item in contents["content"]) == NOTEBOOKS
        with urllib.request.urlopen(f"{base}/api/kernelspecs?token={token}", timeout=5) as r:
            spec = json.load(r)["kernelspecs"]["fastapi-workbench"]["spec"]
        assert spec["argv"][0].startswith(str(venv.parent))  # the installed tool's kernel
        with urllib.request.urlopen(f"{base}/lab?token={token}", timeout=10) as r:
            assert r.status == 200
        family = psutil.Process(lab.pid).children(recursive=True)
    finally:
        lab.terminate()  # Lab itself (workbench lab exec'd it): it stops cleanly
        lab.wait(timeout=30)
    assert not [p for p in family if p.is_running()]
