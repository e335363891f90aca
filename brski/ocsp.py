"""A pure OCSP responder core for the domain CA (RFC 6960).

Two pure steps around the registrar's store lookup: :func:`read_request`
parses the request and checks that it asks about a certificate of *our* CA
(issuerNameHash and issuerKeyHash, RFC 6960 4.1.1); :func:`respond` signs a
BasicOCSPResponse with the CA key (4.2.1; the CA itself is an authorised
responder, 2.6) for the status the caller looked up. Status rules (2.2):

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
from collections.abc import Callable
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
    "OcspQuery",
    "error_response",
    "issuer_hashes",
    "parse_request",
    "read_request",
    "respond",
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


@dataclass(frozen=True, kw_only=True)
class OcspQuery:
    """A well-formed request about one certificate of our CA: what a lookup needs."""

    serial: int
    request: ocsp.OCSPRequest
    issuer_name_hash: bytes
    issuer_key_hash: bytes


def read_request(der: bytes, *, ca_cert: x509.Certificate) -> OcspQuery | OcspAnswer:
    """Step one: parse ``der``; a query to look up, or the answer when none is needed.

    Malformed bytes get ``malformedRequest`` and a request about another issuer
    ``unauthorized`` (RFC 6960 2.3) without consulting the store.
    """
    try:
        req = parse_request(der)
        name_hash, key_hash = issuer_hashes(ca_cert, req.hash_algorithm.name)
    except BrskiError:
        return OcspAnswer(
            der=error_response(ocsp.OCSPResponseStatus.MALFORMED_REQUEST),
            response_status="malformedRequest",
        )
    if req.issuer_name_hash != name_hash or req.issuer_key_hash != key_hash:
        return OcspAnswer(
            der=error_response(ocsp.OCSPResponseStatus.UNAUTHORIZED),
            response_status="unauthorized",
            serial=req.serial_number,
        )
    return OcspQuery(
        serial=req.serial_number, request=req, issuer_name_hash=name_hash, issuer_key_hash=key_hash
    )


def respond(
    query: OcspQuery,
    info: CertStatus,
    *,
    ca_cert: x509.Certificate,
    ca_key: PrivateKey,
    now: datetime,
    validity: timedelta,
) -> OcspAnswer:
    """Step two: the signed BasicOCSPResponse for ``query`` given the status the store holds."""
    if now.tzinfo is None:
        raise ConfigError("now must be timezone-aware", check="ocsp.now-naive")
    req = query.request
    cert_status = {
        "good": ocsp.OCSPCertStatus.GOOD,
        "revoked": ocsp.OCSPCertStatus.REVOKED,
        "unknown": ocsp.OCSPCertStatus.UNKNOWN,
    }[info.status]
    revoked = info.status == "revoked"
    reason = info.reason if revoked and info.reason is not x509.ReasonFlags.unspecified else None
    builder = ocsp.OCSPResponseBuilder().add_response_by_hash(
        issuer_name_hash=query.issuer_name_hash,
        issuer_key_hash=query.issuer_key_hash,
        serial_number=query.serial,
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
        serial=query.serial,
        cert_status=info.status,
    )
