"""brski_web.tls under load and at the end: volume and flow control, closing
and failures (real TLS on loopback; the wiring is in test_tls_transport.py's
docstring)."""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import os
import socket
import ssl
from dataclasses import replace

import aiohttp
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec

from brski.errors import ConfigError
from brski_web import tls
from brski_web.tls import (
    bound_port,
    build_context,
    start_tls_server,
)
from tests.protocol.tls_transport_helpers import (
    DER,
    MB5,
    Pki,
    _cfg,
    _client_ctx,
    _get_json,
    _key_pem,
    _payload,
    serve,
)

# --- volume and flow control -------------------------------------------------------------


async def test_large_bodies_with_back_pressure(tls_pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, int] = {"pause_read": 0, "pause_write": 0}
    orig_pause_reading = tls.TlsServerProtocol._pause_reading
    orig_pause_writing = tls.TlsServerProtocol.pause_writing

    def pause_reading(self: tls.TlsServerProtocol) -> None:
        seen["pause_read"] += 1
        orig_pause_reading(self)

    def pause_writing(self: tls.TlsServerProtocol) -> None:
        seen["pause_write"] += 1
        orig_pause_writing(self)

    monkeypatch.setattr(tls.TlsServerProtocol, "_pause_reading", pause_reading)
    monkeypatch.setattr(tls.TlsServerProtocol, "pause_writing", pause_writing)

    upload = os.urandom(MB5)
    ctx = _client_ctx(tls_pki, tls_pki.trusted_client)
    async with serve(_cfg(tls_pki)) as port, aiohttp.ClientSession() as session:
        base = f"https://127.0.0.1:{port}"
        async with session.post(f"{base}/digest", data=io.BytesIO(upload), ssl=ctx) as resp:
            assert resp.status == 200
            assert await resp.json() == {
                "sha256": hashlib.sha256(upload).hexdigest(),
                "size": MB5,
            }
        for path in ("/big", "/big-stream"):
            async with session.get(f"{base}{path}", ssl=ctx) as resp:
                assert resp.status == 200
                h = hashlib.sha256()
                async for chunk in resp.content.iter_chunked(65536):
                    h.update(chunk)
                    await asyncio.sleep(0)  # a slowish reader
                assert h.digest() == hashlib.sha256(_payload(MB5)).digest()
    assert seen["pause_read"] > 0  # the slow handler made aiohttp pause us
    assert seen["pause_write"] > 0  # the socket buffer filled and aiohttp was told


async def test_200_requests_on_one_keepalive_connection(tls_pki: Pki) -> None:
    ctx = _client_ctx(tls_pki, tls_pki.trusted_client)
    connector = aiohttp.TCPConnector(limit=1)
    async with serve(_cfg(tls_pki)) as port, aiohttp.ClientSession(connector=connector) as session:
        peers = set()
        for _ in range(200):
            async with session.get(f"https://127.0.0.1:{port}/info", ssl=ctx) as resp:
                assert resp.status == 200
                peers.add(tuple((await resp.json())["peername"]))
    assert len(peers) == 1


