"""Load engine against real loopback servers: corrected latency, saturation, errors, processes."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from workbench import hdr as hist
from workbench._errors import InputError
from workbench.load import (
    ERROR_CLASSES,
    Cause,
    Endpoint,
    Generators,
    LoadPlan,
    Scenario,
    WarmupEnd,
    progress,
    run_load,
)
from workbench.load._warmup import (
    STEADY_MIN_RESPONSES,
    STEADY_WINDOWS,
    WARM_WINDOW_S,
    SteadyWarmup,
)
from workbench.stack import Stack

from .conftest import TEST_USERS, descendants
from .load_servers import Behaviour, fast_server, free_port, serve, third_party


@pytest.fixture
def one_worker() -> Iterator[Generators]:
    """One load worker, started now, for the runs of a test (each run spares a worker's start)."""
    with Generators() as generators:
        yield generators.prepare(1)


@pytest.mark.window
@pytest.mark.slow
def test_stall_corrected_latency_matches_the_stall_and_service_time_does_not(
    one_worker: Generators,
) -> None:
    rate, duration, stall = 200.0, 2.0, 0.5
    with serve(Behaviour(stall_at=0.3, stall_for=stall)) as (url, _):
        result = run_load(
            url + "/",
            rate=rate,
            duration=duration,
            warmup=0,
            connections=4,
            processes=1,
            progress=False,
            generators=one_worker,
        )
    lat = result.percentiles_ms("latency")
    svc = result.percentiles_ms("service")
    # requests intended during the stall wait until it ends: latencies uniform on (0, stall];
    # the fraction q above x is (stall - x) / duration, so x = stall - q * duration
    expected_p99 = 1000 * (stall - 0.01 * duration)
    expected_p95 = 1000 * (stall - 0.05 * duration)
    assert lat["p99"] == pytest.approx(expected_p99, abs=40)
    assert lat["p95"] == pytest.approx(expected_p95, abs=40)
    # only the 4 requests in flight saw the stall from their actual send
    assert svc["p95"] < 50
    assert svc["p99"] < 100
    assert result.requests == pytest.approx(rate * duration, rel=0.03)
    series = result.series()
    assert series["second"].tolist() == [0, 1]
    assert series["p99_ms"].iloc[0] > 300  # the stall shows in its own second
    assert series["p99_ms"].iloc[1] < 50
    assert result.connections_used == 4

    # 3 s: the 4 requests that saw the stall stay well under 1% of the closed loop's requests
    with serve(Behaviour(stall_at=1.0, stall_for=stall)) as (url, _):
        closed = run_load(
            url + "/",
            duration=3.0,
            warmup=0,
            connections=4,
            think_time=0.01,
            processes=1,
            progress=False,
            generators=one_worker,
        )
    closed_lat = closed.percentiles_ms("latency")
    assert closed.asked_rate is None
    assert closed_lat["max"] >= 400  # the stall was there ...
    assert closed_lat["p99"] < 100  # ... but a closed loop hides it in the percentiles
    assert lat["p99"] > 4 * closed_lat["p99"]


@pytest.mark.slow
def test_answers_in_the_drain_count_in_the_last_seconds_latency_and_the_runs(
    generators: Generators,
) -> None:
    seconds: list[progress.Second] = []

    def hear(event: object) -> bool:
        if isinstance(event, progress.Second):
            seconds.append(event)
        return False

    # the last 0.2 s of the window stall until 0.3 s after it: those answers come in the drain
    with serve(Behaviour(stall_at=1.8, stall_for=0.5)) as (url, _), progress.listening(hear):
        result = run_load(
            url + "/", rate=200, duration=2, warmup=0, connections=64, processes=1,
            progress=False, generators=generators,
        )  # fmt: skip
    assert result.late >= 30  # intended in the window, answered after it
    series = result.series()
    assert series["p99_ms"].iloc[-1] > 250  # ...and in its last second's latencies
    assert series["p99_ms"].iloc[0] < 50
    assert [s.index for s in seconds] == [0, 1]
    assert seconds[0].so_far["p99_ms"] == seconds[0].row["p99_ms"]
    # the last event states the run's numbers: what its summary says
    assert seconds[-1].so_far["p99_ms"] == result.percentiles_ms("latency")["p99"]
    assert seconds[-1].so_far["rate"] == result.throughput_rps
    assert seconds[-1].so_far["measured_s"] == 2


@pytest.mark.slow
def test_slow_server_with_low_connection_cap_is_flagged_saturated(generators: Generators) -> None:
    with serve(Behaviour(delay=0.1)) as (url, _):
        result = run_load(
            url + "/slow",
            rate=100,
            duration=1.5,
            warmup=0,
            connections=2,
            processes=1,
            timeout=0.5,
            progress=False,
            generators=generators,
        )
    assert result.generator_saturated
    assert result.saturation_reason and "connections were busy" in result.saturation_reason
    assert "send lag" in result.saturation_reason
    assert {Cause.CONNECTIONS_BUSY, Cause.SEND_LAG} <= set(result.saturation_causes)
    assert result.summary()["throughput_rps"] < 25
    assert result.connections_used == 2


@pytest.mark.slow
def test_rate_beyond_the_generator_is_flagged_saturated(generators: Generators) -> None:
    with serve() as (url, _):
        result = run_load(
            url + "/",
            rate=300_000,
            duration=1.0,
            warmup=0,
            connections=16,
            processes=1,
            timeout=0.5,
            progress=False,
            generators=generators,
        )
    assert result.generator_saturated
    assert result.saturation_reason and "asked requests" in result.saturation_reason
    assert Cause.RATE_SHORT in result.saturation_causes
    assert result.throughput_rps < 0.95 * 300_000


@pytest.mark.slow
def test_error_classes_are_counted(generators: Generators) -> None:
    scenario = Scenario(
        endpoints=(
            Endpoint("/status/404"),
            Endpoint("/status/503"),
            Endpoint("/close"),
            Endpoint("/reset"),
            Endpoint("/hang"),
            Endpoint("/"),
        )
    )
    with serve() as (url, behaviour):
        result = run_load(
            url,
            rate=100,
            duration=1.5,
            warmup=0,
            connections=64,
            scenario=scenario,
            timeout=0.3,
            processes=1,
            progress=False,
            generators=generators,
        )
    classes = result.error_classes
    assert classes["status_4xx"] > 5
    assert classes["status_5xx"] > 5
    assert classes["reset"] > 5  # /close and /reset
    assert classes["timeout"] > 5
    assert classes["other"] == 0
    assert result.errors == sum(classes.values())
    series = result.series()
    for column in ("status_4xx", "status_5xx", "reset", "timeout"):
        assert series[column].sum() == classes[column]

    refused = run_load(
        f"http://127.0.0.1:{free_port()}/",
        rate=50,
        duration=1.0,
        warmup=0,
        connections=4,
        processes=1,
        progress=False,
        generators=generators,
    )
    assert refused.error_classes["connect"] > 0
    assert refused.completed == 0
    assert refused.series()["second"].tolist() == [0]  # one row per second, drain included
    assert not refused.generator_saturated  # refused connections are the server's doing


@pytest.mark.slow
def test_two_processes_merge_counts_and_histograms() -> None:
    before = descendants()
    with serve() as (url, behaviour):
        result = run_load(
            url + "/",
            rate=400,
            duration=1.5,
            warmup=0.5,
            connections=8,
            processes=2,
            arrival="poisson",
            progress=False,
        )
    assert result.processes == 2
    assert len(result.worker_requests) == 2
    assert all(n > 0 for n in result.worker_requests)
    assert sum(result.worker_requests) == result.requests
    assert hist.decode(result.hdr_latency).get_total_count() == result.completed + result.late
    assert result.series()["completed"].sum() == result.completed
    assert result.requests == pytest.approx(600, rel=0.2)
    assert behaviour.requests >= result.requests  # warm-up requests reach the server too
    assert result.connections_used <= 8
    assert descendants() <= before


@pytest.mark.slow
def test_pooled_generators_serve_run_after_run_and_stop_on_close() -> None:
    before = descendants()
    with serve() as (url, _), Generators() as pool:
        pool.prepare(2)  # starts them in the background
        pids = {p.pid for p in pool._procs}
        assert set(pool.pids()) == pids  # what a monitor accounts the generator's CPU to
        lent, pipes = pool.take(1)
        assert set(pool.pids()) == pids and len(pool) == 1  # a lent worker is still ours
        pool.give_back(lent, pipes)
        first = run_load(url + "/", duration=0.5, warmup=0, connections=4, processes=2,
                         progress=False, generators=pool)  # fmt: skip
        assert len(pool) == 2 and {p.pid for p in pool._procs} == pids  # given back, idle
        second = run_load(url + "/", duration=0.5, warmup=0, connections=2, processes=1,
                          progress=False, generators=pool)  # fmt: skip
        assert len(pool) == 2 and {p.pid for p in pool._procs} == pids  # the same processes
        assert first.requests > 0 and second.requests > 0
        assert first.processes == 2 and second.processes == 1
    assert pool.pids() == []
    assert descendants() <= before


@pytest.mark.slow
def test_closed_loop_from_inside_a_running_event_loop() -> None:
    before = descendants()

    async def inside() -> int:
        with serve() as (url, _):
            return run_load(
                url + "/", duration=1.0, warmup=0, connections=2, think_time=0.01, progress=False
            ).requests

    assert asyncio.run(inside()) > 50
    assert descendants() <= before


@pytest.mark.slow
def test_httpx_transport_runs(capsys: pytest.CaptureFixture[str], generators: Generators) -> None:
    with serve() as (url, _):
        result = run_load(
            url + "/", rate=100, duration=1.0, warmup=0, connections=4, transport="httpx",
            generators=generators,
        )  # fmt: skip
    assert result.transport == "httpx"
    assert result.completed == pytest.approx(100, rel=0.1)
    assert result.errors == 0
    out = capsys.readouterr().out
    assert "ceiling" not in out  # its limit is measured (generator busy), not assumed
    assert "req/s" in out  # progress lines


def test_remote_target_is_refused_without_allow_remote() -> None:
    with pytest.raises(InputError) as info:
        run_load("http://192.0.2.10:8000/", duration=1, progress=False)
    assert info.value.name == "url"
    assert "allow_remote" in str(info.value)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("connections", 0),
        ("duration", -1),
        ("rate", 0),
        ("arrival", "bursty"),
        ("warmup", -1),
        ("processes", 0),
        ("timeout", 0),
        ("transport", "curl"),
        ("think_time", -0.5),
        ("stages", [(1, -5)]),
    ],
)
def test_bad_options_name_the_parameter(option: str, value: object) -> None:
    with pytest.raises(InputError) as info:
        run_load("http://127.0.0.1:1/", progress=False, **{option: value})  # type: ignore[arg-type]
    assert option in info.value.name


