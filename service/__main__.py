"""Run the service: `python -m service` reads ServiceSettings from SVC_* variables and serves."""

from __future__ import annotations

import os
import sys
import tempfile

from service.settings import ServiceSettings


def main() -> int:
    """Start uvicorn or gunicorn with uvicorn workers, as the settings say."""
    settings = ServiceSettings.from_env()
    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "8000"))
    if settings.server == "gunicorn" or settings.workers > 1:
        # Workers are separate processes: metrics are merged through files.
        os.environ.setdefault(
            "PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="workbench-metrics-")
        )
    if settings.server == "gunicorn":
        argv = [
            sys.executable, "-m", "gunicorn", "service.asgi:app",
            "--worker-class", "uvicorn_worker.UvicornWorker",
            "--bind", f"{host}:{port}",
            "--workers", str(settings.workers),
            "--worker-connections", str(settings.worker_connections),
            "--max-requests", str(settings.max_requests),
            "--max-requests-jitter", str(settings.max_requests_jitter),
            "--keep-alive", str(settings.keepalive),
            "--timeout", str(settings.timeout),
            "--graceful-timeout", "5",
            "--backlog", str(settings.backlog),
            "--log-level", settings.log_level,
            "--config", "python:service.gunicorn_hooks",
        ]  # fmt: skip
        if settings.preload:
            argv.append("--preload")
        os.execv(sys.executable, argv)
    import uvicorn

    uvicorn.run(
        "service.asgi:app",
        host=host,
        port=port,
        workers=settings.workers,
        backlog=settings.backlog,
        timeout_keep_alive=settings.keepalive,
        limit_max_requests=settings.max_requests or None,
        log_level=settings.log_level,
        access_log=False,
        loop="uvloop",
        http="httptools",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
