"""The PKI, app and server the brski_web.tls transport tests share (helpers,
not tests): certificates minted per test module, an aiohttp app that reports
the TLS facts it sees, and a server on an ephemeral loopback port."""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import ipaddress
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from brski.pki import PrivateKey
from brski_tls.protocol import RFC9266_EXPORTER_LABEL
from brski_web.tls import (
    TlsServerConfig,
    bound_port,
    start_tls_server,
)
from tests.pki_helpers import Issued, key_usage_for, make_cert

DER = serialization.Encoding.DER
PEM = serialization.Encoding.PEM
MB5 = 5 * 1024 * 1024

# --- PKI -------------------------------------------------------------------------


def _key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _issue(
    cn: str,
    *,
    issuer: Issued | None = None,
    ca: bool = False,
    server: bool = False,
    client: bool = False,
) -> Issued:
    """Valid from five minutes ago for two days: these certificates meet real TLS stacks."""
    now = datetime.datetime.now(datetime.UTC)
    extra: list[tuple[x509.ExtensionType, bool]] = []
    eku = None
    if server:
        san = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        extra.append((x509.SubjectAlternativeName(san), False))
        eku = [ExtendedKeyUsageOID.SERVER_AUTH]
    if client:
        eku = [ExtendedKeyUsageOID.CLIENT_AUTH]
    return make_cert(
        cn,
        issuer=issuer,
        ca=ca,
        not_before=now - datetime.timedelta(minutes=5),
        not_after=now + datetime.timedelta(days=2),
        eku=eku,
        key_usage=key_usage_for(ca=True, digital_signature=True) if ca else None,
        extra=extra,
    )


@dataclass(frozen=True)
class Pki:
    server_ca: x509.Certificate
    server_chain_pem: bytes
    server_key_pem: bytes
    client_root: x509.Certificate
    client_intermediate: x509.Certificate
    client_leaf: x509.Certificate
    other_leaf: x509.Certificate
    dir: Path

    @property
    def trusted_client(self) -> tuple[str, str]:
        return str(self.dir / "client.pem"), str(self.dir / "client.key")

    @property
    def untrusted_client(self) -> tuple[str, str]:
        return str(self.dir / "other.pem"), str(self.dir / "other.key")


def make_pki(d: Path) -> Pki:
    """Server and client certificates, the client ones also as files in ``d``."""
    ca = _issue("Test server CA", ca=True)
    srv = _issue("localhost", issuer=ca, server=True)
    root = _issue("Test client root", ca=True)
    inter = _issue("Test client issuing CA", issuer=root, ca=True)
    leaf = _issue("pledge-0001", issuer=inter, client=True)
    other_ca = _issue("Unknown manufacturer CA", ca=True)
    other = _issue("stranger-0001", issuer=other_ca, client=True)
    (d / "server-ca.pem").write_bytes(ca[0].public_bytes(PEM))
    (d / "client.pem").write_bytes(leaf[0].public_bytes(PEM) + inter[0].public_bytes(PEM))
    (d / "client.key").write_bytes(_key_pem(leaf[1]))
    (d / "other.pem").write_bytes(other[0].public_bytes(PEM) + other_ca[0].public_bytes(PEM))
    (d / "other.key").write_bytes(_key_pem(other[1]))
    return Pki(
        server_ca=ca[0],
        server_chain_pem=srv[0].public_bytes(PEM) + ca[0].public_bytes(PEM),
        server_key_pem=_key_pem(srv[1]),
        client_root=root[0],
        client_intermediate=inter[0],
        client_leaf=leaf[0],
        other_leaf=other[0],
        dir=d,
    )


def _cfg(pki: Pki, **kw: Any) -> TlsServerConfig:
    base: dict[str, Any] = {
        "cert_chain_pem": pki.server_chain_pem,
        "key_pem": pki.server_key_pem,
        "client_auth": "optional",
        "client_trust_pem": pki.client_root.public_bytes(PEM),
    }
    base.update(kw)
    return TlsServerConfig(**base)