@pytest.mark.slow
def test_stages_ramp_offered_rate(generators: Generators) -> None:
    with serve() as (url, _):
        result = run_load(
            url + "/",
            stages=[(1.0, 100), (1.0, 300)],
            warmup=0,
            connections=16,
            processes=1,
            progress=False,
            generators=generators,
        )
    series = result.series()
    assert result.duration_s == 2.0
    assert result.asked_rate == pytest.approx(125)  # areas 50 + 200 over 2 s
    assert series["sent"].iloc[1] > 2 * series["sent"].iloc[0]


@pytest.mark.slow
def test_runs_inside_a_jupyter_kernel_under_papermill(tmp_path: Path) -> None:
    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("papermill")
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell(
            f"import sys\nsys.path.insert(0, {str(Path(__file__).parent)!r})\n"
            "from load_servers import serve\nfrom workbench.load import run_load\n"
            "with serve() as (url, _):\n"
            "    r = run_load(url + '/', rate=100, duration=1.0, warmup=0, connections=4)\n"
            "print('REQUESTS', r.requests)\n"
        )
    ]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    source, executed = tmp_path / "in.ipynb", tmp_path / "out.ipynb"
    nbformat.write(notebook, source)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "papermill",
            str(source),
            str(executed),
            "--log-output",
            "-k",
            "python3",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "req/s (asked 100)" in done.stderr + done.stdout  # progress lines reach the log
    assert "REQUESTS 100" in executed.read_text()


