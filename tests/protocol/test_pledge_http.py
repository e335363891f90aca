"""The pledge's one-connection HTTP/1.1 client (pledge_sim.http) against canned servers.

Each server is an asyncio TLS listener that answers fixed bytes, so every framing the
client must handle (RFC 9112: Content-Length, chunked, close-delimited, interim 1xx,
keep-alive, Connection: close) and every limit it keeps is exercised on a real socket.
"""

from __future__ import annotations

import asyncio
import ssl
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypedDict, Unpack

import pytest
from cryptography.hazmat.primitives import serialization

from brski.errors import LocalError, MalformedInput, PayloadTooLarge, PeerError
from brski.pledge import retry_after_seconds
from pledge_sim.http import HttpConnection
from tests.protocol.net import issue, key_pem, name

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def server_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, bytes]:
    """A throwaway self-signed server certificate (generated per run, never stored)."""
    cert, key = issue(name("canned registrar"), issuer_cert=None, issuer_key=None)
    d = tmp_path_factory.mktemp("tls")
    (d / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / "tls.key").write_bytes(key_pem(key))
    return d / "tls.crt", d / "tls.key", cert.public_bytes(serialization.Encoding.DER)


@pytest.fixture
def tls_server_ctx(server_cert: tuple[Path, Path, bytes]) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(server_cert[0], server_cert[1])
    return ctx


