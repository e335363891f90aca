"""Certificates and keys: loading, identity extraction and path validation.

Every role needs the same few questions answered about a certificate: which
device is this (RFC 8995 section 2.3.1), where is its MASA (section 2.3.2),
and does it chain to something we trust *for the job it is doing*. Answering
them in one place keeps the role code free of ad-hoc X.509 handling and makes
every refusal name the rule that failed.

Path building and signature checking are delegated to cryptography's
``x509.verification`` (a webpki-derived verifier). Its default extension
policies are written for the Web PKI and refuse certificates BRSKI must accept
(SAN-less IDevIDs, EKU-less or cmcRA-only registrar certificates), so this
module relaxes the extension policies and then applies the BRSKI role rules
itself.
"""

from __future__ import annotations

import enum
import hashlib
import string
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TypeAlias
from urllib.parse import urlsplit

from asn1crypto import core as asn1_core
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    Policy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from brski import oids
from brski.certfacts import (
    cert_der,
    cert_spki_sha256,
    issuer_name_der,
    load_der_cert,
    subject_name_der,
)
from brski.errors import ChainInvalid, ConfigError, MalformedInput

__all__ = [
    "PrivateKey",
    "PublicKey",
    "Role",
    "cert_der",
    "device_serial",
    "fingerprint_sha256",
    "forget_verified_paths",
    "generate_key",
    "issuer_name_der",
    "load_cert",
    "load_certs",
    "load_der_cert",
    "load_private_key",
    "masa_url",
    "public_key_of",
    "spki_sha256",
    "subject_name_der",
    "verify_chain",
]

PrivateKey: TypeAlias = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
PublicKey: TypeAlias = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey

# A single certificate larger than this is not something a pledge, registrar
# or MASA legitimately sends; bundles get more room for long chains.
MAX_CERT_SIZE = 64 * 1024
MAX_BUNDLE_SIZE = 1024 * 1024
MAX_KEY_SIZE = 64 * 1024

_SUPPORTED_CURVES = (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)
_PEM_CERT_MARKER = b"-----BEGIN CERTIFICATE-----"


# --- loading ------------------------------------------------------------------


def _check_size(data: bytes, limit: int, what: str) -> None:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise MalformedInput(f"{what} must be bytes", check="pki.type")
    if len(data) == 0:
        raise MalformedInput(f"empty {what}", check="pki.empty")
    if len(data) > limit:
        # PayloadTooLarge is a 413 for a request body; here the bytes may come
        # from anywhere (a voucher field, a file), so it is a malformed value.
        raise MalformedInput(f"{what} is {len(data)} bytes, over {limit}", check="pki.size")


def _is_pem(data: bytes) -> bool:
    # DER starts with a SEQUENCE tag; anything else is treated as PEM, which
    # RFC 7468 section 2 lets carry explanatory text before the boundary (as
    # `openssl x509 -text` output does).
    return data[:1] != b"\x30"


def load_cert(data: bytes, *, max_size: int = MAX_CERT_SIZE) -> x509.Certificate:
    """One certificate from PEM or DER; the first one if the PEM holds several.

    Both encodings appear in practice: RFC 8366 pinned-domain-cert is DER,
    configuration files are PEM.
    """
    _check_size(data, max_size, "certificate")
    raw = bytes(data)
    try:
        if _is_pem(raw):
            return x509.load_pem_x509_certificate(raw)
        return x509.load_der_x509_certificate(raw)
    except (ValueError, TypeError, UnsupportedAlgorithm, x509.InvalidVersion) as exc:
        raise MalformedInput(f"not an X.509 certificate: {exc}", check="pki.certificate") from exc


def load_certs(data: bytes, *, max_size: int = MAX_BUNDLE_SIZE) -> list[x509.Certificate]:
    """Every certificate of a PEM bundle (in file order), or the one DER certificate."""
    _check_size(data, max_size, "certificate bundle")
    raw = bytes(data)
    try:
        if _is_pem(raw):
            if _PEM_CERT_MARKER not in raw:
                raise ValueError("no CERTIFICATE block in PEM")
            return x509.load_pem_x509_certificates(raw)
        return [x509.load_der_x509_certificate(raw)]
    except (ValueError, TypeError, UnsupportedAlgorithm, x509.InvalidVersion) as exc:
        raise MalformedInput(f"not a certificate bundle: {exc}", check="pki.certificate") from exc