@pytest.mark.alone
@pytest.mark.slow
def test_open_loop_pacing_leaves_the_cpu_to_the_service() -> None:
    # arrivals 0.5 ms apart: a pacer on millisecond timers would busy-wait a whole core
    with serve() as (url, _):
        result = run_load(
            url + "/", rate=2000, duration=1, warmup=0, connections=8, processes=1, progress=False
        )
    # A stall of the machine (two busy cores on this VM pause a process for up to ~25 ms) can
    # leave all 8 connections waiting and the sends late: a verdict on the run, not on the pacer.
    assert Cause.GENERATOR_BUSY not in result.saturation_causes, result.saturation_reason
    assert Cause.RATE_SHORT not in result.saturation_causes, result.saturation_reason
    assert result.series()["generator_cpu_pct"].mean() < 50
    assert result.percentiles_ms("latency")["p50"] < 2


@pytest.mark.slow
def test_a_script_without_a_main_guard_runs_once(tmp_path: Path) -> None:
    # spawn re-imports the parent's __main__ in each worker: the engine must not let it
    with serve() as (url, _):
        script = tmp_path / "unguarded.py"
        script.write_text(
            "from workbench.load import run_load\n"
            "print('script body ran', flush=True)\n"
            f"result = run_load({url + '/'!r}, connections=2, duration=0.5, warmup=0, "
            "processes=2, progress=False)\n"
            "print('requests', result.requests, flush=True)\n"
        )
        done = subprocess.run(
            [sys.executable, str(script)], capture_output=True, text=True, timeout=120,
            cwd=Path(__file__).parent.parent,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("script body ran") == 1, done.stdout
    assert "requests" in done.stdout


@pytest.mark.slow
def test_closed_loop_generator_short_of_wrk_says_it_is_the_limit(generators: Generators) -> None:
    """Against a server faster than the generator, the verdict names the generator, measured."""
    import re
    import shutil

    with fast_server() as url:
        result = run_load(
            url + "/", connections=16, duration=1, warmup=0.2, processes=1,
            transport="httpx", progress=False, generators=generators,
        )  # fmt: skip
        wrk = shutil.which("wrk")
        if wrk is not None:
            out = subprocess.run(
                [wrk, "-t1", "-c16", "-d1s", url + "/"], capture_output=True, text=True, check=True
            ).stdout
            match = re.search(r"Requests/sec:\s+([\d.]+)", out)
            assert match is not None, out
            assert result.throughput_rps < 0.95 * float(match.group(1))  # it fell short of wrk
    assert result.errors == 0
    assert result.generator_saturated, result.series()
    assert Cause.GENERATOR_BUSY in result.saturation_causes
    assert "never waited for the server" in (result.saturation_reason or "")
    assert result.series()["generator_busy_pct"].mean() >= 90


def test_closed_loop_waiting_on_the_server_is_not_saturated(generators: Generators) -> None:
    with serve(Behaviour(delay=0.01)) as (url, _):
        result = run_load(
            url + "/slow", connections=16, duration=1, warmup=0.2, processes=1, progress=False,
            generators=generators,
        )  # fmt: skip
    assert result.completed > 0 and result.errors == 0
    assert not result.generator_saturated, result.saturation_reason
    assert result.series()["generator_busy_pct"].mean() < 50


def _second(index: int, *, cpu: float, wait: float) -> tuple[object, ...]:
    empty = hist.encode(hist.new_histogram())
    counts = dict.fromkeys(ERROR_CLASSES, 0)
    return ("second", 0, {"second": index, "length": 1.0, "sent": 100, "completed": 100,
            "late": 0, "cap_waits": 0, "dropped": 0, "stale": 0, "cpu": cpu, "wait": wait, "lat": empty,
            "lag": empty, **counts})  # fmt: skip


@pytest.mark.parametrize(("cpu", "wait", "saturated"), [(0.55, 0.4, True), (0.55, 0.1, False)])
def test_a_generator_waiting_for_a_core_is_the_limit_below_full_cpu(
    cpu: float, wait: float, saturated: bool
) -> None:
    """Closed loop on a shared machine: CPU 55% and 40% runnable but waiting is a busy generator."""
    from workbench.load import LoadPlan
    from workbench.load._collector import _Collector
    from workbench.load._plan import worker_specs

    plan = LoadPlan.build("http://127.0.0.1:9/", connections=4, duration=2, processes=1)
    collector = _Collector(plan, worker_specs(plan))
    empty = hist.encode(hist.new_histogram())
    for i in range(2):
        collector.add(_second(i, cpu=cpu, wait=wait))
    collector.add(("done", 0, {"lat": empty, "svc": empty, "lag": empty, "connections_used": 4}))
    result = collector.result()
    assert result.generator_saturated is saturated
    assert (Cause.GENERATOR_BUSY in result.saturation_causes) is saturated


@pytest.mark.parametrize("keepalive_idle", [5.0, 0.3])
def test_a_connection_the_server_closed_idle_is_the_generators_error_resent_once(
    keepalive_idle: float, generators: Generators
) -> None:
    """The server resets a kept-alive connection idle > 0.3 s as a request arrives on it.

    Believing the server keeps connections 5 s, the engine meets those resets: each request is
    sent once more on a fresh connection and counted as the generator's own error, not the
    service's. Told the server's 0.3 s, it reuses no connection idle that long: no reset at all.
    """
    behaviour = Behaviour(idle_reset=0.3)
    with serve(behaviour) as (url, b):
        result = run_load(
            url + "/", rate=2, duration=2, warmup=0, connections=1, processes=1,
            keepalive_idle=keepalive_idle, progress=False, generators=generators,
        )  # fmt: skip
    stale = result.generator_errors["stale_connection"]
    assert result.errors == 0 and result.completed == pytest.approx(4, abs=1)
    if keepalive_idle > 0.3:
        assert b.idle_resets >= 2 and stale == b.idle_resets
        assert "generator's own errors" in result.text()
        assert result.summary()["generator_errors"] == {"stale_connection": stale}
    else:
        assert b.idle_resets == 0 and stale == 0


@pytest.mark.slow
def test_no_resets_from_a_server_with_a_short_keep_alive(generators: Generators) -> None:
    """uvicorn closing connections idle 1 s, a load that leaves them idle about that long."""
    import time

    import httpx

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "tests.external_app:app", "--host", "127.0.0.1",
         "--port", str(port), "--timeout-keep-alive", "1", "--log-level", "warning"],
        cwd=Path(__file__).resolve().parent.parent,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(url + "/metrics", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.1)
        result = run_load(
            url + "/items/1", rate=2, duration=2.5, warmup=0, connections=2, processes=1,
            keepalive_idle=1.0, progress=False, generators=generators,
        )  # fmt: skip
    finally:
        proc.terminate()
        proc.wait(10)
    assert result.completed == pytest.approx(5, abs=1)
    assert result.errors == 0, result.error_classes
    assert result.generator_errors["stale_connection"] == 0


