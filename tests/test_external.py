"""ExternalExperiment against a FastAPI service started by the test, not by the workbench."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import plotly.graph_objects as go
import psutil
import pytest

from workbench import _process, plots
from workbench._errors import InputError
from workbench.external import ExternalExperiment
from workbench.store import Store

from .load_servers import free_port

ROOT = Path(__file__).resolve().parent.parent
RATE = 200.0


@pytest.fixture(scope="module")
def external() -> Iterator[str]:
    """uvicorn serving tests/external_app.py on a free loopback port; yields its base URL."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "tests.external_app:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(url + "/metrics", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, "the external app exited"
            assert time.monotonic() < deadline, "the external app did not start"
            time.sleep(0.1)
        yield url
    finally:
        _process.stop(proc)


@pytest.mark.slow
def test_external_run_is_stored_and_plotted_like_any_other(external: str, tmp_path: Path) -> None:
    store = Store(tmp_path / "runs")
    experiment = ExternalExperiment(
        target_url=external,
        metrics_url=external + "/metrics",
        path="/items/{id}",
        rate=RATE,
        duration=3,
        warmup=0.5,
        connections=8,
        processes=1,
        name="external-items",
        labels={"fleet": "test"},
    )
    result = experiment.run(store=store, progress=False)
    assert result.status == "finished"
    summary = result.summary()
    assert summary["target"] == "external"
    assert summary["target_url"] == external
    assert summary["fleet"] == "test"
    assert summary["errors"] == 0
    assert summary["throughput_rps"] == pytest.approx(RATE, rel=0.05)

    loaded = store.load(result.run_id)
    assert loaded.manifest["target"] == "external"
    assert loaded.manifest["settings"] == experiment.target()
    assert loaded.manifest["status"] == "finished"
    assert loaded.client["second"].tolist() == [0, 1, 2]
    # the monitor scraped the external /metrics and sampled no local process
    server = loaded.server
    assert "server_rps" in server
    assert server["server_rps"].dropna().median() == pytest.approx(RATE, rel=0.25)
    assert not any(c.endswith("_rss_mib") for c in server.columns)
    assert "machine_cpu_pct" not in server
    runs = store.runs()
    assert runs.loc[runs["run_id"] == result.run_id, "target"].item() == "external"

    figures = [
        plots.throughput_over_time(loaded),
        plots.latency_over_time(loaded),
        plots.percentile_spectrum({"external": loaded, "in memory": result}),
        plots.server_panels(loaded.server),
    ]
    for figure in figures:
        assert isinstance(figure, go.Figure)
    assert len(figures[0].data) >= 1 and len(figures[2].data) == 2


@pytest.mark.slow
def test_external_run_without_metrics_still_stores_the_client_side(
    external: str, tmp_path: Path
) -> None:
    store = Store(tmp_path / "runs")
    result = ExternalExperiment(
        target_url=external,
        path="/items/7",
        rate=50,
        duration=1,
        warmup=0,
        connections=2,
        processes=1,
    ).run(store=store, progress=False)
    loaded = store.load(result.run_id)
    assert loaded.summary()["requests"] == pytest.approx(50, abs=2)
    assert "server_rps" not in loaded.server


def test_non_loopback_targets_need_allow_remote() -> None:
    # refused before any traffic: 192.0.2.1 is a documentation address, never contacted
    with pytest.raises(InputError) as info:
        ExternalExperiment(target_url="http://192.0.2.1:8000", rate=10, duration=1).check()
    assert info.value.name == "url"
    with pytest.raises(InputError) as info:
        ExternalExperiment(
            target_url="http://127.0.0.1:8000", metrics_url="http://192.0.2.1:9100/metrics"
        ).check()
    assert info.value.name == "metrics_url"
    with pytest.raises(InputError) as info:
        ExternalExperiment(target_url="127.0.0.1:8000")
    assert info.value.name == "target_url"


@pytest.mark.slow
def test_external_run_generated_on_dask_records_the_workers(
    external: str, tmp_path: Path, dask_cluster: Any
) -> None:
    store = Store(tmp_path / "runs")
    cluster = dask_cluster
    result = ExternalExperiment(
        target_url=external,
        metrics_url=external + "/metrics",
        path="/items/{id}",
        rate=100,
        duration=2,
        warmup=0,
        connections=4,
        cluster=cluster,
    ).run(store=store, progress=False)
    workers = set(cluster.scheduler_info["workers"])
    loaded = store.load(result.run_id)
    assert set(loaded.manifest["generator"]["workers"]) == workers
    assert loaded.manifest["profile"]["cluster"] == cluster.scheduler_address
    assert loaded.summary()["generator_workers"] == 2
    assert loaded.summary()["clock_skew_ms"] is not None
    assert loaded.summary()["requests"] == pytest.approx(200, abs=3)


def _target_pid() -> int:
    """The pid of the external app this test module started (a child of this process)."""
    for child in psutil.Process().children():
        if "tests.external_app:app" in " ".join(child.cmdline()):
            return child.pid
    raise AssertionError("the external app is not running")


@pytest.mark.slow
def test_external_run_costs_what_it_can_see(external: str, tmp_path: Path) -> None:
    store = Store(tmp_path / "runs")
    options = {"target_url": external, "path": "/items/{id}", "rate": RATE, "duration": 1.5,
               "warmup": 0.5, "connections": 4, "processes": 1}  # fmt: skip
    blind = ExternalExperiment(**options).run(store=store, progress=False)  # type: ignore[arg-type]
    assert set(blind.cpu_ms_per_request()) == {"generator"}  # the service may run elsewhere
    seen = ExternalExperiment(**options, pids=(_target_pid(),)).run(store=store, progress=False)  # type: ignore[arg-type]
    ms = seen.cpu_ms_per_request()
    assert set(ms) == {"service", "generator", "server"}
    assert ms["service"] > 0 and ms["server"] == ms["service"]
    assert seen.projection(cores=8).rate_rps == pytest.approx(8000 / ms["service"])
    with pytest.raises(InputError, match="^pids: "):
        ExternalExperiment(target_url=external, pids=("1",))  # type: ignore[arg-type]


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["raw", "httpx"])
def test_connections_go_to_the_address_that_was_checked(
    external: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, transport: str
) -> None:
    """DNS rebinding: the name resolves to loopback when checked, elsewhere afterwards."""
    import socket
    import types

    import workbench.load._plan as engine

    port = int(external.rsplit(":", 1)[1])
    name = "rebind.test"
    real_getaddrinfo = socket.getaddrinfo
    asked_later: list[str] = []

    def at_check(host: str, *args: object, **kwargs: object) -> list[tuple]:  # type: ignore[type-arg]
        host = "127.0.0.1" if host == name else host
        return real_getaddrinfo(host, *args, **kwargs)  # type: ignore[arg-type]

    def afterwards(host: str, *args: object, **kwargs: object) -> list[tuple]:  # type: ignore[type-arg]
        if host == name:
            asked_later.append(host)
            host = "192.0.2.1"  # a documentation address: nothing answers there
        return real_getaddrinfo(host, *args, **kwargs)  # type: ignore[arg-type]

    # the loopback guard sees the first answer; every later lookup in this process the second
    # (load workers resolve with uvloop, which cannot find this made-up name at all)
    monkeypatch.setattr(
        engine,
        "socket",
        types.SimpleNamespace(getaddrinfo=at_check, SOCK_STREAM=socket.SOCK_STREAM),
    )
    monkeypatch.setattr(socket, "getaddrinfo", afterwards)
    store = Store(tmp_path / "runs")
    result = ExternalExperiment(
        target_url=f"http://{name}:{port}",
        metrics_url=f"http://{name}:{port}/metrics",
        path="/items/{id}",
        rate=100,
        duration=2,
        warmup=0.2,
        connections=4,
        processes=1,
        transport=transport,
    ).run(store=store, progress=False)
    summary = result.summary()
    assert summary["errors"] == 0 and summary["requests"] > 150
    assert "server_rps" in store.load(result.run_id).server  # the scrapes reached it too
    assert asked_later == []