def load_private_key(data: bytes, *, max_size: int = MAX_KEY_SIZE) -> PrivateKey:
    """An unencrypted PEM private key of a type the project signs with.

    Keys only come from local files, but a wrong file (an encrypted key, a DSA
    key) should still produce a named error rather than a stack trace.
    """
    _check_size(data, max_size, "private key")
    try:
        key = serialization.load_pem_private_key(bytes(data), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise MalformedInput(
            f"not an unencrypted PEM private key: {exc}", check="pki.private-key"
        ) from exc
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if not isinstance(key.curve, _SUPPORTED_CURVES):
            raise MalformedInput(f"unsupported curve {key.curve.name}", check="pki.key-type")
        return key
    if isinstance(key, ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey):
        return key
    raise MalformedInput(f"unsupported key type {type(key).__name__}", check="pki.key-type")


def generate_key(kind: str = "p256") -> PrivateKey:
    """A fresh private key; P-256 is the default because every BRSKI peer supports it."""
    if kind == "p256":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "p384":
        return ec.generate_private_key(ec.SECP384R1())
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if kind == "rsa2048":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise ConfigError(f"unknown key kind {kind!r}", check="pki.key-kind")


def public_key_of(key: PrivateKey) -> PublicKey:
    return key.public_key()


# --- identity -----------------------------------------------------------------


def device_serial(cert: x509.Certificate) -> str | None:
    """The pledge's serial-number: the subject's X520SerialNumber attribute.

    RFC 8995 section 2.3.1: the *certificate* serialNumber is irrelevant; the
    device serial is the id-at-serialNumber attribute of the subject DN. Two
    different values would make the pledge's identity ambiguous, so refuse.
    """
    attrs = cert.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
    if not attrs:
        return None
    values = {a.value if isinstance(a.value, str) else a.value.decode("latin-1") for a in attrs}
    if len(values) != 1:
        raise MalformedInput(
            "subject carries several different serialNumber attributes",
            check="pki.device-serial",
        )
    value = values.pop()
    if not value:
        raise MalformedInput("subject serialNumber attribute is empty", check="pki.device-serial")
    return value


_URL_FORBIDDEN = set(string.whitespace) | {chr(c) for c in range(0x20)} | {"\x7f"}


def masa_url(cert: x509.Certificate) -> str | None:
    """The MASA base URL from id-pe-masa-url, always with an https scheme.

    RFC 8995 section 2.3.2: the extension is an IA5String URI; it SHOULD be
    only the authority, in which case "https://" is assumed (the registrar may
    assume authority-only when there is no "/"), and the registrar MUST use
    HTTPS, so any other explicit scheme is refused rather than silently
    upgraded. A trailing "/" is dropped so callers can append
    "/.well-known/brski/...". A full URI that already includes a path is
    returned with that path.
    """
    try:
        ext = cert.extensions.get_extension_for_oid(oids.ID_PE_MASA_URL)
    except x509.ExtensionNotFound:
        return None
    except ValueError as exc:  # duplicate or undecodable extensions
        raise MalformedInput(f"certificate extensions: {exc}", check="pki.masa-url") from exc
    value = ext.value
    if not isinstance(value, x509.UnrecognizedExtension):
        raise MalformedInput("unexpected id-pe-masa-url decoding", check="pki.masa-url")
    raw = value.value
    try:
        parsed = asn1_core.IA5String.load(raw, strict=True)
        text = parsed.native
    except (ValueError, TypeError, UnicodeDecodeError) as exc:
        raise MalformedInput(
            f"id-pe-masa-url is not a DER IA5String: {exc}", check="pki.masa-url"
        ) from exc
    if not isinstance(text, str) or not text.isascii():
        raise MalformedInput("id-pe-masa-url is not ASCII", check="pki.masa-url")
    return _normalise_masa_url(text)


def _normalise_masa_url(text: str) -> str:
    if not text or any(ch in _URL_FORBIDDEN for ch in text):
        raise MalformedInput(
            f"id-pe-masa-url {text!r} is empty or has spaces", check="pki.masa-url"
        )
    if "://" not in text:
        # RFC 8995 section 2.3.2: authority only; https is assumed.
        text = "https://" + text
    try:
        parts = urlsplit(text)
        _ = parts.port  # raises ValueError on a bad port
    except ValueError as exc:
        raise MalformedInput(f"id-pe-masa-url {text!r}: {exc}", check="pki.masa-url") from exc
    if parts.scheme.lower() != "https":
        # RFC 8995 section 2.3.2: "the registrar MUST use HTTPS".
        raise MalformedInput(f"id-pe-masa-url {text!r} is not https", check="pki.masa-url-scheme")
    if not parts.hostname:
        raise MalformedInput(f"id-pe-masa-url {text!r} has no host", check="pki.masa-url")
    return text.rstrip("/")


# --- fingerprints ---------------------------------------------------------------


def spki_sha256(cert_or_public_key: x509.Certificate | PublicKey) -> bytes:
    """SHA-256 over the DER SubjectPublicKeyInfo (RFC 8366 pinned-domain-pubk-sha256)."""
    if isinstance(cert_or_public_key, x509.Certificate):
        return cert_spki_sha256(cert_or_public_key)  # remembered per certificate
    spki = cert_or_public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).digest()


