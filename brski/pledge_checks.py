"""The pledge's pure checks, shared by the state machine and re-enrolment.

:mod:`brski.pledge` drives first enrolment through its transition table;
re-enrolment (RFC 7030 4.2.2) has no voucher phase and no state machine but
must authenticate the registrar and the issued certificate the same way, so
those rules live here once: Retry-After clamping (RFC 8995 5.6), the
registrar's TLS certificate against the pinned domain (5.6.2), the CSR the
pledge sends (5.9.3) and the certificate it accepts (RFC 7030 4.2.3).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import NameOID

from brski import errors, oids
from brski.artifact import SignedArtifact
from brski.certfacts import load_der_cert
from brski.est import decode_base64_body, parse_certs_only
from brski.pki import PrivateKey, Role, verify_chain
from brski.voucher import Voucher

__all__ = [
    "DEFAULT_RETRY_AFTER",
    "MAX_NONCE",
    "MAX_PENDING",
    "MAX_RETRY_AFTER",
    "MIN_NONCE",
    "Decision",
    "Enrolled",
    "Failed",
    "Retry",
    "VoucherAccepted",
    "authenticate_server_cert",
    "build_csr_der",
    "device_subject",
    "load_server_cert",
    "retry_after_seconds",
    "verify_issued_cert",
]

# RFC 8995 section 5.6: "the pledge MUST limit the 'Retry-After' time to 60 seconds".
MAX_RETRY_AFTER = 60
# RFC 7030 4.2.3 makes Retry-After mandatory on a 202; a server that omits it
# (or sends garbage, which an unauthenticated peer may do) gets this instead.
DEFAULT_RETRY_AFTER = 5
# RFC 8995 section 5.6: keep a 202 retry-state "for up to 4 days".
MAX_PENDING = timedelta(days=4)
# Nonce bounds: RFC 8995 5.2 wants a cryptographically strong nonce (RFC 4086 6.2).
MIN_NONCE, MAX_NONCE = 16, 32
_DETAIL_LIMIT = 200


# --- decisions ------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Retry:
    """Wait ``after`` seconds (already clamped), then resend the same request."""

    after: int
    detail: str = ""


@dataclass(frozen=True, kw_only=True)
class VoucherAccepted:
    """The voucher passed section 5.6.1 and the registrar passed section 5.6.2."""

    voucher: Voucher
    artifact: SignedArtifact
    pinned_domain_cert: x509.Certificate | None


@dataclass(frozen=True, kw_only=True)
class Enrolled:
    """An LDevID for our CSR key, with the validated path (leaf first, anchor last)."""

    cert: x509.Certificate
    path: tuple[x509.Certificate, ...]


@dataclass(frozen=True, kw_only=True)
class Failed:
    """A refusal; ``check`` names the rule, ``detail`` is for logs, not for peers."""

    check: str
    detail: str
    phase: str = "voucher"
    http_status: int | None = None


Decision = Retry | VoucherAccepted | Enrolled | Failed


# --- pure helpers (also used by re-enrollment, which has no state machine) ------


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive lookup that works on a plain dict as well as a multidict."""
    value = headers.get(name)
    if value is not None:
        return value
    lname = name.lower()
    for key, val in headers.items():
        if key.lower() == lname:
            return val
    return None


def _base_media_type(value: str | None) -> str:
    return (value or "").split(";", 1)[0].strip().lower()


def retry_after_seconds(headers: Mapping[str, str], now: datetime) -> int:
    """Retry-After as delta-seconds or HTTP-date (RFC 9110 10.2.3), clamped to [1, 60]."""
    raw = _header(headers, "Retry-After")
    seconds = DEFAULT_RETRY_AFTER
    if raw is not None:
        raw = raw.strip()
        if raw.isdigit() and len(raw) <= 12:
            seconds = int(raw)
        else:
            try:
                seconds = int((parsedate_to_datetime(raw) - now).total_seconds())
            except (TypeError, ValueError, OverflowError):
                seconds = DEFAULT_RETRY_AFTER
    # RFC 8995 section 5.6: never wait longer than 60 s for a possibly hostile registrar.
    return max(1, min(MAX_RETRY_AFTER, seconds))