@pytest.mark.alone
@pytest.mark.skipif(
    (shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists())
    or shutil.which("wrk") is None,
    reason="needs nginx and wrk (.ci/run installs both)",
)
@pytest.mark.parametrize("transport", ["raw", "httpx"])
def test_against_nginx_the_engine_keeps_up_with_wrk_or_says_it_did_not(
    transport: str, tmp_path: Path
) -> None:
    """A very fast static server we did not write: short of wrk by more than 5% is flagged."""
    import re

    with third_party("nginx", str(tmp_path)) as base:
        url = base + "/index.html"
        result = run_load(
            url, connections=16, duration=1, warmup=0.3, processes=1,
            transport=transport, progress=False,
        )  # fmt: skip
        out = subprocess.run(
            ["wrk", "-t1", "-c16", "-d1s", url], capture_output=True, text=True, check=True
        ).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert match is not None, out
    wrk_rps = float(match.group(1))
    assert result.errors == 0, result.error_classes
    if result.throughput_rps < 0.95 * wrk_rps:
        # the busy share decides the verdict: show it (per second) when it fails
        busy = result.series()[["generator_busy_pct", "generator_cpu_pct"]].to_dict("list")
        assert result.generator_saturated, (result.throughput_rps, wrk_rps, busy)
    if transport == "httpx":  # httpx is far slower than wrk against nginx
        assert result.generator_saturated


