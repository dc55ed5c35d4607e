"""A tiny fake upstream HTTP service: `GET /user/{id}` answers JSON after a configurable delay."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from typing import cast

import orjson

HEAD_END = b"\r\n\r\n"
MAX_HEAD = 16_384


def answer_for(user_id: int) -> dict[str, object]:
    """The upstream's deterministic answer for one user."""
    return {
        "user_id": user_id,
        "plan": ("free", "pro", "team")[user_id % 3],
        "credit_score": (user_id * 7919) % 850,
        "verified": user_id % 2 == 0,
    }


def _response(status: int, body: bytes, *, close: bool) -> bytes:
    reason = {200: "OK", 404: "Not Found", 400: "Bad Request"}.get(status, "Error")
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: {'close' if close else 'keep-alive'}\r\n\r\n"
    )
    return head.encode() + body


def _route(target: bytes) -> tuple[int, bytes]:
    path = target.split(b"?", 1)[0]
    if path == b"/health":
        return 200, b'{"status":"ok"}'
    parts = path.split(b"/")
    if len(parts) == 3 and parts[1] == b"user" and parts[2].isdigit():
        return 200, orjson.dumps(answer_for(int(parts[2])))
    return 404, b'{"detail":"not found"}'


class _Connection(asyncio.Protocol):
    """One client connection: HTTP/1.1 GETs with keep-alive, answered in order after the delay."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > MAX_HEAD and HEAD_END not in self.buffer:
            self._send(_response(400, b'{"detail":"head too large"}', close=True), close=True)
            return
        while HEAD_END in self.buffer and not self.closing:
            head, _, self.buffer = self.buffer.partition(HEAD_END)
            lines = head.split(b"\r\n")
            request = lines[0].split(b" ")
            headers = {
                k.strip().lower(): v.strip() for k, _, v in (x.partition(b":") for x in lines[1:])
            }
            # Bodies are not expected; skip one if a client sends it anyway.
            length = int(headers.get(b"content-length", b"0") or 0)
            self.buffer = self.buffer[length:]
            close = headers.get(b"connection", b"").lower() == b"close"
            if len(request) != 3:
                status, body = 400, b'{"detail":"bad request line"}'
            else:
                status, body = _route(request[1])
            self.closing = close
            asyncio.get_running_loop().call_later(
                self.delay, self._send, _response(status, body, close=close), close
            )

    def _send(self, payload: bytes, close: bool) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.write(payload)
        if close:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def serve(*, host: str = "127.0.0.1", port: int = 0, delay: float = 0.005) -> None:
    """Serve until SIGTERM/SIGINT."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Connection(delay), host, port, backlog=1024)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    """`python -m service.upstream_fake --port P --delay 0.005`."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay", type=float, default=0.005, help="seconds before each answer")
    args = parser.parse_args(argv)
    if args.delay < 0:
        parser.error("--delay must be >= 0")
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.run(serve(host=args.host, port=args.port, delay=args.delay))


if __name__ == "__main__":
    main()