async def _serve(ctx: ssl.SSLContext, responses: list[bytes], seen: list[bytes]) -> asyncio.Server:
    """A canned HTTP/1.1 server: reads one request (with its body), answers the next response."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while responses:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                return
            body = b""
            if b"transfer-encoding: chunked" in head.lower():
                while size := int((await reader.readline()).split(b";")[0], 16):
                    body += (await reader.readexactly(size + 2))[:-2]
                await reader.readexactly(2)
            elif b"content-length:" in head.lower():
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                body = await reader.readexactly(length)
            seen.append(head + body)
            answer = responses.pop(0)
            writer.write(answer)
            await writer.drain()
            if b"close" in answer.lower() or answer.startswith(b"HTTP/1.0"):
                writer.close()
                return

    return await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx)


class _Limits(TypedDict, total=False):
    """The HttpConnection keywords a test may set (the rest keep its defaults)."""

    timeout: float
    max_body: int


def _client(server: asyncio.Server, **kw: Unpack[_Limits]) -> HttpConnection:
    # No client certificate: these servers do not ask for one.
    port = server.sockets[0].getsockname()[1]
    return HttpConnection(host="127.0.0.1", port=port, credentials=None, **kw)


async def test_keepalive_chunked_interim_and_close(
    tls_server_ctx: ssl.SSLContext, server_cert: tuple[Path, Path, bytes]
) -> None:
    seen: list[bytes] = []
    responses = [
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\nx-a: 2\r\n\r\n"
        b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: t\r\n\r\n",
        b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\nRetry-After: 3600\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
    ]
    server = await _serve(tls_server_ctx, responses, seen)
    client = _client(server)
    try:
        # The exact end-entity certificate is available before any request (RFC 8995 5.1).
        assert await client.connect() == server_cert[2]
        body = b"x" * 10_000
        first = await client.request(
            "POST", "/a", headers={"Content-Type": "t/x"}, body=body, chunked=True
        )
        assert (first.status, first.body) == (200, b"hello world")
        assert first.headers.get_all("X-A") == ["1", "2"] and first.headers["x-a"] == "1"
        assert seen[0].endswith(body) and b"transfer-encoding: chunked" in seen[0].lower()
        second = await client.request("GET", "/b")
        assert retry_after_seconds(second.headers, NOW) == 60
        third = await client.request("GET", "/c")
        assert third.body == b"ok" and not client.is_open
        with pytest.raises(LocalError) as info:  # no silent reconnection
            await client.request("GET", "/d")
        assert info.value.check == "http.connection-closed"
        assert client.connections_opened == 1
    finally:
        await client.close()
        server.close()


async def test_close_delimited_body_ends_the_connection(tls_server_ctx: ssl.SSLContext) -> None:
    seen: list[bytes] = []
    server = await _serve(tls_server_ctx, [b"HTTP/1.0 200 OK\r\n\r\nuntil eof"], seen)
    client = _client(server)
    try:
        await client.connect()
        answer = await client.request("GET", "/")
        assert answer.body == b"until eof" and not client.is_open
    finally:
        await client.close()
        server.close()


@pytest.mark.parametrize(
    ("answer", "error", "check"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2000000\r\n\r\n", PayloadTooLarge, "http.response-too-large"),
        (b"HTTP/1.1 200 OK\r\n" + b"X-Big: " + b"a" * 70_000 + b"\r\n\r\n", PayloadTooLarge, "http.response-too-large"),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            + (b"ffff\r\n" + b"a" * 0xFFFF + b"\r\n") * 20,  # 1.3 MB, no length announced
            PayloadTooLarge,
            "http.response-too-large",
        ),
        (b"HTTQ/1.1 200 OK\r\n\r\n", MalformedInput, "http.malformed-response"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nab", LocalError, "http.connection-closed"),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" + b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
            MalformedInput,
            "http.malformed-response",
        ),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nBad Name: x\r\n\r\nok", MalformedInput, "http.malformed-response"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", MalformedInput, "http.malformed-response"),
    ],
)
async def test_refusals(
    tls_server_ctx: ssl.SSLContext, answer: bytes, error: type[PeerError], check: str
) -> None:
    seen: list[bytes] = []
    server = await _serve(tls_server_ctx, [answer], seen)
    client = _client(server, max_body=1 << 20)
    try:
        await client.connect()
        with pytest.raises(error) as info:
            await client.request("GET", "/")
        assert info.value.check == check
        assert not client.is_open
    finally:
        await client.close()
        server.close()


async def test_timeout(tls_server_ctx: ssl.SSLContext) -> None:
    seen: list[bytes] = []
    server = await _serve(tls_server_ctx, [b"HTTP/1.1 200 OK\r\n"], seen)  # never finishes
    client = _client(server, timeout=0.3)
    try:
        await client.connect()
        with pytest.raises(LocalError) as info:
            await client.request("GET", "/")
        assert info.value.check == "http.timeout"
    finally:
        await client.close()
        server.close()


@pytest.mark.parametrize(
    ("method", "path", "headers", "check"),
    [
        *(("GET", path, {}, "http.bad-path") for path in ["relative", "/a b", "/nul\x00", "/caf\u00e9", "/tab\t"]),
        ("GET", "/", {"X-A": "1\r\nX-Injected: 2"}, "http.bad-header"),
        ("GET", "/", {"Bad Name": "1"}, "http.bad-header"),
        ("POST", "/", {"Content-Length": "0"}, "http.bad-header"),  # framing is the client's own
        ("GET", "/", {"Host": "elsewhere"}, "http.bad-header"),
        ("GET", "/", {"X-A": "caf\u00e9"}, "http.bad-header"),
        ("GET", "/", {"X-A": "bell\x07"}, "http.bad-header"),
        ("G ET", "/", {}, "http.bad-method"),
        ("HEAD", "/", {}, "http.bad-method"),
    ],
)
async def test_requests_the_client_will_not_write(
    tls_server_ctx: ssl.SSLContext, method: str, path: str, headers: dict[str, str], check: str
) -> None:
    seen: list[bytes] = []
    server = await _serve(tls_server_ctx, [b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"], seen)
    client = _client(server)
    try:
        await client.connect()
        with pytest.raises(LocalError) as info:
            await client.request(method, path, headers=headers)
        assert info.value.check == check and seen == []  # nothing went on the wire
        answer = await client.request("GET", "/", headers={"X-Ok": " padded\t"})
        assert answer.status == 200 and b"\r\nX-Ok: padded\r\n" in seen[0]
    finally:
        await client.close()
        server.close()


async def test_connection_close_held_open_lets_the_caller_watch_the_server_close(
    tls_server_ctx: ssl.SSLContext,
) -> None:
    seen: list[bytes] = []
    server = await _serve(tls_server_ctx, [b"HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\nConnection: close\r\n\r\nno"], seen)
    client = _client(server)
    try:
        await client.connect()
        answer = await client.request("POST", "/", body=b"x", hold_open=True)
        assert (answer.status, answer.body) == (403, b"no")
        assert await client.peer_closed(timeout=5.0)
        with pytest.raises(LocalError) as info:
            await client.request("GET", "/")
        assert info.value.check == "http.connection-closed"
    finally:
        await client.close()
        server.close()


async def _delayed_server(ctx: ssl.SSLContext, delays: list[float | None]) -> asyncio.Server:
    """Answers the n-th request after delays[n] seconds (None: never)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for delay in delays:
            try:
                await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                return
            if delay is None:
                await asyncio.sleep(30)
                return
            await asyncio.sleep(delay)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()

    return await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx)


