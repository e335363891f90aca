"""Which certificate a CMS SignerIdentifier names (RFC 5652 section 5.3):
issuerAndSerialNumber or subjectKeyIdentifier, written by :func:`brski.cms.sign`
and matched by :func:`brski.cms.verify`.
"""

from __future__ import annotations

import functools
import hmac
from collections.abc import Sequence
from typing import Any

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from brski.asn1 import NotPlainDer, der_children, der_element
from brski.cms_parts import Sid
from brski.errors import BrskiError, MalformedInput
from brski.pki import spki_sha256

__all__ = ["find_signer", "issuer_der", "key_identifier", "spki"]


def spki(public_key: Any) -> bytes:
    return bytes(
        public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def key_identifier(cert: x509.Certificate) -> bytes:
    """The certificate's SKI, or the RFC 5280 section 4.2.1.2 method (1) value."""
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        return ext.value.digest
    except x509.ExtensionNotFound:
        return x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest


@functools.lru_cache(maxsize=128)
def issuer_der(cert: x509.Certificate) -> bytes:
    """The issuer Name exactly as encoded, read from the TBSCertificate
    (``cert.issuer`` builds Python Name objects only to re-encode them).
    Remembered per certificate: the same ones sign again and again."""
    tbs = cert.tbs_certificate_bytes
    try:
        _ident, _start, body, end = der_element(tbs, 0, len(tbs))
        fields = der_children(tbs, body, end)
        first = 1 if fields[0][0] == 0xA0 else 0  # [0] EXPLICIT version, when not v1
        ident, start, _body, stop = fields[first + 2]  # serialNumber, signature, issuer
        if ident == 0x30:
            return tbs[start:stop]
    except (NotPlainDer, BrskiError, IndexError):
        pass
    return cert.issuer.public_bytes()


def _names_match(cert: x509.Certificate, issuer: bytes) -> bool:
    """Exact encoding first; then RFC 5280 section 7.1 comparison (asn1crypto)."""
    cert_issuer = issuer_der(cert)
    if cert_issuer == issuer:
        return True
    return bool(asn1_x509.Name.load(cert_issuer) == asn1_x509.Name.load(issuer))


def _sid_matches(cert: x509.Certificate, sid: Sid) -> bool:
    if isinstance(sid, tuple):
        issuer, serial = sid
        return cert.serial_number == serial and _names_match(cert, issuer)
    try:
        return hmac.compare_digest(key_identifier(cert), sid)
    except (ValueError, UnsupportedAlgorithm, TypeError):
        return False  # an unrelated certificate we cannot read a key from


def find_signer(sid: Sid, candidates: Sequence[x509.Certificate]) -> x509.Certificate:
    """The certificate the SignerIdentifier names (RFC 5652 section 5.3).

    Several copies of one certificate, or renewals sharing one key, are fine:
    they verify identically. Two matches with different keys are refused, as
    the choice would decide whose signature we check.
    """
    matches: list[x509.Certificate] = []
    for cert in candidates:
        if _sid_matches(cert, sid) and cert not in matches:
            matches.append(cert)
    if not matches:
        raise MalformedInput(
            "no certificate matches the SignerIdentifier", check="cms.signer-not-found"
        )
    if len(matches) == 1:
        # One certificate: no choice between keys to refuse. (Its key is
        # loaded for the signature check, which names an unusable one
        # cms.signer-key as well.)
        return matches[0]
    keys = set()
    for cert in matches:
        try:
            keys.add(spki_sha256(cert))
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise MalformedInput(
                "the signer certificate has an unusable key", check="cms.signer-key"
            ) from exc
    if len(keys) > 1:
        raise MalformedInput(
            "SignerIdentifier matches certificates with different keys",
            check="cms.signer-ambiguous",
        )
    return matches[0]
