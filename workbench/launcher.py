"""ServiceProcess: the bundled service started in a subprocess on a free port, with chosen settings."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from service.__main__ import gunicorn_argv, uses_gunicorn
from service.gunicorn_hooks import READY_PREFIX
from service.settings import ServiceSettings
from workbench import _process
from workbench._errors import StackError
from workbench._net import check_port, free_port, port_in_use
from workbench.monitor import parse_metrics
from workbench.stack import Stack

HEALTH_POLL_S = 0.02  # a refused connection costs well under a millisecond


@dataclass
class ServiceProcess(_process.Managed):
    """The service under test, as a child process: start, wait for /health, scrape, stop."""

    settings: ServiceSettings
    stack: Stack
    port: int | None = None
    log: Path | None = None
    start_timeout: float = 30.0
    check_limits: bool = True  # refuse pools the database cannot hold (False to show what breaks)
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    # The runs measured on this process so far (a kept service serves several, in order).
    served: list[str] = field(default_factory=list, init=False)
    _spawned_at: float = field(default=0.0, init=False, repr=False)
    _metrics_dir: str | None = field(default=None, init=False, repr=False)
    # Seconds from spawn to the first healthy answer (0 until then), wherever it was started.
    boot_s: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        if self.port is not None:
            check_port("port", self.port)
        if self.log is None:
            self.log = Path(tempfile.mkstemp(prefix="workbench-service-", suffix=".log")[1])

    @property
    def url(self) -> str:
        """The service's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, detach: bool = False) -> ServiceProcess:
        """Start the service and wait until /health answers 200."""
        if self.check_limits:
            self.settings.check_database_limit(self.stack.connection_limit())
        self.port = self.port or free_port()
        env = {
            **os.environ,
            **self.settings.to_env(),
            **self.stack.env(),
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
        }
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        argv = [sys.executable, "-m", "service"]
        if uses_gunicorn(self.settings):
            # what `python -m service` would exec, without its interpreter in between (~50 ms)
            argv = gunicorn_argv(self.settings, "127.0.0.1", self.port)
            self._metrics_dir = env["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(
                prefix="workbench-metrics-"
            )
        assert self.log is not None
        self._spawned_at = time.time()
        spawned = time.monotonic()
        self.proc = _process.spawn(argv, log=self.log, env=env, detach=detach)
        try:
            self._wait_healthy()
        except BaseException:
            self.stop()
            raise
        self.boot_s = time.monotonic() - spawned
        return self

    def _wait_healthy(self) -> None:
        assert self.proc is not None and self.log is not None and self.port is not None
        deadline = time.monotonic() + self.start_timeout
        last = "no answer"
        # verify=False: plain http needs no CA bundle, and loading one costs ~50 ms of CPU
        # while the service boots.
        with httpx.Client(timeout=2, verify=False) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise StackError(
                        f"the service exited at start (code {self.proc.returncode}); "
                        f"log {self.log}:\n{_process.log_tail(self.log)}"
                    )
                if not port_in_use(self.port):
                    # Nothing listens yet: a refused connect costs ~15 us of CPU, a request
                    # through httpx ten times that (0.02-0.05 CPU-s per boot at this rate).
                    last = "ConnectError"
                    time.sleep(HEALTH_POLL_S)
                    continue
                try:
                    answer = client.get(self.url + "/health")
                    ready = self._workers_ready()
                    if answer.status_code == 200 and ready >= self.settings.workers:
                        return
                    last = f"{answer.status_code} {answer.text[:200]}, {ready} worker(s) ready"
                except httpx.TransportError as exc:
                    last = type(exc).__name__
                time.sleep(HEALTH_POLL_S)
        raise StackError(
            f"the service did not become healthy in {self.start_timeout:g} s (last: {last}); "
            f"log {self.log}:\n{_process.log_tail(self.log)}"
        )

    def _workers_ready(self) -> int:
        """gunicorn's workers that have loaded the app (/health answers from the first one up;
        gunicorn forks the next ones up to 0.1 s apart); a service without gunicorn: its workers."""
        if self._metrics_dir is None:
            return self.settings.workers
        return sum(1 for _ in Path(self._metrics_dir).glob(READY_PREFIX + "*"))

    def healthy(self, *, timeout: float = 1.0) -> bool:
        """True when the process runs and /health answers 200 within `timeout` s."""
        if self.proc is None or self.proc.poll() is not None:
            return False
        try:
            # verify=False: no CA bundle to load (~50 ms) for plain http
            answer = httpx.get(self.url + "/health", timeout=timeout, verify=False)
            return answer.status_code == 200
        except httpx.HTTPError:
            return False

    @property
    def started_at(self) -> float:
        """When the process was spawned (epoch s; 0 before start)."""
        return self._spawned_at

    def log_size(self) -> int:
        """The log's length in bytes now (a mark for log_since)."""
        try:
            return self.log.stat().st_size if self.log is not None else 0
        except OSError:
            return 0

    def log_since(self, mark: int) -> Path | None:
        """A file holding what the log got after `mark` (a run's part of a kept service's log)."""
        if self.log is None or not self.log.exists():
            return None
        if mark <= 0:
            return self.log
        with self.log.open("rb") as source:
            source.seek(mark)
            part = source.read()
        fd, name = tempfile.mkstemp(prefix="workbench-service-part-", suffix=".log")
        with os.fdopen(fd, "wb") as out:
            out.write(part)
        return Path(name)

    def metrics(self) -> str:
        """The service's /metrics page (Prometheus text)."""
        # verify=False: no CA bundle to load (~50 ms of CPU per scrape) for plain http
        return httpx.get(self.url + "/metrics", timeout=5, verify=False).text

    def wait_idle(self, *, timeout: float = 30.0) -> bool:
        """Wait until no request is in flight but the scrape itself; False after `timeout` s."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if parse_metrics(self.metrics()).get("http_requests_in_flight", 0.0) <= 1:
                    return True
            except httpx.HTTPError:
                pass  # too busy to answer a scrape: not idle
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)

    def exit_code(self) -> int | None:
        """The exit code of a service that ended on its own (it died); None while it runs."""
        return self.proc.poll() if self.proc is not None else None

    def pids(self) -> list[int]:
        """The service's process ids (master and workers)."""
        if self.proc is None or self.proc.poll() is not None:
            return []
        import psutil

        root = psutil.Process(self.proc.pid)
        return [root.pid, *(p.pid for p in root.children(recursive=True))]

    def stop(self) -> None:
        """Graceful stop (SIGTERM), then kill after a grace period; a dead master's workers too."""
        if self.proc is not None:
            died = self.proc.poll() is not None
            _process.stop(self.proc, timeout=10)
            if died:  # its workers, orphaned, are still in its process group
                _process.stop_group(self.proc.pid, since=self._spawned_at)
            self.proc = None
        if self._metrics_dir is not None:  # the workers' metric files
            shutil.rmtree(self._metrics_dir, ignore_errors=True)
            self._metrics_dir = None
