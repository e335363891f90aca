"""EST /simplereenroll from the pledge (RFC 7030 4.2.2): renew the LDevID over a
new connection authenticated by it, the registrar validated against the domain
trust anchor saved at enrolment."""

from __future__ import annotations

import asyncio
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from brski import errors
from brski.est import encode_base64_body
from brski.pki import PrivateKey, generate_key, load_cert, load_certs
from brski.pledge import (
    authenticate_server_cert,
    build_csr_der,
    retry_after_seconds,
    verify_issued_cert,
)
from pledge_sim.config import PledgeConfig
from pledge_sim.session import (
    KEY_KINDS,
    PATH_SIMPLEREENROLL,
    Session,
    Sleep,
    connection,
    default_log,
    enroll_headers,
    now,
    read_file,
    save_credentials,
    step,
)

__all__ = ["reenroll"]


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
    log = log or default_log
    ca_file = cfg.domain_ca or (cfg.out / "domain-ca.pem" if cfg.out else None)
    domain = load_certs(read_file(ca_file, "domain CA bundle (--domain-ca or --out)"))
    if not domain:
        raise errors.ConfigError("domain CA bundle is empty", check="pledge.config")
    conn = connection(cfg, [ldevid_cert], ldevid_key)
    session = Session(cfg, conn, log)
    try:
        der = await session.open()
        server = load_cert(der)
        _authenticate_against_any(server, domain)
        step(log, "tls", version=conn.tls_version, registrar="authenticated")
        key = generate_key(KEY_KINDS[cfg.key_type]) if new_key else ldevid_key
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
                "POST", PATH_SIMPLEREENROLL, headers=enroll_headers(), body=encode_base64_body(csr)
            )
            if resp.status != 202:
                break
            wait = retry_after_seconds(resp.headers, now())
            step(log, "reenroll-pending", attempt=attempt, retry_after=wait)
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
            now=now(),
        )
        step(log, "reenrolled", serial=format(enrolled.cert.serial_number, "x"), rekeyed=new_key)
        if cfg.out is not None:
            save_credentials(cfg.out, enrolled.cert, key, list(domain))
        return enrolled.cert
    finally:
        await conn.close()


def _authenticate_against_any(server: x509.Certificate, domain: list[x509.Certificate]) -> None:
    last: errors.BrskiError | None = None
    for anchor in domain:
        try:
            authenticate_server_cert(server, pinned=anchor, intermediates=domain, now=now())
            return
        except errors.BrskiError as exc:
            last = exc
    assert last is not None
    raise last
