"""A pure OCSP responder core for the domain CA (RFC 6960).

The registrar's HTTP layer hands the request bytes here together with a
lookup function; this module parses the request, checks that it asks about
a certificate of *our* CA (issuerNameHash and issuerKeyHash, RFC 6960 4.1.1),
and signs a BasicOCSPResponse with the CA key (4.2.1; the CA itself is an
authorised responder, 2.6). Status rules (2.2):

* ``good``: the serial is a certificate we issued and have not revoked;
* ``revoked``: with revocationTime and, unless unspecified, the reason;
* ``unknown``: we have no issued certificate with that serial (including a
  serial reserved before a crash whose certificate never left the CA).

A request about another issuer is answered ``unauthorized`` (2.3), bytes
that are not an OCSPRequest ``malformedRequest``. A request nonce
(RFC 8954, id-pkix-ocsp-nonce) is echoed so clients that check it (openssl
does by default) accept the answer. Nothing here reads a clock.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from asn1crypto import keys
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509 import ocsp

from brski.asn1 import check_der
from brski.ca import signature_hash
from brski.errors import BrskiError, ConfigError, MalformedInput
from brski.pki import PrivateKey

__all__ = [
    "MAX_REQUEST",
    "CertStatus",
    "OcspAnswer",
    "answer",
    "error_response",
    "issuer_hashes",
    "parse_request",
]

MAX_REQUEST = 8192  # one CertID plus a nonce and a signature fits easily
_HASHES: dict[str, Callable[[bytes], bytes]] = {
    "sha1": lambda b: hashlib.sha1(b, usedforsecurity=False).digest(),
    "sha256": lambda b: hashlib.sha256(b).digest(),
    "sha384": lambda b: hashlib.sha384(b).digest(),
    "sha512": lambda b: hashlib.sha512(b).digest(),
}

Status = Literal["good", "revoked", "unknown"]


@dataclass(frozen=True, kw_only=True)
class CertStatus:
    status: Status
    revoked_at: datetime | None = None
    reason: x509.ReasonFlags | None = None


@dataclass(frozen=True, kw_only=True)
class OcspAnswer:
    """What was asked and answered, for the event log."""

    der: bytes
    response_status: str
    serial: int | None = None
    cert_status: Status | None = None


def issuer_hashes(ca_cert: x509.Certificate, algorithm: str) -> tuple[bytes, bytes]:
    """(issuerNameHash, issuerKeyHash) of ``ca_cert`` under ``algorithm``.

    RFC 6960 4.1.1: the hash of the issuer's DER-encoded distinguished name
    and of the value (excluding tag, length and unused-bits octet) of the
    BIT STRING subjectPublicKey in the issuer's certificate.
    """
    digest = _HASHES.get(algorithm)
    if digest is None:
        raise MalformedInput(f"unsupported CertID hash {algorithm}", check="ocsp.hash-algorithm")
    spki = ca_cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    key_bits = bytes(keys.PublicKeyInfo.load(spki)["public_key"].contents[1:])
    return digest(ca_cert.subject.public_bytes()), digest(key_bits)


def parse_request(der: bytes) -> ocsp.OCSPRequest:
    """An OCSPRequest for exactly one certificate (size and depth checked first)."""
    check_der(der, max_size=MAX_REQUEST, max_depth=16)
    try:
        return ocsp.load_der_ocsp_request(der)
    except (ValueError, NotImplementedError, TypeError) as exc:
        raise MalformedInput(f"not an OCSP request: {exc}", check="ocsp.malformed") from exc


def error_response(status: ocsp.OCSPResponseStatus) -> bytes:
    """An unsigned OCSPResponse carrying only an error status (RFC 6960 4.2.1)."""
    return ocsp.OCSPResponseBuilder.build_unsuccessful(status).public_bytes(Encoding.DER)


def _nonce(req: ocsp.OCSPRequest) -> bytes | None:
    try:
        ext = req.extensions.get_extension_for_class(x509.OCSPNonce)
    except x509.ExtensionNotFound:
        return None
    return ext.value.nonce


async def answer(
    der: bytes,
    *,
    ca_cert: x509.Certificate,
    ca_key: PrivateKey,
    lookup: Callable[[int], Awaitable[CertStatus]],
    now: datetime,
    validity: timedelta,
) -> OcspAnswer:
    """Parse ``der`` and produce the DER OCSPResponse to send (always, even on error)."""
    if now.tzinfo is None:
        raise ConfigError("now must be timezone-aware", check="ocsp.now-naive")
    try:
        req = parse_request(der)
        algorithm = req.hash_algorithm.name
        name_hash, key_hash = issuer_hashes(ca_cert, algorithm)
    except BrskiError:
        return OcspAnswer(
            der=error_response(ocsp.OCSPResponseStatus.MALFORMED_REQUEST),
            response_status="malformedRequest",
        )
    if req.issuer_name_hash != name_hash or req.issuer_key_hash != key_hash:
        # RFC 6960 2.3: not a certificate this responder can speak for.
        return OcspAnswer(
            der=error_response(ocsp.OCSPResponseStatus.UNAUTHORIZED),
            response_status="unauthorized",
            serial=req.serial_number,
        )
    info = await lookup(req.serial_number)
    cert_status = {
        "good": ocsp.OCSPCertStatus.GOOD,
        "revoked": ocsp.OCSPCertStatus.REVOKED,
        "unknown": ocsp.OCSPCertStatus.UNKNOWN,
    }[info.status]
    revoked = info.status == "revoked"
    reason = info.reason if revoked and info.reason is not x509.ReasonFlags.unspecified else None
    builder = ocsp.OCSPResponseBuilder().add_response_by_hash(
        issuer_name_hash=name_hash,
        issuer_key_hash=key_hash,
        serial_number=req.serial_number,
        algorithm=req.hash_algorithm,
        cert_status=cert_status,
        this_update=now,
        next_update=now + validity,
        revocation_time=info.revoked_at if revoked else None,
        revocation_reason=reason,
    )
    # RFC 6960 4.2.2.3: byKey, the SHA-1 hash of the responder's public key.
    builder = builder.responder_id(ocsp.OCSPResponderEncoding.HASH, ca_cert)
    # RFC 6960 4.2.1 "certs" (optional): carry the signer. OpenSSL's
    # OCSP_basic_verify finds the signer only there or in a list the caller
    # passes, and FreeRADIUS passes none ("signer certificate not found").
    builder = builder.certificates([ca_cert])
    nonce = _nonce(req)
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    response = builder.sign(ca_key, signature_hash(ca_key))
    return OcspAnswer(
        der=response.public_bytes(Encoding.DER),
        response_status="successful",
        serial=req.serial_number,
        cert_status=info.status,
    )