def fingerprint_sha256(cert: x509.Certificate) -> str:
    """Lower-case hex SHA-256 of the whole DER certificate: a stable key for logs and tables."""
    return hashlib.sha256(cert_der(cert)).hexdigest()


# --- path validation --------------------------------------------------------------


class Role(enum.Enum):
    """What the leaf is about to be trusted for; each role adds its own rules."""

    IDEVID = "idevid"
    LDEVID = "ldevid"
    MASA_SIGNER = "masa-signer"
    REGISTRAR_RA = "registrar-ra"
    TLS_SERVER = "tls-server"
    CA = "ca"


def _ca_key_usage(_policy: Policy, _cert: x509.Certificate, ku: x509.KeyUsage | None) -> None:
    # RFC 5280 section 4.2.1.3: a CA certificate whose keyUsage is present must
    # assert keyCertSign to sign certificates. The permissive base policy below
    # does not check it, so put the check back.
    if ku is not None and not ku.key_cert_sign:
        raise ValueError("CA certificate keyUsage lacks keyCertSign")


def _extension_policies() -> tuple[ExtensionPolicy, ExtensionPolicy]:
    """CA and EE extension policies for BRSKI's private PKIs.

    The Web PKI defaults require a SAN and serverAuth/clientAuth EKU on the
    leaf and AKI/SKI everywhere. BRSKI certificates legitimately lack them:
    802.1AR IDevIDs have no SAN (RFC 8995 section 2.3 recommends no usage
    restrictions), the RFC 8995 Appendix C registrar carries only cmcRA and no
    key identifiers. So: accept any extension on either side (unknown
    *critical* extensions are still refused by the verifier), require
    basicConstraints on CAs (the verifier then insists on cA=TRUE and enforces
    pathLenConstraint), and re-add the CA keyCertSign rule. Role-specific EKU
    and keyUsage rules are applied afterwards by ``_check_role``.
    """
    ca = (
        ExtensionPolicy.permit_all()
        .require_present(x509.BasicConstraints, Criticality.AGNOSTIC, None)
        .may_be_present(x509.KeyUsage, Criticality.AGNOSTIC, _ca_key_usage)
    )
    ee = ExtensionPolicy.permit_all()
    return ca, ee


def _validity_error(cert: x509.Certificate, now: datetime, what: str) -> ChainInvalid | None:
    # RFC 8995 section 2.6.1: a pledge with a trusted clock MUST check validity.
    # 802.1AR's 99991231235959Z notAfter (RFC 5280 section 4.1.2.5) is simply a
    # far-future date here.
    if now < cert.not_valid_before_utc:
        return ChainInvalid(
            f"{what} {cert.subject.rfc4514_string()!r} is not valid before "
            f"{cert.not_valid_before_utc.isoformat()}",
            check="chain.not-yet-valid",
        )
    if now > cert.not_valid_after_utc:
        return ChainInvalid(
            f"{what} {cert.subject.rfc4514_string()!r} expired at "
            f"{cert.not_valid_after_utc.isoformat()}",
            check="chain.expired",
        )
    return None


def _diagnose_time(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    anchors: Sequence[x509.Certificate],
    now: datetime,
) -> ChainInvalid | None:
    """After a failed build, blame an out-of-date issuer candidate if there is one.

    Checked only after failure, because a peer may send stale spare
    intermediates that a good path never uses; blaming them up front would
    refuse valid chains.
    """
    wanted = {leaf.issuer.public_bytes()} | {c.issuer.public_bytes() for c in intermediates}
    for what, pool in (("intermediate", intermediates), ("trust anchor", anchors)):
        for cert in pool:
            if cert.subject.public_bytes() in wanted:
                err = _validity_error(cert, now, what)
                if err is not None:
                    return err
    return None


