"""Run the service: `python -m service` reads ServiceSettings from SVC_* variables and serves."""

from __future__ import annotations

import os
import sys
import tempfile
from urllib.parse import urlsplit

from service import heap
from service.redact import mask_text, mask_url
from service.settings import ServiceSettings, SettingsError

# Variable → (required, allowed URL schemes)
URL_VARIABLES = {
    "DATABASE_URL": (True, ("postgresql", "postgres")),
    "READ_DATABASE_URL": (False, ("postgresql", "postgres")),
    "REDIS_URL": (True, ("redis", "rediss")),
    "UPSTREAM_URL": (False, ("http", "https")),
}


def check_environment(environ: dict[str, str]) -> tuple[ServiceSettings, str, int]:
    """Settings, host and port from the environment; SettingsError naming a bad variable."""
    settings = ServiceSettings.from_env(environ)
    for name, (required, schemes) in URL_VARIABLES.items():
        value = environ.get(name, "")
        if not value:
            if required:
                raise SettingsError(
                    name, f"is not set; give a URL like {schemes[0]}://host:port/..."
                )
            continue
        try:
            parts = urlsplit(value)
            _ = parts.port
        except ValueError as exc:
            raise SettingsError(name, f"is not a valid URL ({exc}): {mask_text(value)!r}") from None
        if parts.scheme not in schemes or not parts.hostname:
            raise SettingsError(
                name,
                f"must be a URL like {schemes[0]}://host:port/... ({'/'.join(schemes)}), got {mask_url(value)!r}",
            )
    host = environ.get("HOST", "127.0.0.1")
    text = environ.get("PORT", "8000")
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise SettingsError("PORT", f"must be a port number 1..65535, got {text!r}")
    return settings, host, int(text)


def uses_gunicorn(settings: ServiceSettings) -> bool:
    """Whether gunicorn's master serves the workers (else uvicorn does, one process or several).

    One worker needs no master unless the settings ask for one: its own (gunicorn_one_worker),
    or to be replaced after max_requests (uvicorn alone would exit instead).
    """
    if settings.server != "gunicorn":
        return False
    return settings.workers > 1 or settings.gunicorn_one_worker or settings.max_requests > 0


def gunicorn_argv(settings: ServiceSettings, host: str, port: int) -> list[str]:
    """The gunicorn command that serves these settings: its master, then uvicorn workers."""
    argv = [
        sys.executable, "-m", "gunicorn", "service.asgi:app",
        "--worker-class",
        "service.worker.StampingWorker" if settings.anatomy else "uvicorn_worker.UvicornWorker",
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
    return argv


def main() -> int:
    """Start uvicorn or gunicorn with uvicorn workers, as the settings say."""
    try:
        settings, host, port = check_environment(dict(os.environ))
    except SettingsError as exc:
        print(f"service: error: {exc}", file=sys.stderr)
        return 2
    gunicorn = uses_gunicorn(settings)
    if gunicorn or settings.workers > 1:
        # Workers are separate processes: metrics are merged through files.
        os.environ.setdefault(
            "PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="workbench-metrics-")
        )
    if gunicorn:
        os.execv(sys.executable, gunicorn_argv(settings, host, port))
    with heap.building():
        import uvicorn

        from service.protocol import StampingProtocol

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
        # Served on loopback, behind no proxy: no X-Forwarded-* to read on every request.
        proxy_headers=False,
        loop="uvloop",
        http=StampingProtocol if settings.anatomy else "httptools",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
