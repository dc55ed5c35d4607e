"""Test servers for the load engine: a raw asyncio HTTP/1.1 server in a thread, on a free port."""

from __future__ import annotations

import asyncio
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import httptools

from workbench import _process
from workbench._net import wait_for_port


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def response(status: int = 200, body: bytes = b"ok", *, close: bool = False) -> bytes:
    """A minimal HTTP/1.1 response."""
    head = f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\n"
    if close:
        head += "Connection: close\r\n"
    return head.encode() + b"\r\n" + body


@dataclass
class Behaviour:
    """How the server answers: stall window, per-request delay, counters."""

    stall_at: float | None = None  # seconds after the first request
    stall_for: float = 0.0
    delay: float = 0.0  # seconds before each answer on /slow
    # a request on a kept-alive connection idle longer than this is reset, unanswered: the
    # server's keep-alive timeout firing just as the request arrives
    idle_reset: float | None = None
    idle_resets: int = 0
    first: float | None = None
    requests: int = 0
    paths: dict[str, int] = field(default_factory=dict)
    bodies: list[bytes] = field(default_factory=list)


class _Handler(asyncio.Protocol):
    def __init__(self, behaviour: Behaviour) -> None:
        self.b = behaviour
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.body = b""
        self.transport: asyncio.Transport | None = None
        self.answered_at: float | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport:
                self.transport.close()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        url, body = self.url.decode(), self.body
        self.url, self.body = b"", b""
        b = self.b
        now = time.monotonic()
        last, self.answered_at = self.answered_at, now
        if b.idle_reset is not None and last is not None and now - last > b.idle_reset:
            b.idle_resets += 1
            assert self.transport is not None
            sock = self.transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.transport.abort()
            return
        if b.first is None:
            b.first = now
        b.requests += 1
        path = url.split("?")[0]
        b.paths[path] = b.paths.get(path, 0) + 1
        if body and len(b.bodies) < 100:
            b.bodies.append(body)
        t = self.transport
        assert t is not None
        loop = asyncio.get_running_loop()
        if path.startswith("/status/"):
            t.write(response(int(path.rsplit("/", 1)[1])))
        elif path == "/close":
            t.close()
        elif path == "/reset":
            sock = t.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            t.abort()
        elif path == "/hang":
            pass
        elif path == "/once":
            t.write(response(close=True))
            t.close()
        elif path == "/slow":
            loop.call_later(b.delay, self._answer, t)
        elif b.stall_at is not None:
            start = b.first + b.stall_at
            end = start + b.stall_for
            if start <= now < end:
                loop.call_later(end - now, self._answer, t)
            else:
                t.write(response())
        else:
            t.write(response())

    @staticmethod
    def _answer(t: asyncio.Transport) -> None:
        if not t.is_closing():
            t.write(response())


@contextmanager
def serve(behaviour: Behaviour | None = None) -> Iterator[tuple[str, Behaviour]]:
    """Run the test server in a thread; yields (base URL, behaviour)."""
    b = behaviour or Behaviour()
    port = free_port()
    loop = asyncio.new_event_loop()
    started = threading.Event()
    holder: dict[str, asyncio.base_events.Server] = {}

    async def start() -> None:
        holder["server"] = await loop.create_server(
            lambda: _Handler(b), "127.0.0.1", port, backlog=1024
        )
        started.set()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(5)
    try:
        yield f"http://127.0.0.1:{port}", b
    finally:

        async def stop() -> None:
            holder["server"].close()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


FAST_SERVER = """
import asyncio, socket, sys, uvloop
ANSWER = b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\nContent-Type: text/plain\\r\\n\\r\\nok"
class Canned(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
    def data_received(self, data):
        self.transport.write(ANSWER * data.count(b"\\r\\n\\r\\n"))
async def main():
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", int(sys.argv[1])))
    server = await asyncio.get_running_loop().create_server(Canned, sock=sock, backlog=1024)
    print("ready", flush=True)
    await server.serve_forever()
uvloop.run(main())
"""


@contextmanager
def fast_server(processes: int = 2) -> Iterator[str]:
    """A canned-answer uvloop server in `processes` processes (SO_REUSEPORT), as fast as wrk's targets."""
    import subprocess
    import sys

    port = free_port()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", FAST_SERVER, str(port)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(processes)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield f"http://127.0.0.1:{port}"
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(5)


# Servers we did not write: Python's http.server (HTTP/1.0: every response closes its connection,
# a body may end at the close), uvicorn streaming a chunked body, nginx serving a static file.
STDLIB_SERVER = """
import sys
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
class Handler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass
    def do_GET(self):
        if self.path != "/until-close":
            return super().do_GET()
        self.send_response(200)  # HTTP/1.0, no Content-Length: the close ends the body
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(b"x" * 5000)
ThreadingHTTPServer.daemon_threads = True
print("ready", flush=True)
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""

CHUNKED_APP = """
import sys, uvicorn
from starlette.applications import Starlette
from starlette.responses import StreamingResponse
from starlette.routing import Route
async def parts():
    for part in (b"a" * 100, b"b" * 3000, b"c"):
        yield part
async def chunked(request):
    return StreamingResponse(parts(), media_type="text/plain")
app = Starlette(routes=[Route("/chunked", chunked)])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""

NGINX_CONF = """
daemon off;
master_process off;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {root}; proxy_temp_path {root}; fastcgi_temp_path {root};
    uwsgi_temp_path {root}; scgi_temp_path {root};
    server {{
        listen 127.0.0.1:{port};
        location / {{ root {root}; }}
    }}
}}
"""


@contextmanager
def third_party(kind: str, root: str) -> Iterator[str]:
    """A server we did not write ('stdlib', 'chunked' or 'nginx') serving `root`; its base URL."""
    import pathlib
    import shutil
    import sys

    port = free_port()
    folder = pathlib.Path(root)
    (folder / "index.html").write_bytes(b"<p>" + b"static " * 100 + b"</p>\n")
    if kind == "nginx":
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        conf = folder / "nginx.conf"
        conf.write_text(NGINX_CONF.format(root=folder, port=port))
        command = [nginx, "-c", str(conf), "-e", str(folder / "error.log")]
    else:
        source = STDLIB_SERVER if kind == "stdlib" else CHUNKED_APP
        command = [sys.executable, "-c", source, str(port)]
    proc = subprocess.Popen(command, cwd=folder, stdout=subprocess.DEVNULL)
    try:
        if not wait_for_port(port):
            raise RuntimeError(f"{kind} did not listen on port {port} (exit {proc.poll()})")
        yield f"http://127.0.0.1:{port}"
    finally:
        _process.stop(proc)