def _client_ctx(
    pki: Pki,
    cert: tuple[str, str] | None = None,
    *,
    version: ssl.TLSVersion | None = None,
) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cadata=pki.server_ca.public_bytes(PEM).decode())
    if cert is not None:
        ctx.load_cert_chain(*cert)
    if version is not None:
        ctx.minimum_version = version
        ctx.maximum_version = version
    return ctx


# --- the app --------------------------------------------------------------------------


def _tls_facts(request: web.Request) -> dict[str, Any]:
    t = request.transport
    assert t is not None
    chain = t.get_extra_info("peercert_chain")
    exporter = t.get_extra_info("tls_exporter")
    binding = exporter(RFC9266_EXPORTER_LABEL, 32, None)
    return {
        "peercert": (t.get_extra_info("peercert") or b"").hex(),
        "chain": [c.hex() for c in chain],
        "verified": t.get_extra_info("peer_verified"),
        "error": t.get_extra_info("peer_verify_error"),
        "version": t.get_extra_info("tls_version"),
        "cipher": t.get_extra_info("cipher"),
        "exporter": binding.hex(),
        "exporter_again": exporter(RFC9266_EXPORTER_LABEL, 32, None).hex(),
        "exporter_ctx": exporter(RFC9266_EXPORTER_LABEL, 32, b"other").hex(),
        "secure": request.secure,
        "peername": list(t.get_extra_info("peername")),
        "tls_unique": (t.get_extra_info("tls_unique") or b"").hex(),
        "ssl_object": t.get_extra_info("ssl_object"),
    }


async def _info(request: web.Request) -> web.Response:
    return web.json_response(_tls_facts(request))


async def _echo_digest(request: web.Request) -> web.Response:
    """Read the upload slowly (forcing read back-pressure), answer its digest."""
    h = hashlib.sha256()
    n = 0
    while True:
        chunk = await request.content.read(65536)
        if not chunk:
            break
        h.update(chunk)
        n += len(chunk)
        if n % (1024 * 1024) < 65536:
            await asyncio.sleep(0.01)
    return web.json_response({"sha256": h.hexdigest(), "size": n})


async def _big(request: web.Request) -> web.Response:
    return web.Response(body=_payload(MB5), content_type="application/octet-stream")


async def _big_stream(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse()
    resp.content_length = MB5
    await resp.prepare(request)
    data = _payload(MB5)
    for i in range(0, MB5, 256 * 1024):
        await resp.write(data[i : i + 256 * 1024])  # drains: honours pause_writing
    await resp.write_eof()
    return resp


def _payload(n: int) -> bytes:
    block = hashlib.sha256(b"brski").digest() * 2048  # 64 KiB, deterministic
    return (block * (n // len(block) + 1))[:n]


def _app(calls: list[str] | None = None) -> web.Application:
    @web.middleware
    async def count(request: web.Request, handler: Callable[..., Any]) -> Any:
        if calls is not None:
            calls.append(request.path)
        return await handler(request)

    app = web.Application(middlewares=[count], client_max_size=16 * 1024 * 1024)
    app.router.add_get("/info", _info)
    app.router.add_post("/digest", _echo_digest)
    app.router.add_get("/big", _big)
    app.router.add_get("/big-stream", _big_stream)
    return app


@asynccontextmanager
async def serve(cfg: TlsServerConfig, calls: list[str] | None = None) -> AsyncIterator[int]:
    runner = web.AppRunner(_app(calls))
    await runner.setup()
    assert runner.server is not None
    server = await start_tls_server(runner.server, host="127.0.0.1", port=0, cfg=cfg)
    try:
        yield bound_port(server)
    finally:
        server.close()
        await runner.cleanup()
        await server.wait_closed()


async def _get_json(port: int, ctx: ssl.SSLContext, path: str = "/info") -> dict[str, Any]:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"https://127.0.0.1:{port}{path}", ssl=ctx) as resp:
            assert resp.status == 200
            body: dict[str, Any] = await resp.json()
            return body