def _diagnose_path(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    anchors: Sequence[x509.Certificate],
) -> tuple[str, str | None]:
    """After a failed build: (what went wrong, the issuer name nobody offered).

    Follows issuer names from the leaf through what the peer sent (RFC 5280
    section 6.1 chains by name first) and stops at the first issuer that is
    neither an offered certificate nor a trust anchor: the certificate a lab
    needs to find. When the names do link up to an anchor, the refusal lies
    in a signature, a constraint or an extension, and says so.
    """
    by_subject = {c.subject.public_bytes(): c for c in intermediates}
    anchor_names = {a.subject.public_bytes() for a in anchors}
    cert = leaf
    for _ in range(len(intermediates) + 1):
        issuer = cert.issuer.public_bytes()
        if issuer in anchor_names:
            return (
                f"a path by name reaches the trust anchor {cert.issuer.rfc4514_string()!r}, "
                "but a signature, constraint or extension on it fails",
                None,
            )
        following = by_subject.get(issuer)
        if following is None or following is cert:
            name = cert.issuer.rfc4514_string()
            return f"no certificate for issuer {name!r} (of {cert.subject.rfc4514_string()!r})", name
        cert = following
    return "the offered certificates form a loop", None


def _eku(cert: x509.Certificate) -> x509.ExtendedKeyUsage | None:
    try:
        return cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return None


def _key_usage(cert: x509.Certificate) -> x509.KeyUsage | None:
    try:
        return cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return None


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def _check_role(leaf: x509.Certificate, role: Role) -> None:
    def name() -> str:  # only for the refusal text: formatting a Name is not free
        return repr(leaf.subject.rfc4514_string())

    if role is Role.REGISTRAR_RA:
        # RFC 8995 section 5.5.4: the registrar voucher-request signer MUST
        # carry id-kp-cmcRA (RFC 7030 section 3.6.1); absence is a refusal.
        eku = _eku(leaf)
        if eku is None or oids.ID_KP_CMC_RA not in eku:
            raise ChainInvalid(f"{name()} lacks EKU id-kp-cmcRA", check="chain.eku")
    elif role is Role.LDEVID:
        # An LDevID authenticates as a TLS client; a restricted EKU must allow it.
        eku = _eku(leaf)
        if eku is not None and ExtendedKeyUsageOID.CLIENT_AUTH not in eku:
            raise ChainInvalid(f"{name()} EKU does not include clientAuth", check="chain.eku")
    elif role is Role.TLS_SERVER:
        eku = _eku(leaf)
        if eku is not None and ExtendedKeyUsageOID.SERVER_AUTH not in eku:
            raise ChainInvalid(f"{name()} EKU does not include serverAuth", check="chain.eku")
    elif role is Role.MASA_SIGNER:
        # RFC 8366 section 5.3 vouchers are CMS signatures: RFC 5280 section
        # 4.2.1.3 digitalSignature, when keyUsage restricts the key at all.
        ku = _key_usage(leaf)
        if ku is not None and not ku.digital_signature:
            raise ChainInvalid(f"{name()} keyUsage lacks digitalSignature", check="chain.key-usage")
    elif role is Role.CA:
        if not _is_ca(leaf):
            raise ChainInvalid(f"{name()} is not a CA certificate", check="chain.not-ca")
    # Role.IDEVID: RFC 8995 section 2.3 recommends no usage restrictions, so a
    # valid path is all that is asked.


