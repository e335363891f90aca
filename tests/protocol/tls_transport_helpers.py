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
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from brski_tls.protocol import RFC9266_EXPORTER_LABEL
from brski_web.tls import (
    TlsServerConfig,
    bound_port,
    start_tls_server,
)

DER = serialization.Encoding.DER
PEM = serialization.Encoding.PEM
MB5 = 5 * 1024 * 1024

# --- PKI -------------------------------------------------------------------------


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _issue(
    cn: str,
    *,
    issuer: tuple[ec.EllipticCurvePrivateKey, x509.Certificate] | None = None,
    ca: bool = False,
    server: bool = False,
    client: bool = False,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    signer_key, signer_name = (issuer[0], issuer[1].subject) if issuer else (key, subject)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(signer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    if client:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
    return key, builder.sign(signer_key, hashes.SHA256())


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
    (d / "server-ca.pem").write_bytes(ca[1].public_bytes(PEM))
    (d / "client.pem").write_bytes(leaf[1].public_bytes(PEM) + inter[1].public_bytes(PEM))
    (d / "client.key").write_bytes(_key_pem(leaf[0]))
    (d / "other.pem").write_bytes(other[1].public_bytes(PEM) + other_ca[1].public_bytes(PEM))
    (d / "other.key").write_bytes(_key_pem(other[0]))
    return Pki(
        server_ca=ca[1],
        server_chain_pem=srv[1].public_bytes(PEM) + ca[1].public_bytes(PEM),
        server_key_pem=_key_pem(srv[0]),
        client_root=root[1],
        client_intermediate=inter[1],
        client_leaf=leaf[1],
        other_leaf=other[1],
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
