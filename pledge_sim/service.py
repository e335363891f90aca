"""The pledge driver: all the I/O around the sans-IO :class:`brski.pledge.Pledge`.

It owns the socket, the clock, the random nonce and the files; every protocol
decision is delegated to ``brski.pledge``.  One bootstrapping attempt runs over
ONE TLS connection (RFC 8995 5.1 and 5.9), so the certificate the registrar
presented is the one named in the voucher-request and later checked against
the voucher's pin.  The connection is only re-opened where the RFCs say so:
after the server closed it (RFC 7030 4.2.3: "initiates a new TLS connection
and performs all applicable security checks") and for the successful
enrollstatus, which RFC 8995 5.9.4 wants on a session using the new LDevID.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from brski import errors, oids
from brski.est import encode_base64_body
from brski.pki import (
    PrivateKey,
    fingerprint_sha256,
    generate_key,
    load_cert,
    load_certs,
    load_private_key,
)
from brski.pledge import (
    Enrolled,
    Failed,
    Pledge,
    Retry,
    VoucherAccepted,
    authenticate_server_cert,
    build_csr_der,
    retry_after_seconds,
    verify_issued_cert,
)
from brski_tls.client import ClientCredentials
from pledge_sim.config import PledgeConfig
from pledge_sim.http import HttpConnection, Response

__all__ = ["EnrollResult", "Identity", "VoucherSummary", "client_context", "enroll_one", "reenroll"]

PATH_REQUESTVOUCHER = "/.well-known/brski/requestvoucher"
PATH_VOUCHER_STATUS = "/.well-known/brski/voucher_status"
PATH_ENROLLSTATUS = "/.well-known/brski/enrollstatus"
PATH_CACERTS = "/.well-known/est/cacerts"
PATH_CSRATTRS = "/.well-known/est/csrattrs"
PATH_SIMPLEENROLL = "/.well-known/est/simpleenroll"
PATH_SIMPLEREENROLL = "/.well-known/est/simplereenroll"

_KEY_KINDS = {"ec-p256": "p256", "ec-p384": "p384", "ed25519": "ed25519"}
Sleep = Callable[[float], Awaitable[None]]
_default_log = logging.getLogger("pledge_sim")


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


def _now() -> datetime:
    return datetime.now(UTC)


def _step(log: logging.Logger | logging.LoggerAdapter[Any], step: str, **fields: Any) -> None:
    """One structured key=value line per protocol step."""
    parts = [f"step={step}"]
    for key, value in fields.items():
        text = str(value)
        parts.append(f"{key}={text!r}" if (" " in text or not text) else f"{key}={text}")
    log.info(" ".join(parts))


def _pem_key(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _pem_certs(certs: list[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def client_context(certs: list[x509.Certificate], key: PrivateKey) -> ClientCredentials:
    """The pledge's TLS client credential: leaf (+ intermediates) and key, kept in
    memory.  The connection is *provisional* (RFC 8995 5.1): TLS 1.2+, the
    server certificate accepted without validation here and checked later
    against the voucher or the domain CA (see :mod:`brski_web.tls_client`)."""
    return ClientCredentials(certs=tuple(certs), key=key)


def _read(path: Path | None, what: str) -> bytes:
    if path is None:
        raise errors.ConfigError(f"{what} not configured", check="pledge.config")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise errors.ConfigError(
            f"cannot read {what} {path}: {exc}", check="pledge.config"
        ) from exc


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        os.fchmod(fh.fileno(), 0o600)
        fh.write(data)


class _Session:
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
        _step(self.log, "reconnect", host=self.conn.authority)
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
        _step(self.log, "http", method=method, path=path, status=resp.status, bytes=len(resp.body))
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
        _step(self.log, "redirect", status=resp.status, path=new_path)
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


def _load_identity(
    cfg: PledgeConfig,
) -> tuple[x509.Certificate, PrivateKey, list[x509.Certificate], list[x509.Certificate]]:
    try:
        idevid = load_cert(_read(cfg.idevid, "IDevID certificate"))
        key = load_private_key(_read(cfg.key, "IDevID key"))
        chain = load_certs(_read(cfg.chain, "chain")) if cfg.chain else []
        anchors = [c for a in cfg.anchors for c in load_certs(_read(a, "anchor"))]
    except errors.ConfigError:
        raise
    except errors.BrskiError as exc:
        raise errors.ConfigError(
            f"unusable credential: {exc.detail}", check="pledge.config"
        ) from exc
    return idevid, key, chain, anchors


Identity = tuple[x509.Certificate, PrivateKey, list[x509.Certificate], list[x509.Certificate]]


async def enroll_one(
    cfg: PledgeConfig,
    *,
    log: Any = None,
    sleep: Sleep = asyncio.sleep,
    identity: Identity | None = None,
) -> EnrollResult:
    """Run one complete BRSKI + EST bootstrap.  Refusals come back as a failed
    :class:`EnrollResult` (with the check name); configuration problems raise
    :class:`brski.errors.ConfigError`.

    ``identity`` (IDevID, key, chain, anchors) bypasses the files named in
    ``cfg``: a fleet generates thousands of IDevIDs in memory and should not
    have to write each to disk first."""
    log = log or _default_log
    idevid, key, chain, anchors = identity if identity is not None else _load_identity(cfg)
    pledge = Pledge(
        idevid=idevid,
        key=key,
        chain=chain,
        anchors=anchors,
        media_type=cfg.media_type,
        accept_nonceless=cfg.accept_nonceless,
    )
    conn = HttpConnection(
        host=cfg.host,
        port=cfg.port,
        credentials=client_context([idevid, *chain], key),
        server_hostname=cfg.server_hostname,
        timeout=cfg.timeout,
    )
    session = _Session(cfg, conn, log)
    timings: dict[str, float] = {}
    files: list[str] = []

    def result(**kw: Any) -> EnrollResult:
        failure = pledge.failure
        summary = None
        if pledge.voucher is not None:
            v = pledge.voucher
            pinned = pledge.pinned_domain_cert
            summary = VoucherSummary(
                assertion=str(v.assertion),
                serial_number=v.serial_number,
                pinned_domain_subject=pinned.subject.rfc4514_string() if pinned else None,
                created_on=v.created_on.isoformat(),
                expires_on=v.expires_on.isoformat() if v.expires_on else None,
                nonce=v.nonce.hex() if v.nonce else None,
            )
        return EnrollResult(
            ok=failure is None and pledge.ldevid is not None,
            serial=pledge.serial,
            voucher=summary,
            ldevid=pledge.ldevid,
            timings_ms=timings,
            files=tuple(files),
            failed_check=failure.check if failure else None,
            detail=failure.detail if failure else None,
            tls_version=conn.tls_version,
            **kw,
        )

    _step(log, "start", serial=pledge.serial, registrar=cfg.registrar_url, format=cfg.media_type)
    try:
        t0 = time.perf_counter()
        try:
            der = await session.open()
        except errors.BrskiError as exc:
            pledge.abort(check=exc.check, detail=exc.detail)
            _step(log, "failed", check=exc.check, detail=exc.detail)
            return result()
        timings["tls"] = round((time.perf_counter() - t0) * 1000, 2)
        pledge.connected(der)
        assert pledge.registrar_cert is not None
        _step(
            log,
            "tls",
            version=conn.tls_version,
            provisional=True,
            registrar_sha256=fingerprint_sha256(pledge.registrar_cert)[:16],
            ms=timings["tls"],
        )
        try:
            await _voucher_phase(pledge, session, cfg, log, sleep, timings)
            if pledge.failure is None:
                await _enroll_phase(pledge, session, cfg, log, sleep, timings, files)
        except errors.BrskiError as exc:
            if pledge.failure is None:
                pledge.abort(check=exc.check, detail=exc.detail)
        if pledge.failure is not None:
            _step(log, "failed", check=pledge.failure.check, detail=pledge.failure.detail)
        return result()
    finally:
        await conn.close()


async def _until_decided(
    pledge: Pledge,
    send: Callable[[bytes], Awaitable[Any]],
    decide: Callable[[Any], Any],
    resend: Callable[[], bytes],
    *,
    body: bytes,
    attempts: int,
    phase: str,
    log: Any,
    sleep: Sleep,
) -> Any:
    """Send until the answer is not "202, come back later"; None if it never came.

    RFC 8995 5.6 / RFC 7030 4.2.3: wait Retry-After (the state machine clamps
    it to 60 s) and resend the same request, not a newly signed one.
    """
    for attempt in range(1, attempts + 1):
        decision = decide(await send(body))
        if not isinstance(decision, Retry):
            return decision
        _step(log, f"{phase}-pending", attempt=attempt, retry_after=decision.after)
        if attempt == attempts:
            pledge.abort(
                check=f"pledge.{phase}-retries-exhausted",
                detail=f"still pending after {attempt} attempts",
            )
            return None
        await sleep(decision.after)
        body = resend()
    return None


async def _voucher_phase(
    pledge: Pledge,
    session: _Session,
    cfg: PledgeConfig,
    log: Any,
    sleep: Sleep,
    timings: dict[str, float],
) -> None:
    t0 = time.perf_counter()
    # RFC 8995 5.2: a fresh cryptographically strong nonce per attempt (RFC 4086 6.2).
    body = pledge.build_voucher_request(now=_now(), nonce=secrets.token_bytes(32))
    headers = {"Content-Type": cfg.media_type, "Accept": cfg.media_type}
    decision = await _until_decided(
        pledge,
        lambda b: session.request("POST", PATH_REQUESTVOUCHER, headers=headers, body=b),
        lambda r: pledge.voucher_response(
            status=r.status, headers=r.headers, body=r.body, now=_now()
        ),
        pledge.retry_voucher_request,
        body=body,
        attempts=cfg.max_voucher_attempts,
        phase="voucher",
        log=log,
        sleep=sleep,
    )
    if decision is None:
        return
    timings["voucher"] = round((time.perf_counter() - t0) * 1000, 2)
    if isinstance(decision, VoucherAccepted):
        v = decision.voucher
        _step(
            log,
            "voucher-accepted",
            assertion=v.assertion,
            serial=v.serial_number,
            pinned=(
                decision.pinned_domain_cert.subject.rfc4514_string()
                if decision.pinned_domain_cert
                else "pubk"
            ),
            ms=timings["voucher"],
        )
    elif isinstance(decision, Failed):
        _step(log, "voucher-refused", check=decision.check, detail=decision.detail)
        if decision.http_status is not None:
            return  # the registrar refused; there is no voucher to report on
    # RFC 8995 5.7 (and 5.6.2: report before closing when the pin fails).
    status_body = pledge.voucher_status()
    try:
        await session.request(
            "POST", PATH_VOUCHER_STATUS, headers={"Content-Type": oids.MT_JSON}, body=status_body
        )
    except errors.BrskiError as exc:
        if pledge.failure is None:
            raise
        _step(log, "voucher-status-unsent", check=exc.check)  # "the client ignores any response"


async def _enroll_phase(
    pledge: Pledge,
    session: _Session,
    cfg: PledgeConfig,
    log: Any,
    sleep: Sleep,
    timings: dict[str, float],
    files: list[str],
) -> None:
    t0 = time.perf_counter()
    # RFC 8995 5.9.1: the full CA certificates response.
    resp = await session.request("GET", PATH_CACERTS, headers={"Accept": oids.MT_PKCS7_MIME})
    cacerts = pledge.cacerts_response(status=resp.status, headers=resp.headers, body=resp.body)
    _step(log, "cacerts", status=resp.status, count=len(cacerts))
    # RFC 8995 5.9.2: the pledge MUST request the CSR attributes.
    resp = await session.request("GET", PATH_CSRATTRS, headers={"Accept": oids.MT_CSRATTRS})
    _step(log, "csrattrs", status=resp.status, bytes=len(resp.body))
    new_key = generate_key(_KEY_KINDS[cfg.key_type])
    csr = pledge.build_csr(key=new_key)
    decision = await _until_decided(
        pledge,
        lambda b: session.request(
            "POST", PATH_SIMPLEENROLL, headers=_enroll_headers(), body=encode_base64_body(b)
        ),
        lambda r: pledge.enroll_response(
            status=r.status, headers=r.headers, body=r.body, now=_now()
        ),
        pledge.retry_csr,
        body=csr,
        attempts=cfg.max_enroll_attempts,
        phase="enroll",
        log=log,
        sleep=sleep,
    )
    if decision is None:
        return
    timings["enroll"] = round((time.perf_counter() - t0) * 1000, 2)
    if isinstance(decision, Failed):
        _step(log, "enroll-refused", check=decision.check, detail=decision.detail)
        # RFC 8995 5.9.4: a failure MUST be reported over the same TLS connection.
        try:
            await session.request(
                "POST",
                PATH_ENROLLSTATUS,
                headers={"Content-Type": oids.MT_JSON},
                body=pledge.enroll_status(),
            )
        except errors.BrskiError as exc:
            _step(log, "enroll-status-unsent", check=exc.check)
        return
    assert isinstance(decision, Enrolled)
    cert = decision.cert
    if log.isEnabledFor(logging.INFO):  # a fleet runs quiet: skip formatting two Names
        _step(
            log,
            "enrolled",
            subject=cert.subject.rfc4514_string(),
            serial=format(cert.serial_number, "x"),
            issuer=cert.issuer.rfc4514_string(),
            ms=timings["enroll"],
        )
    if cfg.out is not None:
        files.extend(_save(cfg.out, cert, new_key, [pledge.pinned_domain_cert, *pledge.cacerts]))
        _step(log, "saved", dir=cfg.out)
    await _send_enroll_success(pledge, session, cfg, cert, new_key, log)


def _enroll_headers() -> dict[str, str]:
    # RFC 7030 4.2.1: application/pkcs10, base64 body (the CTE header is for old servers).
    return {
        "Content-Type": oids.MT_PKCS10,
        "Content-Transfer-Encoding": "base64",
        "Accept": oids.MT_PKCS7_MIME,
    }


async def _send_enroll_success(
    pledge: Pledge,
    session: _Session,
    cfg: PledgeConfig,
    cert: x509.Certificate,
    key: PrivateKey,
    log: Any,
) -> None:
    """RFC 8995 5.9.4: success "SHOULD" go over a new TLS session that uses the new
    LDevID.  If that session cannot be set up, fall back to the current one so the
    registrar still hears about it."""
    body = pledge.enroll_status()
    headers = {"Content-Type": oids.MT_JSON}
    pinned = pledge.pinned_domain_cert
    if cfg.enroll_status_reconnect and pinned is not None:
        fresh = HttpConnection(
            host=cfg.host,
            port=cfg.port,
            credentials=client_context([cert], key),
            server_hostname=cfg.server_hostname,
            timeout=cfg.timeout,
        )
        try:
            der = await fresh.connect()
            authenticate_server_cert(
                load_cert(der), pinned=pinned, intermediates=pledge.cacerts, now=_now()
            )
            resp = await fresh.request("POST", PATH_ENROLLSTATUS, headers=headers, body=body)
            _step(log, "enroll-status", status=resp.status, connection="ldevid")
            return
        except errors.BrskiError as exc:
            _step(log, "enroll-status-fallback", check=exc.check, detail=exc.detail)
        finally:
            await fresh.close()
    try:
        resp = await session.request("POST", PATH_ENROLLSTATUS, headers=headers, body=body)
        _step(log, "enroll-status", status=resp.status, connection="idevid")
    except errors.BrskiError as exc:
        _step(log, "enroll-status-unsent", check=exc.check)


def _save(
    out: Path, cert: x509.Certificate, key: PrivateKey, domain: list[x509.Certificate | None]
) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    cert_path, key_path, ca_path = out / "ldevid.crt", out / "ldevid.key", out / "domain-ca.pem"
    _write_private(key_path, _pem_key(key))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    # The trust anchor for later operations (RFC 8995 5.6.2: the pinned-domain-cert
    # "MAY be installed as a trust anchor"), plus the /cacerts answer.
    seen: set[bytes] = set()
    unique = []
    for c in domain:
        if c is not None and (der := c.public_bytes(serialization.Encoding.DER)) not in seen:
            seen.add(der)
            unique.append(c)
    ca_path.write_bytes(_pem_certs(unique))
    return [str(cert_path), str(key_path), str(ca_path)]


async def reenroll(
    cfg: PledgeConfig,
    *,
    ldevid_cert: x509.Certificate,
    ldevid_key: PrivateKey,
    new_key: bool,
    log: Any = None,
    sleep: Sleep = asyncio.sleep,
) -> x509.Certificate:
    """EST /simplereenroll (RFC 7030 4.2.2) on a new connection authenticated by the
    LDevID, with the registrar now validated against the domain trust anchor."""
    log = log or _default_log
    ca_file = cfg.domain_ca or (cfg.out / "domain-ca.pem" if cfg.out else None)
    domain = load_certs(_read(ca_file, "domain CA bundle (--domain-ca or --out)"))
    if not domain:
        raise errors.ConfigError("domain CA bundle is empty", check="pledge.config")
    conn = HttpConnection(
        host=cfg.host,
        port=cfg.port,
        credentials=client_context([ldevid_cert], ldevid_key),
        server_hostname=cfg.server_hostname,
        timeout=cfg.timeout,
    )
    session = _Session(cfg, conn, log)
    try:
        der = await session.open()
        server = load_cert(der)
        _authenticate_against_any(server, domain)
        _step(log, "tls", version=conn.tls_version, registrar="authenticated")
        key = generate_key(_KEY_KINDS[cfg.key_type]) if new_key else ldevid_key
        # 4.2.2: Subject and SubjectAltName "MUST be identical" to the current cert.
        try:
            san = ldevid_cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            san = None
        csr = build_csr_der(key=key, subject=ldevid_cert.subject, san=san)
        spki = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        for attempt in range(1, cfg.max_enroll_attempts + 1):
            resp = await session.request(
                "POST", PATH_SIMPLEREENROLL, headers=_enroll_headers(), body=encode_base64_body(csr)
            )
            if resp.status != 202:
                break
            wait = retry_after_seconds(resp.headers, _now())
            _step(log, "reenroll-pending", attempt=attempt, retry_after=wait)
            await sleep(wait)
        else:
            raise errors.LocalError(
                "re-enrollment still pending", check="pledge.enroll-retries-exhausted"
            )
        enrolled = verify_issued_cert(
            status=resp.status,
            headers=resp.headers,
            body=resp.body,
            csr_public_spki=spki,
            anchors=domain,
            now=_now(),
        )
        _step(log, "reenrolled", serial=format(enrolled.cert.serial_number, "x"), rekeyed=new_key)
        if cfg.out is not None:
            _save(cfg.out, enrolled.cert, key, list(domain))
        return enrolled.cert
    finally:
        await conn.close()


def _authenticate_against_any(server: x509.Certificate, domain: list[x509.Certificate]) -> None:
    last: errors.BrskiError | None = None
    for anchor in domain:
        try:
            authenticate_server_cert(server, pinned=anchor, intermediates=domain, now=_now())
            return
        except errors.BrskiError as exc:
            last = exc
    assert last is not None
    raise last
