"""How `python -m service` serves: one worker without gunicorn's master unless asked for."""

from __future__ import annotations

import subprocess
import sys

import httpx

from service.__main__ import uses_gunicorn
from service.settings import ServiceSettings
from workbench.launcher import ServiceProcess
from workbench.stack import Stack

ONE_GUNICORN_WORKER = ServiceSettings(server="gunicorn", workers=1)


def test_one_worker_skips_gunicorn_unless_asked_or_it_must_be_replaced() -> None:
    assert not uses_gunicorn(ONE_GUNICORN_WORKER)
    assert uses_gunicorn(ONE_GUNICORN_WORKER.replace(gunicorn_one_worker=True))
    assert uses_gunicorn(ONE_GUNICORN_WORKER.replace(max_requests=1000))
    assert uses_gunicorn(ONE_GUNICORN_WORKER.replace(workers=2))
    assert not uses_gunicorn(ServiceSettings(server="uvicorn", workers=2))


def test_one_worker_is_served_by_one_process_or_by_gunicorns_master_and_worker(
    stack: Stack,
) -> None:
    for settings, processes in ((ONE_GUNICORN_WORKER, 1),
                                (ONE_GUNICORN_WORKER.replace(gunicorn_one_worker=True), 2)):  # fmt: skip
        with ServiceProcess(settings, stack) as svc:
            assert len(svc.pids()) == processes
            assert httpx.get(f"{svc.url}/users/5").status_code == 200


def test_uvicorn_alone_imports_no_gunicorn() -> None:
    """What a one-process service imports to serve: uvicorn and the stamping protocol only."""
    code = "import sys, uvicorn, service.protocol; print('gunicorn' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
