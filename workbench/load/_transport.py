"""Transports: a lean uvloop Protocol HTTP/1.1 client (raw) and an httpx AsyncClient per user."""

from __future__ import annotations

import asyncio
import ssl
import time
from typing import Protocol, cast

import httptools
import httpx

TRANSPORTS = ("raw", "httpx")
# A server's keep-alive timer closes only a connection that sat idle; one closed unanswered
# after a shorter pause is the server failing (a worker killed mid-request), not a stale reuse.
STALE_MIN_IDLE_S = 0.25


class Owner(Protocol):
    """What a connection reports to: the worker's scheduler."""

    def on_response(self, conn: RawConnection | HttpxUser, status: int) -> None: ...

    def on_failure(self, conn: RawConnection | HttpxUser, kind: str) -> None: ...

    def on_stale(self, conn: RawConnection) -> None: ...


class RawConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection of a virtual user; responses parsed with httptools."""

    def __init__(self, owner: Owner) -> None:
        self.owner = owner
        self.transport: asyncio.Transport | None = None
        self.parser: httptools.HttpResponseParser | None = None
        self.busy = False
        self.intended = 0.0
        self.sent = 0.0
        self.data = (
            b""  # the request in flight, resent once if the server had closed the connection
        )
        self.last_used = 0.0  # when the connection last carried a response (or opened)
        self.served = 0  # responses on the current TCP connection
        self.answered = False  # bytes of the current response arrived
        self.retried = False
        self.until_close = False  # the response in flight ends its body when the server closes
        # connection_lost calls still owed by transports we closed ourselves
        self._stale_losses = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.parser = httptools.HttpResponseParser(self)
        self.served = 0
        self.until_close = False
        self.last_used = time.monotonic()

    def data_received(self, data: bytes) -> None:
        parser = self.parser
        if parser is None:
            return
        self.answered = True
        try:
            parser.feed_data(data)
        except httptools.HttpParserError:
            self.drop()
            if self.busy:
                self.busy = False
                self.owner.on_failure(self, "other")

    def on_headers_complete(self) -> None:
        # A response the server will not keep alive may have no length (HTTP/1.0): its body
        # ends at the close, and httptools has no end-of-input call, so connection_lost ends it.
        parser = self.parser
        assert parser is not None
        self.until_close = not parser.should_keep_alive()

    def on_message_complete(self) -> None:
        parser = self.parser
        assert parser is not None
        status = parser.get_status_code()
        self.served += 1
        if not parser.should_keep_alive():
            self.drop()
        if self.busy:
            self.busy = False
            self.owner.on_response(self, status)

    def eof_received(self) -> bool | None:
        return None  # close our side too; connection_lost reports an in-flight request

    def connection_lost(self, exc: Exception | None) -> None:
        if self._stale_losses:
            self._stale_losses -= 1
            return
        reused = self.served > 0
        parser = self.parser
        self.transport = None
        self.parser = None
        if self.busy and self.until_close and exc is None and parser is not None:
            self.until_close = False
            self.busy = False
            self.owner.on_response(self, parser.get_status_code())
        elif (
            self.busy
            and reused
            and not self.answered
            and not self.retried
            and self.sent - self.last_used >= STALE_MIN_IDLE_S
        ):
            # The server closed a kept-alive connection as the request went out (its idle
            # timeout): no response was started, so, as real clients do, send it once more.
            self.retried = True
            self.owner.on_stale(self)
        elif self.busy:
            self.busy = False
            self.owner.on_failure(self, "reset")

    def drop(self, *, abort: bool = False) -> None:
        """Close the current TCP connection now; the next send reconnects."""
        transport = self.transport
        if transport is None:
            return
        self.transport = None
        self.parser = None
        self._stale_losses += 1
        if abort:
            transport.abort()
        else:
            transport.close()


async def connect_raw(conn: RawConnection, host: str, port: int, *, timeout: float) -> None:
    """Open (or reopen) the TCP connection of a RawConnection."""
    loop = asyncio.get_running_loop()
    await asyncio.wait_for(loop.create_connection(lambda: conn, host, port), timeout)


def classify_exception(exc: BaseException) -> str:
    """Map a transport exception to an error class."""
    if isinstance(exc, httpx.TimeoutException | asyncio.TimeoutError | TimeoutError):
        return "timeout"
    if isinstance(exc, httpx.ConnectError | ConnectionRefusedError):
        return "connect"
    if isinstance(
        exc,
        httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError | ConnectionResetError,
    ):
        return "reset"
    if isinstance(exc, OSError):
        return "connect"
    return "other"


class HttpxUser:
    """One virtual user with its own httpx.AsyncClient (built before timing starts)."""

    def __init__(self, owner: Owner, client: httpx.AsyncClient) -> None:
        self.owner = owner
        self.client = client
        self.busy = False
        self.intended = 0.0
        self.sent = 0.0
        self.task: asyncio.Task[None] | None = None

    def start(self, request: httpx.Request) -> None:
        """Send a request in a task; the owner hears of the outcome."""
        self.task = asyncio.get_running_loop().create_task(self._run(request))

    async def _run(self, request: httpx.Request) -> None:
        try:
            response = await self.client.send(request)
        except Exception as exc:  # every failure is counted in its class
            self.busy = False
            self.owner.on_failure(self, classify_exception(exc))
        else:
            self.busy = False
            self.owner.on_response(self, response.status_code)


def pin_request(request: httpx.Request, address: str) -> httpx.Request:
    """The same request sent to address (the one the loopback guard checked), not to a new lookup.

    The Host header keeps the name, and for https so do SNI and the certificate check.
    """
    name = request.url.host
    if name == address or not address:
        return request
    extensions = dict(request.extensions)
    if request.url.scheme == "https":
        extensions["sni_hostname"] = name
    return httpx.Request(
        request.method,
        request.url.copy_with(host=address),
        headers=request.headers,  # with Host: name (set when the request was built)
        content=request.content,
        extensions=extensions,
    )


def make_httpx_client(
    *, timeout: float, ssl_context: ssl.SSLContext, keepalive_idle: float
) -> httpx.AsyncClient:
    """An AsyncClient for one virtual user: one connection, shared SSL context (no CA reload).

    A connection idle longer than keepalive_idle (the server's keep-alive timeout) is not reused.
    """
    return httpx.AsyncClient(
        timeout=timeout,
        verify=ssl_context,
        limits=httpx.Limits(
            max_connections=1, max_keepalive_connections=1, keepalive_expiry=keepalive_idle
        ),
    )
