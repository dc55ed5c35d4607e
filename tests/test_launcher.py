"""ServiceProcess: the real service in a subprocess, healthy, answering, stopped with nothing left."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest

from service.settings import ServiceSettings, SettingsError
from workbench._errors import InputError
from workbench.faults import Outage
from workbench.launcher import ServiceProcess
from workbench.seed import user_row
from workbench.stack import Stack

from .conftest import descendants


@pytest.mark.slow
def test_service_answers_users_health_and_metrics(stack: Stack) -> None:
    with ServiceProcess(ServiceSettings.naive(), stack) as svc:
        user = httpx.get(svc.url + "/users/7").json()
        assert user["id"] == 7 and user["email"] == user_row(7)[2]
        assert user["created_at"] == user_row(7)[3].isoformat().replace("+00:00", "Z")
        assert httpx.get(svc.url + "/users/999999").status_code == 404
        assert httpx.get(svc.url + "/users/abc").status_code == 422
        assert httpx.get(svc.url + "/users/-1").status_code == 422
        assert httpx.get(svc.url + "/health").json()["status"] == "ok"
        text = svc.metrics()
        assert 'http_requests_total{route="/users/{user_id}",status="200"}' in text
        pids = svc.pids()
    assert pids and not any(psutil.pid_exists(pid) for pid in pids)


@pytest.mark.slow
def test_gunicorn_workers_start_and_all_stop(stack: Stack) -> None:
    before = descendants()
    settings = ServiceSettings(server="gunicorn", workers=3, preload=True)
    with ServiceProcess(settings, stack) as svc:
        # started means every worker has loaded the app, not only the first that answers /health
        # (with preload the first answers at once; gunicorn forks the next ones up to 0.1 s apart)
        assert len(psutil.Process(svc.pids()[0]).children()) == 3
        assert httpx.get(svc.url + "/users/1").status_code == 200
        # the workers merge their metrics through files in a folder of the service's own
        folder = Path(psutil.Process(svc.pids()[0]).environ()["PROMETHEUS_MULTIPROC_DIR"])
        assert any(folder.iterdir())
        assert 'status="200"' in svc.metrics()
    assert descendants() <= before
    assert not folder.exists()  # removed with the service


@pytest.mark.slow
def test_a_dead_master_is_noticed_and_its_orphaned_workers_stopped(stack: Stack) -> None:
    before = descendants()
    service = ServiceProcess(ServiceSettings(server="gunicorn", workers=2), stack).start()
    try:
        deadline = time.monotonic() + 15
        while len(service.pids()) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        master, *workers = service.pids()
        assert service.exit_code() is None
        os.kill(master, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while service.exit_code() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert service.exit_code() == -signal.SIGKILL
        assert any(psutil.pid_exists(pid) for pid in workers)  # orphaned, still serving
    finally:
        service.stop()
    assert not [pid for pid in workers if _running(pid)]
    assert descendants() <= before


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_pool_over_database_limit_is_refused_before_start(stack: Stack) -> None:
    before = descendants()
    too_big = ServiceSettings(pool_size=200, max_overflow=200, workers=2)
    with pytest.raises(SettingsError, match="max_connections"):
        ServiceProcess(too_big, stack).start()
    assert descendants() == before


def test_busy_port_is_a_clear_error(stack: Stack) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(InputError, match=f"port {port} .* already in use"):
            ServiceProcess(ServiceSettings(), stack, port=port)


@pytest.mark.slow
def test_wait_idle_waits_out_a_request_in_flight(stack: Stack) -> None:
    # a frozen upstream holds /profile for upstream_timeout while the event loop stays free
    settings = ServiceSettings(upstream_mode="shared", upstream_timeout=2.0)
    with ServiceProcess(settings, stack) as svc:
        assert svc.wait_idle(timeout=5)
        with Outage(stack, "upstream", at=0, duration=3.0, mode="freeze"):
            time.sleep(0.2)
            slow = threading.Thread(
                target=httpx.get, args=(svc.url + "/users/3/profile",), kwargs={"timeout": 30}
            )
            slow.start()
            time.sleep(0.2)
            assert not svc.wait_idle(timeout=0.3)  # the profile request is still waiting
            assert svc.wait_idle(timeout=10)  # the upstream timeout ended it
            slow.join()
