"""Distributed generation on a real Dask LocalCluster (two worker processes) against a loopback server."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from distributed import Client, LocalCluster

from workbench import hdr as hist
from workbench._errors import InputError
from workbench.faults import freeze, thaw
from workbench.load import run_load
from workbench.load._cli import add_arguments, main

from .load_servers import serve

pytestmark = pytest.mark.slow  # the end-to-end tier: `make test-fast` skips it

RATE = 400.0
DURATION = 2.0


@pytest.fixture(scope="module")
def cluster(dask_cluster: LocalCluster) -> LocalCluster:
    """Two single-threaded Dask worker processes on loopback (the session's)."""
    return dask_cluster


# `window`: light (two workers at a modest rate), timed (the rate within 5%, no saturation flag)
@pytest.mark.window
def test_two_dask_workers_merge_into_one_result_like_a_local_run(cluster: LocalCluster) -> None:
    options = {
        "rate": RATE,
        "duration": DURATION,
        "warmup": 0.5,
        "connections": 8,
        "progress": False,
    }
    with serve() as (url, behaviour):
        result = run_load(url + "/", cluster=cluster, **options)  # type: ignore[arg-type]
        served = behaviour.requests
    assert result.processes == 2
    assert len(result.workers) == 2 and len(set(result.workers)) == 2
    assert set(result.workers) == set(cluster.scheduler_info["workers"])
    assert result.errors == 0
    # every request counted once: merged total = sum over the workers, and the server saw them all
    assert result.requests == sum(result.worker_requests)
    counts = [hist.decode(blob).get_total_count() for blob in result.worker_hdr_latency]
    assert all(c > 0 for c in counts)
    assert sum(counts) == result.completed + result.late == result.requests
    assert served >= result.requests
    # the merged percentiles are those of the sum of the workers' histograms
    merged = hist.merge(result.worker_hdr_latency)
    expected = {k: round(v, 3) for k, v in hist.percentiles(hist.encode(merged)).items()}
    assert result.percentiles_ms("latency") == expected
    # the series are aligned on common seconds and add up to the totals
    series = result.series()
    assert series["second"].tolist() == [0, 1]
    assert int(series["completed"].sum()) == result.completed
    assert result.clock_skew_ms is not None and 0 <= result.clock_skew_ms < 100
    summary = result.summary()
    assert summary["workers"] == list(result.workers)
    assert summary["clock_skew_ms"] == result.clock_skew_ms
    assert not result.generator_saturated, result.saturation_reason

    with serve() as (url, _):
        local = run_load(url + "/", processes=1, **options)  # type: ignore[arg-type]
    assert local.workers == ()
    assert result.throughput_rps == pytest.approx(local.throughput_rps, rel=0.05)
    assert result.throughput_rps == pytest.approx(RATE, rel=0.05)


def test_a_given_client_is_used_and_left_open(cluster: LocalCluster) -> None:
    with Client(cluster, set_as_default=False) as client, serve() as (url, _):
        result = run_load(
            url + "/",
            rate=100,
            duration=1,
            warmup=0,
            connections=2,
            processes=1,
            cluster=client,
            progress=False,
        )
        assert client.status == "running"
    assert result.processes == 1 and len(result.workers) == 1
    assert result.requests == pytest.approx(100, abs=3)


@pytest.mark.parametrize("bad", ["", "not an address", "http://scheduler:8786", 8786, object()])
def test_bad_cluster_is_an_input_error_naming_cluster(bad: object) -> None:
    with pytest.raises(InputError) as info:
        run_load("http://127.0.0.1:9/", rate=10, duration=1, cluster=bad, progress=False)
    assert info.value.name == "cluster"


def test_unreachable_scheduler_is_an_input_error_naming_cluster(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from workbench.load import _distributed

    from .load_servers import free_port

    monkeypatch.setattr(_distributed, "CONNECT_TIMEOUT_S", 0.5)  # nothing listens: no answer sooner
    with pytest.raises(InputError) as info:
        run_load(
            "http://127.0.0.1:9/",
            rate=10,
            duration=1,
            cluster=f"tcp://127.0.0.1:{free_port()}",
            progress=False,
        )
    assert info.value.name == "cluster"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workbench.load", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_cluster_flag_generates_on_the_scheduler_workers(
    cluster: LocalCluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "summary.json"
    with serve() as (url, _):
        done = _cli(
            url + "/",
            "--cluster",
            cluster.scheduler_address,
            "--rate",
            "100",
            "--duration",
            "1",
            "--warmup",
            "0",
            "--connections",
            "4",
            "--json",
            str(out),
        )
    assert done.returncode == 0, done.stderr
    assert "Dask worker(s)" in done.stdout
    summary = json.loads(out.read_text())
    assert len(summary["workers"]) == 2
    assert summary["requests"] == pytest.approx(100, abs=3)

    # the command's main() in this process: the same check, without an interpreter's start
    parser = argparse.ArgumentParser(prog="workbench load")
    add_arguments(parser)
    capsys.readouterr()
    assert main(parser.parse_args([url + "/", "--cluster", "nowhere", "--rate", "10"])) == 2
    assert "cluster" in capsys.readouterr().err


def test_ctrl_c_stops_the_remote_generators_at_once(cluster: LocalCluster) -> None:
    with serve() as (url, behaviour):
        proc = subprocess.Popen(
            [sys.executable, "-m", "workbench.load", url + "/", "--cluster"]
            + [cluster.scheduler_address, "--rate", "200", "--duration", "20", "--warmup", "0"]
            + ["--connections", "4"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 30
            while behaviour.requests < 200:  # the generators are under way
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline
                time.sleep(0.1)
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=15)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 130, err
        time.sleep(0.5)
        settled = behaviour.requests
        time.sleep(1.0)
        assert behaviour.requests == settled  # no generator is still sending
        assert settled < 200 * 10
    # the cluster is fine afterwards
    with serve() as (url, _):
        result = run_load(url + "/", rate=50, duration=1, warmup=0, connections=2, cluster=cluster)
    assert result.requests == pytest.approx(50, abs=2)


def test_clock_offsets_are_measured_per_worker_and_only_large_ones_corrected(
    cluster: LocalCluster,
) -> None:
    from workbench.load._distributed import ClockOffset, clock_offsets

    with Client(cluster, set_as_default=False) as client:
        addresses = sorted(client.nthreads())
        offsets = clock_offsets(client, addresses)
    assert sorted(offsets) == addresses
    for offset in offsets.values():  # one host, one clock: within the round trip
        assert 0 < offset.rtt_s < 1.0
        assert abs(offset.offset_s) <= offset.rtt_s
        assert offset.correction_s == 0.0
    assert ClockOffset(offset_s=0.25, rtt_s=0.002).correction_s == 0.25
    assert ClockOffset(offset_s=-0.25, rtt_s=0.002).correction_s == -0.25
    assert ClockOffset(offset_s=0.001, rtt_s=0.002).correction_s == 0.0


def test_a_frozen_dask_worker_is_reported_not_waited_on(cluster: LocalCluster) -> None:
    from workbench.load._distributed import clock_offsets

    with Client(cluster, set_as_default=False) as client:
        pids = client.run(os.getpid)
        address = sorted(pids)[0]
        freeze(pids[address])
        try:
            started = time.monotonic()
            with pytest.raises(InputError, match=f"^cluster: Dask worker {address} did not answer"):
                clock_offsets(client, [address], timeout=0.5)
            took = time.monotonic() - started
        finally:
            thaw(pids[address])
        assert took < 3.0, took
        assert sorted(clock_offsets(client, [address])) == [address]  # answers again once thawed