def verify_chain(
    leaf: x509.Certificate,
    *,
    intermediates: Sequence[x509.Certificate] = (),
    anchors: Sequence[x509.Certificate],
    now: datetime,
    role: Role,
) -> list[x509.Certificate]:
    """Validate leaf -> intermediates -> one of ``anchors`` at ``now``; leaf first.

    Anchors need not be self-signed: RFC 8366 lets pinned-domain-cert be an
    intermediate CA, or the end-entity certificate itself (RFC 8995 Appendix C
    pins the registrar's own certificate; section 5.6.2 "the pinned-domain-cert
    matches the End-Entity Certificate"). cryptography's Store treats every
    member as a trust anchor whether self-signed or not, so no hand-written
    path check is needed; an anchor that is not a CA can only match as the
    leaf itself, which is handled first.
    """
    if now.tzinfo is None:
        raise ConfigError("verify_chain needs a timezone-aware now", check="pki.naive-time")
    now = now.astimezone(UTC)
    if not anchors:
        raise ChainInvalid("no trust anchors to validate against", check="chain.untrusted")

    # A path found valid stays valid while every certificate on it is within
    # its validity period: signatures, constraints and extensions do not
    # depend on the time.  And it answers any question about the same leaf,
    # anchors and role whose intermediates include the path's own: "is there
    # a valid path through these certificates" is then yes, by that path.
    # So an IDevID checked for its manufacturer (with the TLS chain) and again
    # as voucher-request signer (with the CMS certificates as well), or the
    # MASA's signer on every voucher, is verified once, while ``now`` lies
    # inside the path's common validity window.  Refusals are never remembered.
    leaf_der = cert_der(leaf)
    key = (leaf_der, tuple(cert_der(a) for a in anchors), role)
    hit = _verified_paths.get(key)
    if hit is not None and hit[2] <= now <= hit[3] and hit[1] <= {cert_der(c) for c in intermediates}:
        return list(hit[0])
    chain = _verify_chain_uncached(leaf, leaf_der, intermediates, anchors, now, role)
    if len(_verified_paths) >= _VERIFIED_PATHS_MAX and key not in _verified_paths:
        del _verified_paths[next(iter(_verified_paths))]  # oldest first
    _verified_paths[key] = (
        tuple(chain),
        frozenset(cert_der(c) for c in chain[1:-1]),
        max(c.not_valid_before_utc for c in chain),
        min(c.not_valid_after_utc for c in chain),
    )
    return chain


# (leaf, anchors as DER; role) -> (path, DER of its intermediates, valid from, valid until)
_VerifiedKey: TypeAlias = tuple[bytes, tuple[bytes, ...], Role]
_verified_paths: dict[
    _VerifiedKey, tuple[tuple[x509.Certificate, ...], frozenset[bytes], datetime, datetime]
] = {}
# Each entry holds its path's certificate objects (a device's leaf: 2-8 KB).
# Hits come within one onboarding or from the paths every onboarding shares:
# the registrar's fleet runs counted as many hits with 64 entries as with 1,024.
_VERIFIED_PATHS_MAX = 128


def forget_verified_paths() -> None:
    """Empty verify_chain's memo (benchmarks measure first sight; tests isolate)."""
    _verified_paths.clear()


def _verify_chain_uncached(
    leaf: x509.Certificate,
    leaf_der: bytes,
    intermediates: Sequence[x509.Certificate],
    anchors: Sequence[x509.Certificate],
    now: datetime,
    role: Role,
) -> list[x509.Certificate]:
    err = _validity_error(leaf, now, "certificate")
    if err is not None:
        raise err

    if any(cert_der(a) == leaf_der for a in anchors):
        # The leaf is itself trusted (pinned): nothing to build.
        chain = [leaf]
    else:
        ca_policy, ee_policy = _extension_policies()
        try:
            verifier = (
                PolicyBuilder()
                .store(Store(list(anchors)))
                .time(now)
                .extension_policies(ca_policy=ca_policy, ee_policy=ee_policy)
                .build_client_verifier()
            )
            verified = verifier.verify(leaf, list(intermediates))
        except (VerificationError, ValueError, TypeError, UnsupportedAlgorithm) as exc:
            diagnosis = _diagnose_time(leaf, intermediates, anchors, now)
            if diagnosis is not None:
                raise diagnosis from exc
            what, missing = _diagnose_path(leaf, intermediates, anchors)
            sent = 1 + len(intermediates)
            offered = "the leaf alone" if sent == 1 else f"the leaf and {sent - 1} more"
            raise ChainInvalid(
                f"{leaf.subject.rfc4514_string()!r} does not chain to a trust anchor: {what}; "
                f"{sent} certificate(s) offered ({offered}), {len(anchors)} trust anchor(s) "
                f"[verifier: {exc}]",
                check="chain.untrusted",
                missing_issuer=missing,
                certificates_sent=sent,
            ) from exc
        chain = list(verified.chain)

    _check_role(leaf, role)
    return chain
