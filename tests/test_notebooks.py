"""The notebook set: each runs headless with small parameters, its report draws every chart offline,
and a bad parameter stops it in its first cell."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from workbench.browser import Browser
from workbench.experiment import Experiment
from workbench.kernel import WarmKernel
from workbench.report import RUN_NOTEBOOK, execute, parse_value, to_html
from workbench.stack import Stack
from workbench.store import Store

from .conftest import processes_under

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
SMALL = {"duration": "1", "warmup": "0.5", "users": "1000"}
# What the charts need, at the least CPU: open loops at a modest rate where the notebook offers
# one, capacity searches capped (the searches that break are test_capacity's and test_climb's),
# one-process services where the preset is free (gunicorn's two workers boot at ~2x the CPU).
CASES = {
    "02_pool_sizing": {
        **SMALL,
        "pool_sizes": "[5]",  # one point per worker count: a heatmap each
        "max_overflows": "[0]",
        "workers": "[1,2]",
        "connections": "8",
        "rate": "100",  # the limit demo stays a closed loop: its errors need 64 at once
    },
    "03_optimization_ladder": {
        **SMALL,
        "tolerance": "1",
        "repeats": "1",
        "start": "300",
        "limit": "300",  # one capacity step per ladder step
        "fixed_rate": "100",
        "steps": '["naive","+cache"]',
    },
    "04_capacity": {
        **SMALL,
        "preset": "naive",
        "tolerance": "1",
        "start": "150",
        "limit": "300",  # two steps: a curve
    },
    # closed loops (what the tuner maximizes), short and narrow
    "05_autotune": {**SMALL, "duration": "0.5", "warmup": "0.2", "trials": "2", "connections": "4"},
    "06_compare": {**SMALL, "connections": "8", "rate": "100"},
}
BAD = {
    "00_run": ("run_id", "nope"),
    "02_pool_sizing": ("pool_sizes", [0]),
    "03_optimization_ladder": ("steps", ["+turbo"]),
    "04_capacity": ("slo_p95_ms", -5),
    "05_autotune": ("trials", 0),
    "06_compare": ("preset_b", "fast"),
}


def plotly_outputs(executed: Path) -> int:
    cells = json.loads(executed.read_text())["cells"]
    return sum(
        "application/vnd.plotly.v1+json" in out.get("data", {})
        for c in cells
        for out in c.get("outputs", [])
    )


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, stack_root: Path) -> dict[str, str]:
    """An environment whose runs and reports go to a folder of their own."""
    folder = tmp_path_factory.mktemp("home")
    env = {
        **os.environ,
        "WORKBENCH_HOME": str(folder),
        "WORKBENCH_STACK_DIR": str(stack_root / "notebooks"),
    }
    for key in ("DATABASE_URL", "REDIS_URL", "UPSTREAM_URL"):
        env.pop(key, None)
    return env


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One Chromium for this module's reports (each start costs a CPU-second or more)."""
    with Browser() as running:
        yield running


@pytest.fixture
def warm(
    warm_kernel: WarmKernel, home: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> WarmKernel:
    """The worker's warm kernel (tests/conftest.py), reset before each notebook to what a fresh
    one would be (the sweeps' kernel: `workbench report` and test_report run papermill's own),
    with this module's environment (the kernel gets it at its reset)."""
    for key in ("WORKBENCH_HOME", "WORKBENCH_STACK_DIR"):
        monkeypatch.setenv(key, home[key])
    for key in ("DATABASE_URL", "REDIS_URL", "UPSTREAM_URL"):
        monkeypatch.delenv(key, raising=False)
    return warm_kernel


def left_running(root: Path, kernel: WarmKernel) -> set[str]:
    """What still runs for stacks under root besides the warm kernel (which goes on to the next
    notebook) and its multiprocessing resource tracker (which lives as long as it does)."""
    left = set()
    for pid in processes_under(root) - {kernel.km.provisioner.pid}:
        try:
            line = " ".join(psutil.Process(pid).cmdline())
        except psutil.Error:
            continue
        if "multiprocessing.resource_tracker" not in line:
            left.add(f"{pid}: {line[:200]}")
    return left


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CASES))
def test_notebook_runs_headless_and_its_report_draws_every_chart(
    name: str,
    home: dict[str, str],
    warm: WarmKernel,
    stack_root: Path,
    browser: Browser,
) -> None:
    parameters = {key: parse_value(value) for key, value in CASES[name].items()}
    try:
        executed = execute(
            NOTEBOOKS / f"{name}.ipynb", parameters=parameters, log_output=False, kernel=warm
        )
    finally:
        warm.stop_kept()  # what the kernel's exit does after a lone run
    assert executed == Path(home["WORKBENCH_HOME"]) / "data" / "reports" / f"{name}.ipynb"
    html = to_html(executed)
    figures = plotly_outputs(executed)
    assert figures >= 2
    assert browser.count_charts(html) == figures
    assert left_running(stack_root / "notebooks", warm) == set()


