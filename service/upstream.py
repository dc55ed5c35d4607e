"""The upstream HTTP client: one shared async client, or the naive blocking call."""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson

from service import metrics
from service.settings import UPSTREAM_MODES

if TYPE_CHECKING:
    import httpx

DEFAULT_MAX_CONNECTIONS = 100


def import_client() -> None:
    """Import httpx and the transport its clients build on (httpcore), for the shared mode.

    Only that mode needs them (~40 ms of CPU at every start otherwise). The app imports them as
    it is built, so that gunicorn's master (preload) imports them once for all its workers.
    """
    import httpcore  # noqa: F401
    import httpx  # noqa: F401


class UpstreamError(RuntimeError):
    """The upstream failed: timeout, connection error or a bad answer."""

    def __init__(self, kind: str, message: str) -> None:
        self.kind = kind
        super().__init__(f"upstream {kind}: {message}")


class Upstream:
    """Calls `GET {base_url}/user/{id}`; mode 'shared' (async) or 'blocking' (stalls the loop)."""

    def __init__(
        self,
        base_url: str,
        *,
        mode: str = "shared",
        timeout: float = 2.0,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        if mode not in UPSTREAM_MODES:
            raise ValueError(f"mode must be one of {', '.join(UPSTREAM_MODES)}; got {mode!r}")
        self.base_url = base_url.rstrip("/")
        self.mode = mode
        self.timeout = timeout
        self.max_connections = max_connections
        self._client: httpx.AsyncClient | None = None
        self._timeouts: tuple[type[Exception], ...] = (TimeoutError,)
        self._transport_errors: tuple[type[Exception], ...] = ()
        # httpcore's pool assigns connections in O(waiting requests) per request
        # (encode/httpcore#1035): excess calls wait here, in an O(1) queue, instead.
        self._slots = asyncio.Semaphore(max_connections)

    async def start(self) -> None:
        """Create the shared client (once, at startup: building one is not cheap)."""
        if self.mode == "shared" and self._client is None:
            import httpx

            self._timeouts = (httpx.TimeoutException, TimeoutError)
            self._transport_errors = (httpx.TransportError,)
            self._client = httpx.AsyncClient(
                base_url=self.base_url,
                timeout=httpx.Timeout(self.timeout),
                limits=httpx.Limits(
                    max_connections=self.max_connections,
                    max_keepalive_connections=self.max_connections,
                ),
                # Requests go to paths under base_url, redirects unfollowed: a plain-http
                # upstream never uses TLS, and loading the CA bundle costs ~25 ms per worker.
                verify=urlsplit(self.base_url).scheme != "http",
            )

    async def close(self) -> None:
        """Close the shared client."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def get_user(self, user_id: int) -> dict[str, Any]:
        """The upstream's data about one user."""
        start = time.perf_counter()
        try:
            if self.mode == "shared":
                data = await self._get_async(user_id)
            else:
                data = self._get_blocking(user_id)
        except UpstreamError as exc:
            metrics.UPSTREAM_ERRORS.labels(exc.kind).inc()
            raise
        metrics.UPSTREAM_LATENCY.labels(self.mode).observe(time.perf_counter() - start)
        return data

    async def _get_async(self, user_id: int) -> dict[str, Any]:
        if self._client is None:
            raise RuntimeError("Upstream.start() was not awaited")
        try:
            async with asyncio.timeout(self.timeout), self._slots:
                answer = await self._client.get(f"/user/{user_id}")
        except self._timeouts as exc:
            raise UpstreamError("timeout", f"no answer in {self.timeout:g} s") from exc
        except self._transport_errors as exc:
            raise UpstreamError("connection", type(exc).__name__) from exc
        if answer.status_code != 200:
            raise UpstreamError("status", f"HTTP {answer.status_code}")
        return _decode(answer.content)

    def _get_blocking(self, user_id: int) -> dict[str, Any]:
        # Deliberately naive: a synchronous call inside an async handler stalls the event loop.
        url = f"{self.base_url}/user/{user_id}"
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as answer:  # noqa: S310
                body = answer.read()
        except urllib.error.HTTPError as exc:
            raise UpstreamError("status", f"HTTP {exc.code}") from exc
        except TimeoutError as exc:
            raise UpstreamError("timeout", f"no answer in {self.timeout:g} s") from exc
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            kind = "timeout" if isinstance(reason, TimeoutError) else "connection"
            raise UpstreamError(kind, str(reason)) from exc
        return _decode(body)


def _decode(body: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise UpstreamError("body", "not JSON") from exc
    if not isinstance(data, dict):
        raise UpstreamError("body", "not a JSON object")
    return data
