"""Recording: how a run ended becomes its stored status, the same for bundled and external runs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from workbench.load import LoadFailed, LoadInterrupted
from workbench.recording import Recording
from workbench.run import RunStatus
from workbench.store import Store


def _record(tmp_path: Path) -> Recording:
    return Recording(
        "r1", Store(tmp_path), name="n", labels={"a": 1}, settings={"target": "t"},
        profile={"path": "/"},
    )  # fmt: skip


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (LoadInterrupted(None), RunStatus.INTERRUPTED),
        (KeyboardInterrupt(), RunStatus.INTERRUPTED),
        (LoadFailed("load worker 0 died", None), RunStatus.CRASHED),
        (RuntimeError("anything else"), RunStatus.CRASHED),
    ],
)
def test_how_the_load_ended_is_the_stored_status(
    tmp_path: Path, error: BaseException, status: RunStatus
) -> None:
    record = _record(tmp_path)
    assert Store(tmp_path).runs(unfinished=True)["status"].tolist() == ["running"]  # begun first
    with pytest.raises(type(error)), record.outcome():
        raise error
    record.save(pd.DataFrame(), settings=None)
    stored = Store(tmp_path).load("r1")
    assert stored.status == status and stored.summary()["a"] == 1
    if isinstance(error, LoadFailed):
        assert stored.manifest["load_failure"] == "load worker 0 died"


def test_a_finished_block_is_a_finished_run(tmp_path: Path) -> None:
    record = _record(tmp_path)
    with record.outcome():
        pass
    result = record.save(pd.DataFrame(), settings=None)
    assert result.status == RunStatus.FINISHED
    assert Store(tmp_path).load("r1").manifest["timings"] == {}
