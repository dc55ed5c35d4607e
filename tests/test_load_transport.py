"""Raw transport: keep-alive, status parsing, reconnect after close, error classification."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import httpx
import pytest

from workbench.load import Generators
from workbench.load._scenario import Scenario
from workbench.load._transport import RawConnection, classify_exception, connect_raw

from .load_servers import serve, third_party


class _Recorder:
    """Collects what connections report and signals each outcome."""

    def __init__(self) -> None:
        self.outcomes: list[object] = []
        self.event = asyncio.Event()

    def on_response(self, conn: object, status: int) -> None:
        self.outcomes.append(status)
        self.event.set()

    def on_failure(self, conn: object, kind: str) -> None:
        self.outcomes.append(kind)
        self.event.set()

    async def send(self, conn: RawConnection, data: bytes) -> object:
        self.event.clear()
        conn.busy = True
        assert conn.transport is not None
        conn.transport.write(data)
        await asyncio.wait_for(self.event.wait(), 2)
        return self.outcomes[-1]


def _request(base: str, path: str) -> bytes:
    return Scenario.default(path).encode_pool(base, count=1)[0]


def test_keep_alive_status_and_reconnect() -> None:
    async def scenario(base: str) -> None:
        host, port = "127.0.0.1", int(base.rsplit(":", 1)[1])
        owner = _Recorder()
        conn = RawConnection(owner)  # type: ignore[arg-type]
        await connect_raw(conn, host, port, timeout=2)
        first = conn.transport
        assert await owner.send(conn, _request(base, "/")) == 200
        assert await owner.send(conn, _request(base, "/status/418")) == 418
        assert conn.transport is first  # same keep-alive connection
        assert await owner.send(conn, _request(base, "/once")) == 200  # Connection: close
        assert conn.transport is None
        await connect_raw(conn, host, port, timeout=2)
        assert await owner.send(conn, _request(base, "/close")) == "reset"
        await asyncio.sleep(0.05)
        await connect_raw(conn, host, port, timeout=2)
        assert await owner.send(conn, _request(base, "/")) == 200
        conn.drop()

    with serve() as (url, behaviour):
        asyncio.run(scenario(url))
    assert behaviour.paths["/"] == 2


def test_classify_exception() -> None:
    request = httpx.Request("GET", "http://x/")
    assert classify_exception(httpx.ReadTimeout("t", request=request)) == "timeout"
    assert classify_exception(httpx.ConnectError("c", request=request)) == "connect"
    assert classify_exception(ConnectionRefusedError()) == "connect"
    assert classify_exception(httpx.RemoteProtocolError("r", request=request)) == "reset"
    assert classify_exception(ValueError()) == "other"


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """One server of each kind we did not write, shared by the module's tests: kind -> base URL."""
    with contextlib.ExitStack() as stack:
        yield {
            kind: stack.enter_context(third_party(kind, str(tmp_path_factory.mktemp(kind))))
            for kind in ("stdlib", "chunked")
        }


@pytest.mark.slow
@pytest.mark.parametrize("path", ["/", "/status/500"])
def test_httpx_mode_reports_statuses(path: str, generators: Generators) -> None:
    from workbench.load import run_load

    with serve() as (url, _):
        result = run_load(
            url + path,
            duration=1.0,
            warmup=0,
            connections=2,
            think_time=0.02,
            transport="httpx",
            progress=False,
            generators=generators,
        )
    assert result.completed > 20
    answered = result.completed + result.late
    assert result.error_classes["status_5xx"] == (answered if "500" in path else 0)


@pytest.mark.parametrize("transport", ["raw", "httpx"])
@pytest.mark.parametrize(
    ("kind", "path"),
    [
        ("stdlib", "/index.html"),  # HTTP/1.0 with a length: each response closes
        ("stdlib", "/until-close"),  # HTTP/1.0 without a length: the close ends the body
        ("chunked", "/chunked"),  # HTTP/1.1 keep-alive, Transfer-Encoding: chunked
    ],
)
def test_servers_we_did_not_write_are_answered_not_failed(
    kind: str, path: str, transport: str, servers: dict[str, str], generators: Generators
) -> None:
    from workbench.load import run_load

    result = run_load(
        servers[kind] + path, duration=1.0, warmup=0, connections=4, processes=1,
        transport=transport, progress=False, generators=generators,
    )  # fmt: skip
    assert result.completed > 50, result.error_classes
    assert result.errors == 0, result.error_classes
    assert sum(result.generator_errors.values()) == 0, result.generator_errors


def test_a_body_cut_short_by_the_close_is_a_reset_not_a_response() -> None:
    """A response whose Content-Length is not reached before the close is a failure."""

    async def scenario(host: str, port: int) -> object:
        owner = _Recorder()
        conn = RawConnection(owner)  # type: ignore[arg-type]
        await connect_raw(conn, host, port, timeout=2)
        return await owner.send(conn, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")

    async def truncating(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort")
        await writer.drain()
        writer.close()

    async def main() -> object:
        server = await asyncio.start_server(truncating, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            return await scenario("127.0.0.1", port)

    assert asyncio.run(main()) == "reset"