@pytest.mark.slow
def test_a_stored_run_renders_as_its_own_report(
    home: dict[str, str], stack: Stack, warm: WarmKernel, browser: Browser
) -> None:
    """00_run on a stored run, as `workbench report RUN_ID` renders it (on the warm kernel: the
    command itself, from an installed wheel, is test_package's)."""
    reports = Path(home["WORKBENCH_HOME"]) / "data" / "reports"
    store = Store(Path(home["WORKBENCH_HOME"]) / "data" / "runs")
    run = Experiment(connections=4, rate=100, duration=1, warmup=0.2).run(
        stack, store=store, progress=False
    )
    executed = execute(
        RUN_NOTEBOOK, parameters={"run_id": run.run_id}, output=reports / f"{run.run_id}.ipynb",
        log_output=False, kernel=warm,
    )  # fmt: skip
    html = to_html(executed)
    assert html == reports / f"{run.run_id}.html"
    assert browser.count_charts(html) == plotly_outputs(executed) == 5


def first_code_cell_error(name: str, key: str, value: object) -> BaseException | None:
    """Run a notebook's cells in-process as papermill would (parameters, then the injected
    value) up to its first code cell after the parameters; what that cell raised, or None."""
    import nbformat

    cells = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4).cells
    code = [c for c in cells if c.cell_type == "code"]
    at = next(i for i, c in enumerate(code) if "parameters" in c.metadata.get("tags", []))
    namespace: dict[str, object] = {}
    exec(compile(code[at].source, f"{name}:parameters", "exec"), namespace)
    namespace[key] = value  # papermill's injected-parameters cell
    try:
        exec(compile(code[at + 1].source, f"{name}:first", "exec"), namespace)
    except Exception as exc:
        assert "import workbench as wb" in code[at + 1].source
        return exc
    return None


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_parameter_is_refused_by_the_first_cell(name: str) -> None:
    from workbench._errors import InputError

    key, value = BAD[name]
    error = first_code_cell_error(name, key, value)
    assert isinstance(error, InputError), error
    assert f"{key}:" in str(error)


@pytest.mark.slow
def test_bad_parameter_stops_papermill_in_the_first_cell(tmp_path: Path, warm: WarmKernel) -> None:
    """Papermill on the warm kernel (its command line on a fresh kernel: test_report's case)."""
    import papermill

    key, value = BAD["02_pool_sizing"]
    out = tmp_path / "out.ipynb"
    with pytest.raises(papermill.PapermillExecutionError) as failed:
        execute(
            NOTEBOOKS / "02_pool_sizing.ipynb", parameters={key: value}, output=out,
            log_output=False, kernel=warm,
        )  # fmt: skip
    assert failed.value.ename == "InputError" and f"{key}:" in failed.value.evalue
    cells = json.loads(out.read_text())["cells"]
    assert "An Exception was encountered" in "".join(cells[0]["source"])
    failed_cells = [
        c for c in cells if any(o.get("output_type") == "error" for o in c.get("outputs", []))
    ]
    assert len(failed_cells) == 1 and "import workbench as wb" in "".join(failed_cells[0]["source"])
