"""Cost per request: CPU ms by component from a window's CPU-seconds, and the CPU-bound projection."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from workbench import cost
from workbench._errors import InputError
from workbench.run import RunResult


def test_per_request_divides_window_cpu_by_completed_requests() -> None:
    row = cost.per_request({"service": 1.2, "postgres": 0.4, "generator": 0.1}, 2000)
    assert row["cpu_ms_per_request_service"] == pytest.approx(0.6)
    assert row["cpu_ms_per_request_postgres"] == pytest.approx(0.2)
    assert row["cpu_ms_per_request_generator"] == pytest.approx(0.05)
    assert math.isnan(row["cpu_ms_per_request_redis"])  # not watched: unknown, not free
    assert row["cpu_ms_per_request_server"] == pytest.approx(0.8)  # the generator is not server
    assert math.isnan(cost.per_request({"service": 1.0}, 0)["cpu_ms_per_request_service"])
    # an external run without the target's pids: the generator only, no server side
    external = cost.from_summary(cost.per_request({"generator": 0.3}, 1000))
    assert external == {"generator": pytest.approx(0.3)}


def test_projection_is_cores_times_hosts_over_server_cpu() -> None:
    ms = {"service": 0.6, "postgres": 0.3, "redis": 0.1, "generator": 0.05, "server": 1.0}
    p = cost.project(ms, cores=8)
    assert p.rate_rps == pytest.approx(8000.0)  # 8 cores x 1000 ms / 1.0 ms
    assert p.service_only_rps == pytest.approx(8000 / 0.6)
    assert p.busiest == "service" and p.shares["postgres"] == pytest.approx(0.3)
    assert "generator" not in p.cpu_ms_per_request
    assert cost.project(ms, cores=8, hosts=4).rate_rps == pytest.approx(32000.0)
    assert "scales" in p.note and "CPU" in p.note
    assert "~8,000 req/s on 8 cores" in p.sentence()
    assert "~13,333 req/s" in p.sentence()  # the service alone
    assert p.unmeasured == () and "not measured" not in p.sentence()
    # PostgreSQL elsewhere (DATABASE_URL): its CPU is not in the total, and the sentence says so
    attached = cost.project({"service": 0.6, "redis": 0.1}, cores=8)
    assert attached.unmeasured == ("postgres",)
    assert "PostgreSQL not measured" in attached.sentence()
    with pytest.raises(InputError, match="^cores: "):
        cost.project(ms, cores=0)
    with pytest.raises(InputError, match="^hosts: "):
        cost.project(ms, cores=2, hosts=-1)
    nothing = cost.project({"generator": 0.1}, cores=8)
    assert math.isnan(nothing.rate_rps) and "nothing to project" in nothing.sentence()


def test_run_result_reads_its_cost_and_projects_it() -> None:
    row = {"throughput_rps": 1500.0, **cost.per_request({"service": 1.0, "postgres": 0.5}, 1000)}
    run = RunResult(
        run_id="r", manifest={"environment": {"cpu_count": 2}}, summary_row=row,
        client=pd.DataFrame(), server=pd.DataFrame(), hdr_latency=b"",
    )  # fmt: skip
    assert run.cpu_ms_per_request() == {"service": 1.0, "postgres": 0.5, "server": 1.5}
    projection = run.projection(cores=8, hosts=2)
    assert projection.rate_rps == pytest.approx(16000 / 1.5)
    assert "measured on 2 cores at 1,500 req/s" in projection.sentence()