def test_the_load_is_one_field_relative_to_the_target() -> None:
    from workbench.load import Load

    load = Load(path="/items/{id}", connections=4, rate=10, processes=1)
    experiment = ExternalExperiment("http://127.0.0.1:9", load=load)
    assert experiment == ExternalExperiment(
        "http://127.0.0.1:9", path="/items/{id}", connections=4, rate=10, processes=1
    )
    assert ExternalExperiment("http://127.0.0.1:9").load.path == "/"  # an external root by default
    plan = experiment.plan(progress=False)
    assert plan.url == "http://127.0.0.1:9/items/{id}" and plan.profile == load.profile()


def test_urls_with_a_password_are_stored_masked() -> None:
    experiment = ExternalExperiment(
        target_url="http://bench:S3CRET@127.0.0.1:8000",
        metrics_url="http://bench:S3CRET@127.0.0.1:9100/metrics",
    )
    assert "S3CRET" not in str(experiment.target())
    assert experiment.target()["target_url"] == "http://bench:***@127.0.0.1:8000"


EXTERNAL_RUN = """
from pathlib import Path
from workbench.external import ExternalExperiment
from workbench.store import Store

ExternalExperiment(
    target_url={url!r}, metrics_url={url!r} + "/metrics", path="/items/{{id}}", rate=100,
    duration=60, warmup=0, connections=4, processes=1, name="external-interrupted",
).run(store=Store(Path({store!r})), progress=True)
"""


@pytest.mark.slow
def test_external_run_interrupted_stores_its_partial_result(external: str, tmp_path: Path) -> None:
    """Like a bundled run: what was measured until Ctrl-C is stored, marked interrupted."""
    import os
    import re
    import signal

    store = tmp_path / "runs"
    code = EXTERNAL_RUN.format(url=external, store=str(store))
    proc = subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert proc.stdout is not None
    seen = []
    try:
        for line in proc.stdout:
            seen.append(line)
            if re.match(r"^\s+2\.0s\s", line):  # the second measured second
                break
        else:
            pytest.fail("the run ended before two seconds were measured:\n" + "".join(seen))
        os.killpg(proc.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0
    assert "LoadInterrupted" in out or "KeyboardInterrupt" in out, out[-2000:]
    ids = Store(store).ids()
    assert len(ids) == 1, ids
    run = Store(store).load(ids[0])
    summary = run.summary()
    assert run.status == "interrupted" and summary["status"] == "interrupted"
    assert summary["target"] == "external"
    assert summary["requests"] > 0 and summary["p99_ms"] > 0
    assert summary["load_duration"] == 60  # asked for
    assert 2 <= summary["measured_s"] < 10
    assert "server_rps" in run.server  # the target's /metrics was sampled until the interrupt