async def test_each_response_is_one_tls_write(tls_pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    """aiohttp hands a response's head and body to the transport in one write
    (it holds the head back until the body comes), so each response is
    encrypted and sent as one piece: one SSL_write, one socket send."""
    writes: list[int] = []
    orig_write = tls.TlsServerProtocol._write

    def _write(self: tls.TlsServerProtocol, data: bytes | bytearray | memoryview) -> None:
        writes.append(len(data))
        orig_write(self, data)

    monkeypatch.setattr(tls.TlsServerProtocol, "_write", _write)
    ctx = _client_ctx(tls_pki, tls_pki.trusted_client)
    async with serve(_cfg(tls_pki)) as port, aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:
        for _ in range(5):
            async with session.get(f"https://127.0.0.1:{port}/info", ssl=ctx) as resp:
                assert resp.status == 200
                await resp.read()
    assert len(writes) == 5 and all(n > 200 for n in writes)  # head and body together


async def test_peer_identity_is_read_once_per_connection(tls_pki: Pki) -> None:
    """brski_web.identity parses a connection's client chain once: every request
    on a keep-alive connection gets the same PeerIdentity, another connection
    (another client certificate) its own."""
    from brski.pki import device_serial, fingerprint_sha256
    from brski_web.identity import peer_identity

    async def who(request: web.Request) -> web.Response:
        peer = peer_identity(request)
        assert peer.leaf is not None
        # The parsed chain, the DER and the leaf facts kept with it agree.
        transport = request.transport
        assert transport is not None
        der_chain = transport.get_extra_info("peercert_chain")
        assert [c.public_bytes(DER) for c in (peer.leaf, *peer.chain)] == der_chain
        assert transport.get_extra_info("peercert_x509") == (peer.leaf, *peer.chain)
        assert peer.leaf_der == der_chain[0] == transport.get_extra_info("peercert")
        assert peer.fingerprint == fingerprint_sha256(peer.leaf)
        assert peer.subject_text == peer.leaf.subject.rfc4514_string()
        assert peer.device_serial == device_serial(peer.leaf)
        return web.json_response({"id": id(peer), "leaf": peer.leaf.public_bytes(DER).hex()})

    app = web.Application()
    app.router.add_get("/who", who)
    runner = web.AppRunner(app)
    await runner.setup()
    assert runner.server is not None
    server = await start_tls_server(runner.server, host="127.0.0.1", port=0, cfg=_cfg(tls_pki, accept_untrusted_clients=True))
    port = bound_port(server)
    try:
        seen: dict[str, set[int]] = {}
        for cert in (tls_pki.trusted_client, tls_pki.untrusted_client):
            connector = aiohttp.TCPConnector(limit=1)
            ctx = _client_ctx(tls_pki, cert)
            async with aiohttp.ClientSession(connector=connector) as session:
                for _ in range(5):
                    async with session.get(f"https://127.0.0.1:{port}/who", ssl=ctx) as resp:
                        body = await resp.json()
                        seen.setdefault(body["leaf"], set()).add(body["id"])
    finally:
        server.close()
        await runner.cleanup()
        await server.wait_closed()
    assert len(seen) == 2  # two clients, told apart
    assert [len(ids) for ids in seen.values()] == [1, 1]  # one identity object per connection


async def _raw_request(port: int, ctx: ssl.SSLContext) -> tuple[bytes, bytes]:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=ctx, server_hostname="localhost"
    )
    writer.write(b"GET /info HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    await writer.drain()
    data = await reader.read()  # until the server's close
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return head, body


async def test_100_concurrent_connections(tls_pki: Pki) -> None:
    ctx = _client_ctx(tls_pki, tls_pki.trusted_client)
    async with serve(_cfg(tls_pki)) as port:
        results = await asyncio.gather(*(_raw_request(port, ctx) for _ in range(100)))
    assert all(head.startswith(b"HTTP/1.1 200") for head, _ in results)
    exporters = {body.split(b'"exporter": "')[1][:64] for _, body in results}
    assert len(exporters) == 100


# --- closing and failures -----------------------------------------------------------------


def _blocking_request(port: int, ctx: ssl.SSLContext) -> bytes:
    """A client that refuses a truncated stream: only a close_notify ends it quietly."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost", suppress_ragged_eofs=False) as conn:
            conn.sendall(b"GET /info HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := conn.recv(65536):
                data += chunk
            return data


async def test_server_closes_with_close_notify(tls_pki: Pki) -> None:
    async with serve(_cfg(tls_pki)) as port:
        data = await asyncio.to_thread(
            _blocking_request, port, _client_ctx(tls_pki, tls_pki.trusted_client)
        )
    assert data.startswith(b"HTTP/1.1 200")


async def test_handshake_then_hang_up_is_quiet(tls_pki: Pki, caplog: pytest.LogCaptureFixture) -> None:
    """What ``openssl s_time -new``, scanners and health checks do: a full
    handshake, no request, and gone before the server's post-handshake flight
    (the TLS 1.3 tickets) is written.  The transport must not start the inner
    protocol on a transport that is already closing: aiohttp's request task then
    found its connection lost before its first step and logged an ERROR with a
    traceback for every such connection (about 400 a second under s_time)."""
    import gc
    import shutil

    if shutil.which("openssl") is None:
        pytest.skip("openssl command not installed")
    caplog.set_level(logging.ERROR)
    cert, key = tls_pki.untrusted_client  # as a pledge is, to the TLS layer (RFC 8995 5.3)
    async with serve(_cfg(tls_pki, client_auth="optional", accept_untrusted_clients=True)) as port:
        proc = await asyncio.create_subprocess_exec(
            "openssl", "s_time", "-connect", f"127.0.0.1:{port}", "-new", "-time", "1",
            "-cert", cert, "-key", key,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )
        out, _ = await proc.communicate()
        await asyncio.sleep(0.2)
        gc.collect()  # "Task exception was never retrieved" is logged when the task is freed
        await asyncio.sleep(0)
        facts = await _get_json(port, _client_ctx(tls_pki, tls_pki.trusted_client))
    assert b"connections in" in out  # s_time completed handshakes
    assert facts["verified"] is True
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], errors[:3]


async def test_handshake_timeout_and_garbage_do_not_hurt_the_server(tls_pki: Pki) -> None:
    cfg = replace(_cfg(tls_pki), handshake_timeout=0.3)
    async with serve(cfg) as port:
        # silent client: dropped after the timeout
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            assert await asyncio.wait_for(reader.read(), timeout=3) == b""
        except ConnectionResetError:
            pass
        writer.close()
        # not TLS at all: an alert (or nothing), then close
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            await asyncio.wait_for(reader.read(), timeout=3)
        except ConnectionResetError:
            pass
        writer.close()
        # half a ClientHello, then hang up
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
        writer.close()
        facts = await _get_json(port, _client_ctx(tls_pki, tls_pki.trusted_client))
    assert facts["verified"] is True


def test_config_validation(tls_pki: Pki) -> None:
    with pytest.raises(ConfigError):
        _cfg(tls_pki, client_auth="maybe")
    with pytest.raises(ConfigError):
        _cfg(tls_pki, client_auth="none", accept_untrusted_clients=True)
    with pytest.raises(ConfigError):
        _cfg(tls_pki, client_auth="require", client_trust_pem=None)
    with pytest.raises(ConfigError):
        _cfg(tls_pki, handshake_timeout=0)
    with pytest.raises(ConfigError):
        build_context(_cfg(tls_pki, key_pem=b"not a key"))
    with pytest.raises(ConfigError):
        build_context(_cfg(tls_pki, cert_chain_pem=b"not a cert"))
    other_key = _key_pem(ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(ConfigError):
        build_context(_cfg(tls_pki, key_pem=other_key))  # key does not match the leaf


async def test_shutdown_with_idle_keepalive_connections(
    tls_pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    """runner.cleanup() closes idle connections through TlsTransport.close() quietly."""
    caplog.set_level(logging.WARNING)
    ctx = _client_ctx(tls_pki, tls_pki.trusted_client)
    async with aiohttp.ClientSession() as session:
        async with serve(_cfg(tls_pki)) as port:
            for _ in range(3):
                async with session.get(f"https://127.0.0.1:{port}/info", ssl=ctx) as resp:
                    assert resp.status == 200
        # the server is gone; the pooled connection was closed by it, not left hanging
        with pytest.raises(aiohttp.ClientError):
            async with session.get(f"https://127.0.0.1:{port}/info", ssl=ctx) as resp:
                await resp.read()
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
