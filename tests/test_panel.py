"""The panel: its Run button measures what the widgets say, stores the run and adds a row to the
comparison (settings against naive, metrics with 95% CIs); under papermill it shows nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.settings import ServiceSettings
from workbench.experiment import Experiment
from workbench.kernel import WarmKernel
from workbench.notebook import KeptSession
from workbench.panel import Panel, comparison, settings_diff
from workbench.params import check_params
from workbench.stack import Stack
from workbench.store import Store

from ._kernel import warm

WIDGET = "application/vnd.jupyter.widget-view+json"


def test_settings_diff_names_what_differs_from_naive() -> None:
    assert settings_diff(ServiceSettings.naive()) == "naive"
    assert settings_diff(ServiceSettings.naive().replace(pool_size=20)) == "pool_size=20"
    assert settings_diff({**ServiceSettings.naive().to_dict(), "workers": 2}) == "workers=2"


@pytest.mark.slow
def test_the_run_button_stores_a_run_and_adds_a_row_to_the_comparison(
    stack: Stack, tmp_path: Path
) -> None:
    store = Store(tmp_path)
    first = Experiment(
        settings=ServiceSettings.naive(), connections=4, rate=100, duration=1, warmup=0.2
    ).run(stack, store=store, progress=False)
    params = check_params(
        duration=1, warmup=0.2, connections=4, rate=100, users=stack.users, preset="naive"
    )  # an open loop at a modest rate: the panel's runs need no saturated service
    session = KeptSession()
    panel = Panel(
        params, preset="naive", runs=[first], stack=lambda: stack, session=session, store=store
    )
    panel.preset.value = "optimized"  # the knobs follow the preset...
    assert panel.knobs["cache"].value is True and panel.knobs["serializer"].value == "orjson"
    panel.preset.value = "naive"
    panel.knobs["pool_size"].value = 7  # ...and can be turned
    panel.knobs["batcher"].value = True
    panel.button.click()
    assert "stored as" in panel.status.value, panel.status.value
    assert len(panel.runs) == 2 and not panel.button.disabled
    run = store.load(panel.runs[-1].run_id)
    assert run.status == "finished"
    assert run.manifest["settings"]["pool_size"] == 7 and run.manifest["settings"]["batcher"]
    assert run.manifest["profile"]["connections"] == 4
    table = panel.comparison()
    assert list(table.index) == ["#1", "#2"]
    assert table["settings vs naive"].tolist() == ["naive", "pool_size=7, batcher=True"]
    for metric in ("throughput_rps", "p95_ms"):
        assert (table[f"{metric}_low"] <= table[metric]).all()
        assert (table[metric] <= table[f"{metric}_high"]).all()
    assert table.equals(comparison(panel.runs))
    assert table["service"].tolist() == ["new", "new"]
    with session:
        panel.button.click()  # the same knobs: the kept service, warm
        panel.fresh.value = True
        panel.button.click()  # a fresh one asked for
    assert panel.comparison()["service"].tolist()[2:] == ["kept (warm, run 2 on it)", "new"]


@pytest.mark.slow
def test_the_panel_shows_in_jupyterlab_and_not_under_papermill(warm_kernel: WarmKernel) -> None:
    code = """
import workbench as wb
params = wb.check_params(duration=1, connections=4)
shown = wb.panel(params, preset="optimized")
shown
"""
    with warm(warm_kernel, watched=True) as k:
        cell = k.run(code)
    assert cell.reply["status"] == "ok", cell.reply
    assert any(WIDGET in m["content"]["data"] for _, m in cell.of("execute_result", "display_data"))
    with warm(warm_kernel, watched=False) as k:
        cell = k.run(code + "\nprint(shown)")
    assert cell.reply["status"] == "ok", cell.reply
    assert not cell.of("execute_result", "display_data")
    assert cell.text().strip() == "None"