def _problem_text(headers: Mapping[str, str], body: bytes) -> str:
    """A short, printable summary of an error body (problem+json or plain text).

    The peer is unauthenticated (RFC 8995 5.1), so the text is truncated and
    stripped of control characters before it can reach a log line.
    """
    text = body[:4096].decode("utf-8", "replace")
    if _base_media_type(_header(headers, "Content-Type")) in (oids.MT_PROBLEM_JSON, oids.MT_JSON):
        try:
            obj = json.loads(text)
        except ValueError:
            obj = None
        if isinstance(obj, dict):
            text = str(obj.get("detail") or obj.get("title") or "")
            if isinstance(obj.get("check"), str):
                text = f"{text} [{obj['check']}]"
    clean = "".join(ch if ch.isprintable() else " " for ch in text).strip()
    return clean[:_DETAIL_LIMIT]


def _spki(obj: x509.Certificate | PrivateKey) -> bytes:
    """DER SubjectPublicKeyInfo of a certificate or of a private key's public half."""
    return obj.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _within_validity(cert: x509.Certificate, now: datetime, check: str) -> None:
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise errors.ChainInvalid("certificate outside its validity period", check=check)


def authenticate_server_cert(
    server_cert: x509.Certificate,
    *,
    pinned: x509.Certificate,
    intermediates: Sequence[x509.Certificate] = (),
    now: datetime,
) -> None:
    """RFC 8995 5.6.2: the registrar's TLS certificate must chain to the pinned
    domain certificate, used as the *sole* trust anchor, or be that certificate.

    A pledge that found its registrar by discovery has no configured name to
    check the certificate against, so, per RFC 7030 3.6.1 (and 5.6.2's
    "any dynamically discovered EST server that contains the id-kp-cmcRA"),
    the certificate must also carry id-kp-cmcRA: otherwise any certificate
    the domain CA issued -- another device's LDevID -- could play registrar.
    Only a certificate pinned itself (5.6.2: "the pinned-domain-cert matches
    the End-Entity Certificate") is exempt: the voucher named it exactly.

    Also used by re-enrollment to authenticate the registrar against the
    domain CA once the pledge is no longer provisional.
    """
    # verify_chain accepts the leaf when it *is* an anchor: "It is possible that
    # the pinned-domain-cert matches the End-Entity Certificate" (5.6.2).
    try:
        verify_chain(
            server_cert,
            intermediates=intermediates,
            anchors=[pinned],
            now=now,
            role=Role.TLS_SERVER,
        )
    except errors.ChainInvalid as exc:
        raise errors.ChainInvalid(
            f"registrar certificate does not chain to the pinned domain certificate: {exc.detail}",
            check="pledge.registrar-cert-unpinned",
            cause=exc.check,
        ) from exc
    if server_cert == pinned:
        return
    try:
        eku = server_cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        eku = None
    if eku is None or oids.ID_KP_CMC_RA not in eku:
        raise errors.ChainInvalid(
            "registrar certificate chains to the domain but lacks id-kp-cmcRA (RFC 7030 3.6.1): "
            f"{server_cert.subject.rfc4514_string()!r} is not a registration authority",
            check="pledge.registrar-not-ra",
        )


def build_csr_der(
    *,
    key: PrivateKey,
    subject: x509.Name,
    san: x509.SubjectAlternativeName | None = None,
) -> bytes:
    """A DER PKCS#10 request signed by ``key`` (proof of possession, RFC 7030 4.2.1).

    Ed25519 keys sign without a separate hash; everything else uses SHA-256.
    """
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    if san is not None:
        builder = builder.add_extension(san, critical=False)
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    csr = builder.sign(key, algorithm)
    return csr.public_bytes(serialization.Encoding.DER)


def device_subject(serial: str) -> x509.Name:
    """CN and serialNumber both carry the device serial (RFC 8995 2.3.1 style)."""
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, serial),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, serial),
        ]
    )


