"""The join proxy's circuit relay on loopback: bytes through unchanged, and each
bound (total, per source, idle, lifetime, bytes, unreachable registrar) refusing
or closing with its reason counted (RFC 8995 4.3)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from join_proxy.config import CircuitLimits, Upstream
from join_proxy.relay import CircuitRelay


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.write_eof()
    except OSError:
        pass
    finally:
        writer.close()


@pytest.fixture
async def echo() -> AsyncIterator[Upstream]:
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    yield Upstream(host="127.0.0.1", port=server.sockets[0].getsockname()[1])
    server.close()


LIMITS = CircuitLimits(max_circuits=16, max_circuits_per_source=4, connect_timeout_s=5.0, idle_timeout_s=30.0,
                       max_circuit_s=60.0, max_circuit_bytes=1 << 20)


async def _relay(relay: CircuitRelay) -> tuple[asyncio.Server, int]:
    server = await asyncio.start_server(relay.handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def _from(source: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection from another loopback address: another pledge."""
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))


async def _eof_within(reader: asyncio.StreamReader, seconds: float = 20.0) -> bytes:
    """What the relay sent before closing (waits for the close, bounded)."""
    async with asyncio.timeout(seconds):
        try:
            return await reader.read()
        except ConnectionResetError:
            return b""


async def test_bytes_pass_unchanged_both_ways(echo: Upstream) -> None:
    relay = CircuitRelay(LIMITS, lambda: [echo])
    server, port = await _relay(relay)
    payload = os.urandom(300_000)
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(payload)
    w.write_eof()
    assert await _eof_within(r) == payload
    w.close()
    server.close()
    await server.wait_closed()
    assert relay.opened == 1


async def test_per_source_limit_refuses_that_source_only(echo: Upstream) -> None:
    relay = CircuitRelay(replace(LIMITS, max_circuits_per_source=2), lambda: [echo])
    server, port = await _relay(relay)
    held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
    for r, w in held:  # both circuits are up: a byte comes back through each
        w.write(b"x")
        assert await r.readexactly(1) == b"x"
    r3, w3 = await asyncio.open_connection("127.0.0.1", port)
    assert await _eof_within(r3) == b""
    assert relay.refused["source-limit"] == 1
    # Another source is still served while the first one holds its maximum.
    r6, w6 = await _from("127.0.0.2", port)
    w6.write(b"other pledge")
    assert await r6.readexactly(12) == b"other pledge"
    for w in (*(w for _, w in held), w3, w6):
        w.close()
    server.close()


async def test_total_limit(echo: Upstream) -> None:
    relay = CircuitRelay(replace(LIMITS, max_circuits=2, max_circuits_per_source=2), lambda: [echo])
    server, port = await _relay(relay)
    a = await asyncio.open_connection("127.0.0.1", port)
    b = await asyncio.open_connection("127.0.0.1", port)
    for r, w in (a, b):
        w.write(b"y")
        await r.readexactly(1)
    r, w = await _from("127.0.0.2", port)
    assert await _eof_within(r) == b""
    assert relay.refused["circuit-limit"] == 1
    for _, wr in (a, b, (r, w)):
        wr.close()
    server.close()


@pytest.mark.parametrize(
    ("limits", "reason"),
    [
        (replace(LIMITS, idle_timeout_s=0.3), "idle"),
        (replace(LIMITS, max_circuit_s=0.5), "lifetime"),
        (replace(LIMITS, max_circuit_bytes=1000), "bytes"),
    ],
)
async def test_bounds_close_the_circuit_with_their_reason(echo: Upstream, limits: CircuitLimits, reason: str) -> None:
    relay = CircuitRelay(limits, lambda: [echo])
    server, port = await _relay(relay)
    r, w = await asyncio.open_connection("127.0.0.1", port)
    if reason == "idle":
        w.write(b"hello")
        assert await r.readexactly(5) == b"hello"  # then nothing, either way
    elif reason == "lifetime":
        async def chatter() -> None:  # never idle, but it lives too long
            while True:
                w.write(b".")
                await asyncio.sleep(0.05)

        task = asyncio.create_task(chatter())
    else:
        w.write(b"z" * 5000)
    await _eof_within(r)
    if reason == "lifetime":
        task.cancel()
    async with asyncio.timeout(10):
        while not relay.closed:
            await asyncio.sleep(0.02)
    assert dict(relay.closed) == {reason: 1}
    w.close()
    server.close()


async def test_unreachable_registrar_is_refused_then_the_next_one_is_used(echo: Upstream) -> None:
    dead = await asyncio.start_server(_echo, "127.0.0.1", 0)
    dead_port = dead.sockets[0].getsockname()[1]
    dead.close()
    await dead.wait_closed()
    upstreams = [Upstream(host="127.0.0.1", port=dead_port)]
    told: list[bool] = []
    relay = CircuitRelay(LIMITS, lambda: upstreams, on_unreachable=lambda: told.append(True))
    server, port = await _relay(relay)
    r, w = await asyncio.open_connection("127.0.0.1", port)
    assert await _eof_within(r) == b""
    assert relay.refused["registrar-unreachable"] == 1
    assert told == [True]  # the service is told, to look for the registrar again
    upstreams.append(echo)
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(b"second registrar")
    assert await r.readexactly(16) == b"second registrar"
    assert told == [True]
    w.close()
    server.close()


async def test_registrar_that_cannot_announce_does_not_start(tmp_path: object) -> None:
    """``mdns_interfaces`` naming a missing interface: a configuration error at
    startup (exit 2 from the CLI), not a registrar silently unannounced."""
    from datetime import UTC, datetime
    from pathlib import Path

    from aiohttp import web

    from brski.devpki import build_dev_pki
    from brski.errors import ConfigError
    from brski_cli.pki_cmd import write_dev_pki
    from registrar.app import create_app
    from registrar.config import load_config

    root = Path(str(tmp_path))
    write_dev_pki(root / "pki", build_dev_pki(pledges=0, masa_url="https://localhost:1", now=datetime.now(UTC)), force=True)
    c = root / "pki"
    cfg = load_config(None, {
        "tls_cert": c / "registrar/tls.crt", "tls_key": c / "registrar/tls.key",
        "ca_cert": c / "registrar/domain-ca.crt", "ca_key": c / "registrar/domain-ca.key",
        "ra_cert": c / "registrar/ra.crt", "ra_key": c / "registrar/ra.key",
        "masa_trust": [c / "manufacturer/root-ca.crt"], "manufacturer_anchors": [c / "manufacturer/root-ca.crt"],
        "database": f"sqlite:///{root}/r.db", "port": 8443, "mdns_interfaces": ["nosuch0"],
    })
    runner = web.AppRunner(create_app(cfg))
    with pytest.raises(ConfigError) as exc:
        await runner.setup()
    assert exc.value.check == "config.network"
    await runner.cleanup()
