"""What every pledge exchange stands on: the attempt's one TLS connection
(:class:`Session`, with RFC 8995 5.6's redirect rule), the credential and file
plumbing, the per-step log line, and the result a run reports.

Split from :mod:`pledge_sim.service` (the onboarding itself) and
:mod:`pledge_sim.reenroll` (renewal), which both use it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from brski import errors, oids
from brski.pki import PrivateKey, load_cert, load_certs, load_private_key
from brski_tls.client import ClientCredentials
from pledge_sim.config import PledgeConfig
from pledge_sim.http import HttpConnection, Response

__all__ = [
    "EnrollResult", "Identity", "Session", "VoucherSummary", "cert_summary", "client_context",
    "connection", "default_log", "enroll_headers", "load_identity", "now", "read_file", "save_credentials", "step",
]

PATH_REQUESTVOUCHER = "/.well-known/brski/requestvoucher"
PATH_VOUCHER_STATUS = "/.well-known/brski/voucher_status"
PATH_ENROLLSTATUS = "/.well-known/brski/enrollstatus"
PATH_CACERTS = "/.well-known/est/cacerts"
PATH_CSRATTRS = "/.well-known/est/csrattrs"
PATH_SIMPLEENROLL = "/.well-known/est/simpleenroll"
PATH_SIMPLEREENROLL = "/.well-known/est/simplereenroll"

KEY_KINDS = {"ec-p256": "p256", "ec-p384": "p384", "ed25519": "ed25519"}
Sleep = Callable[[float], Awaitable[None]]
default_log = logging.getLogger("pledge_sim")


@dataclass(frozen=True, kw_only=True)
class VoucherSummary:
    assertion: str
    serial_number: str
    pinned_domain_subject: str | None
    created_on: str
    expires_on: str | None
    nonce: str | None  # hex


@dataclass(frozen=True, kw_only=True)
class EnrollResult:
    ok: bool
    serial: str
    voucher: VoucherSummary | None = None
    ldevid: x509.Certificate | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    failed_check: str | None = None
    detail: str | None = None
    files: tuple[str, ...] = ()
    tls_version: str | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready view (the certificate as a summary, not as an object)."""
        out: dict[str, Any] = {
            "ok": self.ok,
            "serial": self.serial,
            "timings_ms": self.timings_ms,
            "failed_check": self.failed_check,
            "detail": self.detail,
            "files": list(self.files),
            "tls_version": self.tls_version,
            "voucher": None if self.voucher is None else dict(self.voucher.__dict__),
            "ldevid": None,
        }
        if self.ldevid is not None:
            out["ldevid"] = cert_summary(self.ldevid)
        return out


def cert_summary(cert: x509.Certificate) -> dict[str, str]:
    return {
        "subject": cert.subject.rfc4514_string(),
        "serial": format(cert.serial_number, "x"),
        "issuer": cert.issuer.rfc4514_string(),
        "not_before": cert.not_valid_before_utc.isoformat(),
        "not_after": cert.not_valid_after_utc.isoformat(),
    }


def now() -> datetime:
    return datetime.now(UTC)


def step(log: logging.Logger | logging.LoggerAdapter[Any], step: str, **fields: Any) -> None:
    """One structured key=value line per protocol step (nothing formatted for
    a logger that would drop it: a fleet's pledges run quiet)."""
    if not log.isEnabledFor(logging.INFO):
        return
    parts = [f"step={step}"]
    for key, value in fields.items():
        text = str(value)
        parts.append(f"{key}={text!r}" if (" " in text or not text) else f"{key}={text}")
    log.info(" ".join(parts))