def steady(url: str, **options: object) -> LoadPlan:
    """A one-process plan whose warm-up ends once latency is steady (warmup: the cap)."""
    plan = LoadPlan.build(url, processes=1, progress=False, **options)  # type: ignore[arg-type]
    return dataclasses.replace(plan, steady_warmup=True)


def test_a_steady_warm_up_is_judged_on_windows_from_every_worker() -> None:
    judge = SteadyWarmup(workers=2, start_at=time.monotonic(), cap=10.0)
    agree = [(100, 0.1), (110, 0.105)]  # (responses, summed latency s) of each worker
    for window in range(STEADY_WINDOWS - 1):
        assert all(judge.add((window, n, s)) is None for n, s in agree)
    assert judge.add((STEADY_WINDOWS - 1, 100, 0.1)) is None  # the other worker's part is missing
    at = judge.add((STEADY_WINDOWS - 1, 110, 0.105))
    assert at is not None and at > time.monotonic()
    # a window twice as slow as the ones before it, or one with too few responses, is not steady
    slow = SteadyWarmup(workers=1, start_at=time.monotonic(), cap=10.0)
    for window, (n, s) in enumerate([(100, 0.1), (100, 0.1), (100, 0.2)]):
        assert slow.add((window, n, s)) is None
    sparse = SteadyWarmup(workers=1, start_at=time.monotonic(), cap=10.0)
    n = STEADY_MIN_RESPONSES - 1
    assert all(sparse.add((window, n, n * 1e-3)) is None for window in range(5))
    # never past the cap: then the warm-up simply lasts its seconds
    late = SteadyWarmup(workers=1, start_at=time.monotonic() - 10.0, cap=10.0)
    assert all(late.add((window, 100, 0.1)) is None for window in range(5))