def verify_issued_cert(
    *,
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    csr_public_spki: bytes,
    anchors: Sequence[x509.Certificate],
    intermediates: Sequence[x509.Certificate] = (),
    now: datetime,
) -> Enrolled:
    """Check a /simpleenroll or /simplereenroll 200 response (RFC 7030 4.2.3).

    The certs-only response must contain a certificate for the key we put in
    the CSR, and that certificate must chain to the domain trust anchor
    (the pinned-domain-cert, RFC 8995 5.6.2, or the domain CA after enrollment).
    """
    if status != 200:
        raise errors.PeerError(
            f"enrollment answered HTTP {status}: {_problem_text(headers, body)}",
            check="pledge.enroll-http-status",
        )
    ctype = _base_media_type(_header(headers, "Content-Type"))
    if ctype != oids.MT_PKCS7_MIME:
        raise errors.UnsupportedMediaType(
            f"enrollment response has Content-Type {ctype!r}", check="pledge.enroll-media-type"
        )
    try:
        certs = parse_certs_only(decode_base64_body(body))
    except errors.BrskiError as exc:
        raise errors.MalformedInput(
            f"enrollment response unreadable: {exc.detail}", check="pledge.enroll-malformed"
        ) from exc
    mine = [c for c in certs if _spki(c) == csr_public_spki]
    if not mine:
        raise errors.PeerError(
            "no certificate in the response carries the CSR's public key",
            check="pledge.enroll-key-mismatch",
        )
    leaf = mine[0]
    others = [c for c in certs if c is not leaf]
    try:
        path = verify_chain(
            leaf,
            intermediates=[*others, *intermediates],
            anchors=anchors,
            now=now,
            role=Role.LDEVID,
        )
    except errors.ChainInvalid as exc:
        raise errors.ChainInvalid(
            f"LDevID does not chain to the domain trust anchor: {exc.detail}",
            check="pledge.enroll-chain",
            cause=exc.check,
        ) from exc
    return Enrolled(cert=leaf, path=tuple(path))


def _load_der_cert(der: bytes, check: str) -> x509.Certificate:
    """A certificate the peer sent (the registrar's TLS leaf, the voucher's pin).

    Every pledge of a process (a fleet) meets the same registrar and domain
    certificates, so the parsed object is the one :func:`brski.certfacts.load_der_cert`
    keeps per distinct DER: cryptography then decodes its extensions once, not on
    every pledge's checks (authenticate_server_cert: 47 us on a fresh object, 23 us
    on a kept one, measured).  What fails to parse is not kept.
    """
    try:
        return load_der_cert(der)
    except (ValueError, x509.InvalidVersion) as exc:  # InvalidVersion is no ValueError
        raise errors.MalformedInput(f"not a DER certificate: {exc}", check=check) from exc


def load_server_cert(der: bytes) -> x509.Certificate:
    """The registrar's TLS certificate (DER) as the checks take it; see :func:`_load_der_cert`."""
    return _load_der_cert(der, "pledge.registrar-cert")


def _voucher_decode_error(exc: errors.BrskiError) -> errors.BrskiError:
    """Name a voucher that fails to verify or decode by the pledge rule it breaks."""
    if exc.check == "voucher.pinned-domain":
        # 5.6.1: "MUST be prepared to parse and fail gracefully from a voucher
        # response that does not contain a 'pinned-domain-cert' field".
        check = "pledge.voucher-pinned-domain-cert"
    elif isinstance(exc, errors.SignatureInvalid):
        check = "pledge.voucher-signature"
    elif isinstance(exc, errors.VoucherInvalid):
        check = "pledge.voucher-invalid"
    else:
        check = "pledge.voucher-malformed"
    return type(exc)(f"voucher refused: {exc.detail}", check=check, cause=exc.check)


def _authority_key_id(cert: x509.Certificate) -> bytes | None:
    try:
        ext = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    except x509.ExtensionNotFound:
        return None
    return ext.value.key_identifier