def pem_key(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def pem_certs(certs: list[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def client_context(certs: list[x509.Certificate], key: PrivateKey) -> ClientCredentials:
    """The pledge's TLS client credential: leaf (+ intermediates) and key, kept in
    memory.  The connection is *provisional* (RFC 8995 5.1): TLS 1.2+, the
    server certificate accepted without validation here and checked later
    against the voucher or the domain CA (see :mod:`brski_tls.client`)."""
    return ClientCredentials(certs=tuple(certs), key=key)


def connection(cfg: PledgeConfig, certs: list[x509.Certificate], key: PrivateKey) -> HttpConnection:
    """A connection (not yet open) to the configured registrar, presenting ``certs``
    and ``key``: the IDevID chain, or the LDevID once enrolled."""
    return HttpConnection(
        host=cfg.host,
        port=cfg.port,
        credentials=client_context(certs, key),
        server_hostname=cfg.server_hostname,
        timeout=cfg.timeout,
    )


def read_file(path: Path | None, what: str) -> bytes:
    if path is None:
        raise errors.ConfigError(f"{what} not configured", check="pledge.config")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise errors.ConfigError(
            f"cannot read {what} {path}: {exc}", check="pledge.config"
        ) from exc


def write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        os.fchmod(fh.fileno(), 0o600)
        fh.write(data)


class Session:
    """The one connection of an attempt, with the rules for using it."""

    def __init__(self, cfg: PledgeConfig, conn: HttpConnection, log: Any) -> None:
        self.cfg, self.conn, self.log = cfg, conn, log
        self.first_cert: bytes | None = None

    async def open(self) -> bytes:
        der = await self.conn.connect()
        self.first_cert = der
        return der

    async def ensure_open(self) -> None:
        """Re-open after the server closed the connection, but only onto the same
        registrar certificate: the voucher-request pinned it (RFC 8995 5.2)."""
        if self.conn.is_open:
            return
        der = await self.conn.reconnect()
        step(self.log, "reconnect", host=self.conn.authority)
        if der != self.first_cert:
            raise errors.PeerError(
                "registrar presented a different certificate after reconnecting",
                check="pledge.registrar-cert-changed",
            )

    async def request(
        self, method: str, path: str, *, headers: Mapping[str, str], body: bytes = b""
    ) -> Response:
        await self.ensure_open()
        resp = await self.conn.request(
            method, path, headers=headers, body=body, chunked=self.cfg.chunked and bool(body)
        )
        if resp.status in (301, 302, 303, 307, 308):
            resp = await self._redirect(method, path, resp, headers, body)
        step(self.log, "http", method=method, path=path, status=resp.status, bytes=len(resp.body))
        return resp

    async def _redirect(
        self, method: str, path: str, resp: Response, headers: Mapping[str, str], body: bytes
    ) -> Response:
        """RFC 8995 5.6: at most one redirection.  A different web origin would
        mean another (unauthenticated) registrar, so it is refused outright;
        a same-origin 307/308 is followed once on this connection."""
        location = resp.headers.get("Location", "")
        target = urlsplit(urljoin(self.cfg.registrar_url + path, location))
        origin = urlsplit(self.cfg.registrar_url)
        if (target.scheme, target.hostname, target.port or 443) != (
            origin.scheme,
            origin.hostname,
            origin.port or 443,
        ):
            raise errors.PeerError(
                f"redirect to another origin {location[:100]!r} refused",
                check="pledge.redirect-cross-origin",
            )
        if resp.status not in (307, 308):
            return resp  # method-changing redirects are not followed; the caller refuses them
        new_path = target.path + (f"?{target.query}" if target.query else "")
        step(self.log, "redirect", status=resp.status, path=new_path)
        await self.ensure_open()
        again = await self.conn.request(
            method,
            new_path or "/",
            headers=headers,
            body=body,
            chunked=self.cfg.chunked and bool(body),
        )
        if 300 <= again.status < 400:
            raise errors.PeerError("more than one redirection", check="pledge.redirect-loop")
        return again


def load_identity(
    cfg: PledgeConfig,
) -> tuple[x509.Certificate, PrivateKey, list[x509.Certificate], list[x509.Certificate]]:
    try:
        idevid = load_cert(read_file(cfg.idevid, "IDevID certificate"))
        key = load_private_key(read_file(cfg.key, "IDevID key"))
        chain = load_certs(read_file(cfg.chain, "chain")) if cfg.chain else []
        anchors = [c for a in cfg.anchors for c in load_certs(read_file(a, "anchor"))]
    except errors.ConfigError:
        raise
    except errors.BrskiError as exc:
        raise errors.ConfigError(
            f"unusable credential: {exc.detail}", check="pledge.config"
        ) from exc
    return idevid, key, chain, anchors


Identity = tuple[x509.Certificate, PrivateKey, list[x509.Certificate], list[x509.Certificate]]



def enroll_headers() -> dict[str, str]:
    # RFC 7030 4.2.1: application/pkcs10, base64 body (the CTE header is for old servers).
    return {
        "Content-Type": oids.MT_PKCS10,
        "Content-Transfer-Encoding": "base64",
        "Accept": oids.MT_PKCS7_MIME,
    }


def save_credentials(
    out: Path, cert: x509.Certificate, key: PrivateKey, domain: list[x509.Certificate | None]
) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    cert_path, key_path, ca_path = out / "ldevid.crt", out / "ldevid.key", out / "domain-ca.pem"
    write_private(key_path, pem_key(key))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    # The trust anchor for later operations (RFC 8995 5.6.2: the pinned-domain-cert
    # "MAY be installed as a trust anchor"), plus the /cacerts answer.
    seen: set[bytes] = set()
    unique = []
    for c in domain:
        if c is not None and (der := c.public_bytes(serialization.Encoding.DER)) not in seen:
            seen.add(der)
            unique.append(c)
    ca_path.write_bytes(pem_certs(unique))
    return [str(cert_path), str(key_path), str(ca_path)]