@pytest.mark.slow
def test_a_steady_warm_up_ends_early_on_a_steady_server_and_the_result_says_when(
    generators: Generators,
) -> None:
    cap = 5.0
    with serve() as (url, _):
        pids = generators.prepare(1).pids()
        took = []
        results = []
        for options in ({}, {"rate": 400}):
            started = time.monotonic()
            plan = steady(url + "/", connections=4, duration=1, warmup=cap, **options)
            results.append(run_load(plan, generators=generators))
            took.append(time.monotonic() - started)
            assert [p.pid for p in generators._procs] == pids  # the same worker, given back
    assert not generators._pipes[0].poll(0.3)  # no EOF: it still waits for the next run
    closed, opened = results
    for result, seconds in zip(results, took, strict=True):
        assert STEADY_WINDOWS * WARM_WINDOW_S <= result.warmup_s < cap
        assert seconds < cap  # the workers measured early too (a full warm-up alone is 5 s)
        assert result.summary()["warmup_s"] == result.warmup_s
        assert result.warmup_end is WarmupEnd.STEADY and result.summary()["warmup_end"] == "steady"
        assert result.series()["second"].tolist() == [0]
    assert closed.completed > 0 and closed.errors == 0
    # the measured arrivals start with the window: one second of them, not the warm-up's
    assert opened.requests == pytest.approx(400, rel=0.03)


