"""The pledge's TLS client (``brski_tls.client``) against real TLS servers.

What a pledge relies on: the server sees the IDevID leaf *and* its
intermediates (the registrar verifies the chain, RFC 8995 5.3); no
credentials means no certificate; the exact server certificate is known
before the first request (5.1); a handshake that fails is a named error, not
a hang; and fleets of pledges sharing an intermediate share one context.
"""

from __future__ import annotations

import asyncio
import gc
import ssl
import weakref
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from brski.devpki import DevPki, build_dev_pki
from brski.errors import LocalError
from brski.pki import cert_der
from brski_tls import client as tls_client
from brski_web.tls import TlsServerConfig, bound_port, start_tls_server
from pledge_sim.http import HttpConnection
from pledge_sim.service import client_context

pytestmark = pytest.mark.asyncio

SERIAL = "PLG-000001"


@pytest.fixture(scope="module")
def pki() -> DevPki:
    return build_dev_pki(pledges=2, masa_url="https://localhost:1", now=datetime.now(UTC))


class _Echo(asyncio.Protocol):
    """Answers every request with what TLS told the server about the client."""

    def __init__(self, seen: list[dict[str, Any]]) -> None:
        self.seen = seen

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        info = {k: self.transport.get_extra_info(k) for k in ("peercert_chain", "peer_verified", "tls_version")}
        self.seen.append(info)
        body = b"%d" % len(info["peercert_chain"])
        assert isinstance(self.transport, asyncio.Transport)
        self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))


@pytest.fixture
async def server(pki: DevPki) -> AsyncIterator[tuple[int, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []
    cfg = TlsServerConfig(
        cert_chain_pem=pki.files["registrar/tls.crt"],
        key_pem=pki.files["registrar/tls.key"],
        client_auth="optional",
        client_trust_pem=pki.files["manufacturer/root-ca.crt"],
        accept_untrusted_clients=True,
    )
    srv = await start_tls_server(lambda: _Echo(seen), host="127.0.0.1", port=0, cfg=cfg)
    yield bound_port(srv), seen
    srv.close()


def _any_client_server(pki: DevPki) -> TlsServerConfig:
    """The registrar's TLS certificate, any client certificate accepted."""
    return TlsServerConfig(
        cert_chain_pem=pki.files["registrar/tls.crt"],
        key_pem=pki.files["registrar/tls.key"],
        client_auth="optional",
        accept_untrusted_clients=True,
    )


def _pledge(pki: DevPki, serial: str = SERIAL) -> tls_client.ClientCredentials:
    chain = pki.certs(f"pledges/{serial}/chain.pem")
    return client_context([pki.cert(f"pledges/{serial}/idevid.crt"), *chain], pki.key(f"pledges/{serial}/idevid.key"))


async def test_idevid_leaf_and_intermediates_reach_the_server(
    pki: DevPki, server: tuple[int, list[dict[str, Any]]]
) -> None:
    port, seen = server
    creds = _pledge(pki)
    assert len(creds.certs) >= 2, "the dev PKI issues IDevIDs from an intermediate"
    conn = HttpConnection(host="127.0.0.1", port=port, credentials=creds)
    try:
        # RFC 8995 5.1: the exact server certificate, before any request.
        assert await conn.connect() == cert_der(pki.cert("registrar/tls.crt"))
        reply = await conn.request("GET", "/")
    finally:
        await conn.close()
    assert reply.status == 200
    chain = seen[-1]["peercert_chain"]
    assert chain == [cert_der(c) for c in creds.certs]
    assert seen[-1]["peer_verified"] is True  # verifies against the root alone
    assert conn.tls_version in ("TLSv1.2", "TLSv1.3")


async def test_no_credentials_sends_no_certificate(server: tuple[int, list[dict[str, Any]]]) -> None:
    port, seen = server
    conn = HttpConnection(host="127.0.0.1", port=port, credentials=None)
    try:
        await conn.connect()
        reply = await conn.request("GET", "/")
    finally:
        await conn.close()
    assert reply.body == b"0" and seen[-1]["peercert_chain"] == []


async def test_pledges_with_one_intermediate_share_one_context(pki: DevPki) -> None:
    port_holder: list[int] = []
    seen: list[dict[str, Any]] = []
    cfg = _any_client_server(pki)
    srv = await start_tls_server(lambda: _Echo(seen), host="127.0.0.1", port=0, cfg=cfg)
    port_holder.append(bound_port(srv))
    protos = []
    try:
        for serial in pki.pledge_serials:
            _r, writer, proto = await tls_client.open_tls_connection(
                "127.0.0.1", port_holder[0], credentials=_pledge(pki, serial)
            )
            protos.append(proto)
            writer.close()
        # Each pledge's own leaf on the wire, one shared SSL context behind them.
        assert len({id(p._context) for p in protos}) == 1
        leaves: set[int] = set()
        for p in protos:
            assert p.tls_connection is not None  # set once the handshake ran
            leaf = p.tls_connection.get_certificate(as_cryptography=True)
            assert leaf is not None  # the client presented one
            leaves.add(leaf.serial_number)
        assert len(leaves) == len(pki.pledge_serials)
    finally:
        srv.close()


async def test_peer_certificate_der_is_the_servers_leaf(pki: DevPki) -> None:
    cfg = _any_client_server(pki)
    srv = await start_tls_server(lambda: _Echo([]), host="127.0.0.1", port=0, cfg=cfg)
    try:
        _r, writer, proto = await tls_client.open_tls_connection(
            "127.0.0.1", bound_port(srv), credentials=_pledge(pki, pki.pledge_serials[0])
        )
        # The lean path the pledge reads agrees with the transport's extra info.
        assert proto.peer_certificate_der() == cert_der(pki.cert("registrar/tls.crt"))
        assert proto.peer_certificate_der() == writer.get_extra_info("peercert")
        assert proto.tls_version == writer.get_extra_info("tls_version") == "TLSv1.3"
        writer.close()
    finally:
        srv.close()


async def _refusing_server(handle: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any]) -> tuple[Any, int]:
    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    return srv, srv.sockets[0].getsockname()[1]


@pytest.mark.parametrize(
    "behaviour",
    ["close-at-once", "plain-http", "tls10-only"],
)
async def test_failed_handshake_is_a_named_error(pki: DevPki, tmp_path: Any, behaviour: str) -> None:
    if behaviour == "tls10-only":
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        (tmp_path / "c.pem").write_bytes(pki.files["registrar/tls.crt"])
        (tmp_path / "k.pem").write_bytes(pki.files["registrar/tls.key"])
        ctx.load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")
        try:
            ctx.minimum_version = ssl.TLSVersion.TLSv1
            ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        except ValueError:
            pytest.skip("this OpenSSL cannot be configured for TLS 1.1")
        srv = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0, ssl=ctx)
        port = srv.sockets[0].getsockname()[1]
    else:

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            if behaviour == "plain-http":
                await reader.read(1)
                writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
            writer.close()

        srv, port = await _refusing_server(handle)
    conn = HttpConnection(host="127.0.0.1", port=port, credentials=_pledge(pki), timeout=10)
    try:
        with pytest.raises(LocalError) as info:
            await conn.connect()
        assert info.value.check == "http.connect"
        assert not conn.is_open
    finally:
        srv.close()


