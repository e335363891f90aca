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
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from cryptography import x509

from brski import errors, oids
from brski.est import encode_base64_body
from brski.pki import PrivateKey, fingerprint_sha256, generate_key
from brski.pledge import (
    Enrolled,
    Failed,
    Pledge,
    Retry,
    VoucherAccepted,
    authenticate_server_cert,
    load_server_cert,
)
from pledge_sim.config import PledgeConfig
from pledge_sim.reenroll import reenroll
from pledge_sim.session import (
    KEY_KINDS,
    PATH_CACERTS,
    PATH_CSRATTRS,
    PATH_ENROLLSTATUS,
    PATH_REQUESTVOUCHER,
    PATH_SIMPLEENROLL,
    PATH_VOUCHER_STATUS,
    EnrollResult,
    Identity,
    Session,
    Sleep,
    VoucherSummary,
    cert_summary,
    client_context,
    connection,
    default_log,
    enroll_headers,
    load_identity,
    now,
    save_credentials,
    step,
)

# The names callers import from here (the CLI, discovery, the fleet, conformance, tests).
__all__ = [
    "EnrollResult", "Identity", "VoucherSummary", "cert_summary", "client_context", "enroll_one", "reenroll",
]


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
    log = log or default_log
    idevid, key, chain, anchors = identity if identity is not None else load_identity(cfg)
    pledge = Pledge(
        idevid=idevid,
        key=key,
        chain=chain,
        anchors=anchors,
        media_type=cfg.media_type,
        accept_nonceless=cfg.accept_nonceless,
    )
    conn = connection(cfg, [idevid, *chain], key)
    session = Session(cfg, conn, log)
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

    step(log, "start", serial=pledge.serial, registrar=cfg.registrar_url, format=cfg.media_type)
    try:
        t0 = time.perf_counter()
        try:
            der = await session.open()
        except errors.BrskiError as exc:
            pledge.abort(check=exc.check, detail=exc.detail)
            step(log, "failed", check=exc.check, detail=exc.detail)
            return result()
        timings["tls"] = round((time.perf_counter() - t0) * 1000, 2)
        pledge.connected(der)
        assert pledge.registrar_cert is not None
        if log.isEnabledFor(logging.INFO):  # a fleet runs quiet: no digest for a dropped line
            step(
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
            step(log, "failed", check=pledge.failure.check, detail=pledge.failure.detail)
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
        step(log, f"{phase}-pending", attempt=attempt, retry_after=decision.after)
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
    session: Session,
    cfg: PledgeConfig,
    log: Any,
    sleep: Sleep,
    timings: dict[str, float],
) -> None:
    t0 = time.perf_counter()
    # RFC 8995 5.2: a fresh cryptographically strong nonce per attempt (RFC 4086 6.2).
    body = pledge.build_voucher_request(now=now(), nonce=secrets.token_bytes(32))
    headers = {"Content-Type": cfg.media_type, "Accept": cfg.media_type}
    decision = await _until_decided(
        pledge,
        lambda b: session.request("POST", PATH_REQUESTVOUCHER, headers=headers, body=b),
        lambda r: pledge.voucher_response(
            status=r.status, headers=r.headers, body=r.body, now=now()
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
    if isinstance(decision, VoucherAccepted) and log.isEnabledFor(logging.INFO):
        v = decision.voucher
        step(
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
        step(log, "voucher-refused", check=decision.check, detail=decision.detail)
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
        step(log, "voucher-status-unsent", check=exc.check)  # "the client ignores any response"


async def _enroll_phase(
    pledge: Pledge,
    session: Session,
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
    step(log, "cacerts", status=resp.status, count=len(cacerts))
    # RFC 8995 5.9.2: the pledge MUST request the CSR attributes.
    resp = await session.request("GET", PATH_CSRATTRS, headers={"Accept": oids.MT_CSRATTRS})
    step(log, "csrattrs", status=resp.status, bytes=len(resp.body))
    new_key = generate_key(KEY_KINDS[cfg.key_type])
    csr = pledge.build_csr(key=new_key)
    decision = await _until_decided(
        pledge,
        lambda b: session.request(
            "POST", PATH_SIMPLEENROLL, headers=enroll_headers(), body=encode_base64_body(b)
        ),
        lambda r: pledge.enroll_response(
            status=r.status, headers=r.headers, body=r.body, now=now()
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
        step(log, "enroll-refused", check=decision.check, detail=decision.detail)
        # RFC 8995 5.9.4: a failure MUST be reported over the same TLS connection.
        try:
            await session.request(
                "POST",
                PATH_ENROLLSTATUS,
                headers={"Content-Type": oids.MT_JSON},
                body=pledge.enroll_status(),
            )
        except errors.BrskiError as exc:
            step(log, "enroll-status-unsent", check=exc.check)
        return
    assert isinstance(decision, Enrolled)
    cert = decision.cert
    if log.isEnabledFor(logging.INFO):  # a fleet runs quiet: skip formatting two Names
        step(
            log,
            "enrolled",
            subject=cert.subject.rfc4514_string(),
            serial=format(cert.serial_number, "x"),
            issuer=cert.issuer.rfc4514_string(),
            ms=timings["enroll"],
        )
    if cfg.out is not None:
        files.extend(save_credentials(cfg.out, cert, new_key, [pledge.pinned_domain_cert, *pledge.cacerts]))
        step(log, "saved", dir=cfg.out)
    await _send_enroll_success(pledge, session, cfg, cert, new_key, log)


async def _send_enroll_success(
    pledge: Pledge,
    session: Session,
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
        fresh = connection(cfg, [cert], key)
        try:
            der = await fresh.connect()
            authenticate_server_cert(
                load_server_cert(der), pinned=pinned, intermediates=pledge.cacerts, now=now()
            )
            resp = await fresh.request("POST", PATH_ENROLLSTATUS, headers=headers, body=body)
            step(log, "enroll-status", status=resp.status, connection="ldevid")
            return
        except errors.BrskiError as exc:
            step(log, "enroll-status-fallback", check=exc.check, detail=exc.detail)
        finally:
            await fresh.close()
    try:
        resp = await session.request("POST", PATH_ENROLLSTATUS, headers=headers, body=body)
        step(log, "enroll-status", status=resp.status, connection="idevid")
    except errors.BrskiError as exc:
        step(log, "enroll-status-unsent", check=exc.check)