@pytest.mark.slow
def test_a_steady_warm_up_waits_out_a_stall_and_a_fixed_one_lasts_its_seconds(
    generators: Generators,
) -> None:
    stall = 0.5  # from 0.1 s after the first request: the first windows are fast, then stuck
    with serve(Behaviour(stall_at=0.1, stall_for=stall)) as (url, _):
        result = run_load(
            steady(url + "/", connections=4, duration=1, warmup=3.0), generators=generators
        )
    assert result.warmup_s >= 0.1 + stall + STEADY_WINDOWS * WARM_WINDOW_S - 0.05
    assert result.warmup_s < 3.0
    assert result.percentiles_ms()["max"] < 1000 * stall / 2  # the stall stayed in the warm-up
    with serve() as (url, _):
        fixed = run_load(url + "/", connections=4, duration=1, warmup=0.5, processes=1,
                         progress=False, generators=generators)  # fmt: skip
    assert fixed.warmup_s == 0.5 and fixed.warmup_end is WarmupEnd.FIXED
    # latency never steady (a server that answers ever slower): the cap, and the result says so
    with serve(Behaviour(stall_at=0.05, stall_for=1.0)) as (url, _):
        capped = run_load(
            steady(url + "/", connections=4, duration=0.5, warmup=0.6), generators=generators
        )
    assert capped.warmup_s == 0.6 and capped.warmup_end is WarmupEnd.CAPPED


@pytest.mark.slow
def test_a_closed_loops_users_reach_every_worker_of_a_gunicorn_service(stack: Stack) -> None:
    """Connected all at once before timing, one process's users all landed on one gunicorn worker
    of a service that had served before (1.0 s of CPU against 0.0 s): the engine measured one
    worker of two, at 0.70 of wrk's throughput."""
    import psutil

    from workbench.launcher import ServiceProcess
    from workbench.params import preset_settings

    with ServiceProcess(preset_settings("optimized", {}), stack) as service:  # gunicorn, 2 workers
        assert service.proc is not None
        workers = psutil.Process(service.proc.pid).children()
        assert len(workers) == 2

        def cpu() -> list[float]:
            return [sum(w.cpu_times()[:2]) for w in workers]

        load = dict(connections=64, warmup=0, processes=1, id_max=TEST_USERS, progress=False)
        run_load(service.url + "/users/{id}", duration=1, **load)  # a service that served before
        before = cpu()
        result = run_load(service.url + "/users/{id}", duration=1, **load)
        spent = [after - was for after, was in zip(cpu(), before, strict=True)]
    assert result.errors == 0 and result.completed > 100
    assert min(spent) > 0.2 * max(spent), spent


def test_runs_draw_fresh_ids_unless_the_load_sets_a_seed(generators: Generators) -> None:
    # 100 requests over 1,000 ids: two independent runs share ~10% of their ids, a replay all
    def ids(**seed: int) -> set[str]:
        with serve() as (url, behaviour):
            run_load(
                url + "/users/{id}", rate=200, duration=0.5, warmup=0, connections=4,
                id_max=1_000, progress=False, generators=generators, **seed,
            )  # fmt: skip
            return set(behaviour.paths)

    first, second = ids(), ids()
    assert len(first & second) < 0.5 * min(len(first), len(second)), (len(first), len(second))
    again, replay = ids(seed=7), ids(seed=7)
    assert len(again & replay) > 0.9 * min(len(again), len(replay))