async def test_each_request_has_its_own_deadline_on_one_timer(
    tls_server_ctx: ssl.SSLContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The timeout bounds each request, counted from its own start: a request that
    begins late in the first one's window still gets the whole timeout (the one
    timer is moved on, not fired), and one that never ends still times out."""
    server = await _delayed_server(tls_server_ctx, [0.0, 0.6, 0.0, None])
    client = _client(server, timeout=1.0)
    try:
        await client.connect()
        loop = asyncio.get_running_loop()
        timers: list[str] = []  # the client's: its own clock or asyncio.timeout's (the server uses neither)
        real_call_at = loop.call_at

        def counting(when: float, callback: Any, *args: Any, **kw: Any) -> asyncio.TimerHandle:
            name = getattr(callback, "__qualname__", "")
            if name.startswith(("HttpConnection.", "Timeout.")):
                timers.append(name)
            return real_call_at(when, callback, *args, **kw)

        monkeypatch.setattr(loop, "call_at", counting)
        assert (await client.request("GET", "/1")).body == b"ok"
        await asyncio.sleep(0.6)
        # 1.2 s after the first request started, 0.6 s into this one: still in time.
        assert (await client.request("GET", "/2")).body == b"ok"
        assert (await client.request("GET", "/3")).body == b"ok"
        with pytest.raises(LocalError) as info:
            await client.request("GET", "/4")
        assert info.value.check == "http.timeout" and not client.is_open
        # One clock for the connection, moved on only when it fires before the deadline
        # of the request then in flight: no timer a request, none to close.
        assert set(timers) == {"HttpConnection._watch"} and len(timers) <= 4, timers
    finally:
        await client.close()
        server.close()


def test_the_client_speaks_over_uvloops_transports(server_cert: tuple[Path, Path, bytes]) -> None:
    """The fleet's loop (uvloop) hands the TLS layer a TCP transport that is not an
    asyncio.Transport subclass; the pledge's connection, requests and close work
    on it as on asyncio's own."""
    from pledge_sim.fleet import fleet_loop_factory, run_on_fleet_loop

    assert fleet_loop_factory() is not None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(server_cert[0], server_cert[1])

    async def exchange() -> tuple[bytes, bytes, bool]:
        seen: list[bytes] = []
        server = await _serve(ctx, [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"] * 2, seen)
        client = _client(server)
        try:
            der = await client.connect()
            first = await client.request("POST", "/a", body=b"x" * 100_000)
            second = await client.request("GET", "/b")
            return der, first.body + second.body, client.is_open
        finally:
            await client.close()
            server.close()

    der, bodies, still_open = run_on_fleet_loop(exchange())
    assert der == server_cert[2] and bodies == b"okok" and still_open
