"""The server transport's peer certificates (``peercert_x509``), in memory:
a pyOpenSSL client and :class:`brski_web.tls.TlsServerProtocol` exchange
their flights through memory BIOs and a stand-in TCP transport, no socket."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL, crypto

from brski.pki import load_der_cert
from brski_tls.protocol import TlsTransport
from brski_web.tls import TlsServerProtocol, build_context
from tests.protocol.tls_transport_helpers import Pki, _cfg, make_pki

DER = serialization.Encoding.DER


class _Raw(asyncio.Transport):
    """The TCP side: collects what the server sends."""

    def __init__(self) -> None:
        super().__init__()
        self.out = bytearray()
        self.closed = False

    def write(self, data: Any) -> None:
        self.out += data

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default


def _client(pem_path: str, key_path: str) -> SSL.Connection:
    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    pem = Path(pem_path).read_bytes()
    certs = x509.load_pem_x509_certificates(pem)
    ctx.use_certificate(crypto.X509.from_cryptography(certs[0]))
    for extra in certs[1:]:
        ctx.add_extra_chain_cert(crypto.X509.from_cryptography(extra))
    ctx.use_privatekey_file(key_path)
    conn = SSL.Connection(ctx, None)
    conn.set_connect_state()
    return conn


class _Collect(asyncio.Protocol):
    """The inner protocol: keeps the plaintext it is handed."""

    def __init__(self) -> None:
        self.data = bytearray()

    def data_received(self, data: bytes) -> None:
        self.data += data


async def _connect(
    server_ctx: SSL.Context, client_files: tuple[str, str], inner: asyncio.Protocol | None = None,
    client: SSL.Connection | None = None,
) -> TlsTransport:
    proto = TlsServerProtocol(server_ctx, lambda: inner or asyncio.Protocol())
    raw = _Raw()
    proto.connection_made(raw)
    client = client or _client(*client_files)
    for _ in range(10):
        try:
            client.do_handshake()
        except SSL.WantReadError:
            pass
        try:
            proto.data_received(client.bio_read(65536))
        except SSL.WantReadError:
            pass
        if raw.out:
            client.bio_write(bytes(raw.out))
            raw.out.clear()
        if proto._transport is not None:
            return proto._transport
    raise AssertionError("handshake did not complete")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("peer-certs"))


def _chain(transport: TlsTransport) -> tuple[x509.Certificate, ...]:
    certs = transport.get_extra_info("peercert_x509")
    assert isinstance(certs, tuple)
    return certs


async def test_peer_chain_is_the_object_the_cms_layer_loads(pki: Pki) -> None:
    ctx = build_context(_cfg(pki))
    first = _chain(await _connect(ctx, pki.trusted_client))
    second = _chain(await _connect(ctx, pki.trusted_client))
    assert [c.public_bytes(DER) for c in first] == [
        pki.client_leaf.public_bytes(DER), pki.client_intermediate.public_bytes(DER)
    ]
    # The same bytes, the same objects: the second connection parsed nothing,
    # and a CMS SignedData carrying the leaf gets that object too.
    assert all(a is b for a, b in zip(first, second, strict=True))
    assert first[0] is load_der_cert(pki.client_leaf.public_bytes(DER))


async def test_another_clients_chain_is_its_own(pki: Pki) -> None:
    # A client chain that does not verify still reaches the app, flagged (brski_web.serve).
    ctx = build_context(_cfg(pki, accept_untrusted_clients=True))
    mine = _chain(await _connect(ctx, pki.trusted_client))
    theirs = _chain(await _connect(ctx, pki.untrusted_client))
    assert theirs[0] is not mine[0]
    assert theirs[0].public_bytes(DER) == pki.other_leaf.public_bytes(DER)
    assert theirs[0].subject != mine[0].subject


async def test_records_reach_the_app_whole_however_the_segments_fall(pki: Pki) -> None:
    """The read loop stops when OpenSSL and its BIO hold nothing more: two
    records in one segment both arrive, a record split over two segments
    arrives once its second half does."""
    inner = _Collect()
    client = _client(*pki.trusted_client)
    transport = await _connect(build_context(_cfg(pki)), pki.trusted_client, inner, client)
    proto = transport._owner
    client.send(b"A" * 100)
    client.send(b"B" * 100)
    proto.data_received(client.bio_read(65536))
    assert bytes(inner.data) == b"A" * 100 + b"B" * 100
    client.send(b"C" * 5000)
    record = client.bio_read(65536)
    proto.data_received(record[:2000])
    assert len(inner.data) == 200
    proto.data_received(record[2000:])
    assert bytes(inner.data[200:]) == b"C" * 5000