async def test_a_name_is_resolved_once_per_ttl_and_forgotten_on_failure(
    pki: DevPki, server: tuple[int, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    port, _seen = server
    loop = asyncio.get_running_loop()
    asked: list[str] = []
    real = loop.getaddrinfo

    async def counting(host: Any, *args: Any, **kw: Any) -> Any:
        asked.append(host)
        return await real("127.0.0.1", *args, **kw)  # "registrar.test" is this server

    monkeypatch.setattr(loop, "getaddrinfo", counting)
    tls_client._resolved.clear()
    for _ in range(3):
        _r, writer, _p = await tls_client.open_tls_connection(
            "registrar.test", port, credentials=_pledge(pki), server_hostname="registrar.test"
        )
        writer.close()
    assert asked == ["registrar.test"]
    # A connect that fails drops the entry: the next attempt asks again.
    with pytest.raises(OSError):
        await tls_client.open_tls_connection("registrar.test", 1, credentials=None)
    assert ("registrar.test", 1) not in tls_client._resolved
    monkeypatch.setattr(tls_client, "RESOLVE_TTL", -1.0)  # expired at once
    _r, writer, _p = await tls_client.open_tls_connection("registrar.test", port, credentials=None)
    writer.close()
    assert asked.count("registrar.test") == 3


async def test_a_closed_connection_is_freed_by_reference_counting(pki: DevPki) -> None:
    """No reference cycle through the protocol: a fleet closes two connections a
    pledge, and each cycle left waiting for the collector costs it CPU."""
    cfg = _any_client_server(pki)
    srv = await start_tls_server(lambda: _Echo([]), host="127.0.0.1", port=0, cfg=cfg)
    gc.collect()
    gc.disable()
    try:
        _r, writer, proto = await tls_client.open_tls_connection(
            "127.0.0.1", bound_port(srv), credentials=_pledge(pki, pki.pledge_serials[0])
        )
        freed = weakref.ref(proto)
        writer.close()
        await writer.wait_closed()
        del _r, writer, proto
        for _ in range(3):
            await asyncio.sleep(0)
        assert freed() is None
    finally:
        gc.enable()
        srv.close()


async def test_the_last_flight_leaves_with_the_first_request(
    pki: DevPki, server: tuple[int, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """TLS 1.3: the client's Certificate, CertificateVerify and Finished go out in the
    same TCP write as the request the opener sends at once (one send fewer for the
    pledge, one read fewer for the registrar, per connection)."""
    port, seen = server
    sent: list[tuple[object, int]] = []
    socket_transport: Any = asyncio.selector_events._SelectorSocketTransport  # type: ignore[attr-defined]
    real_write = socket_transport.write

    def counting(self: Any, data: Any) -> None:
        sent.append((self, len(data)))
        real_write(self, data)

    monkeypatch.setattr(socket_transport, "write", counting)
    reader, writer, proto = await tls_client.open_tls_connection("127.0.0.1", port, credentials=_pledge(pki))
    try:
        raw = proto._raw
        assert proto.tls_version == "TLSv1.3"
        assert len([n for t, n in sent if t is raw]) == 1  # the ClientHello only, so far
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        async with asyncio.timeout(10):
            assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
        assert len([n for t, n in sent if t is raw]) == 2  # the flight and the request together
        assert seen[-1]["peercert_chain"]  # the server had the client's certificate first
    finally:
        writer.close()


async def test_an_opener_that_writes_nothing_still_completes_the_handshake(pki: DevPki) -> None:
    """The held last flight is sent one loop iteration later when nothing is written:
    a server that speaks first (its handshake ends with the client's Finished) is
    not left waiting."""

    class _Greeter(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            assert isinstance(transport, asyncio.Transport)
            transport.write(b"hello")

    srv = await start_tls_server(_Greeter, host="127.0.0.1", port=0, cfg=_any_client_server(pki))
    try:
        reader, writer, _p = await tls_client.open_tls_connection(
            "127.0.0.1", bound_port(srv), credentials=_pledge(pki)
        )
        async with asyncio.timeout(10):
            assert await reader.readexactly(5) == b"hello"
        writer.close()
    finally:
        srv.close()
