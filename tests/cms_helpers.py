"""Shared by test_cms.py and test_openssl_cms.py (helpers, not tests)."""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from brski import cms

NOW = datetime(2025, 1, 1, tzinfo=UTC)


VOUCHER_JSON = b'{"ietf-voucher:voucher":{"assertion":"logged","serial-number":"X1"}}'


Key = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey


@functools.cache
def _key(kind: str, index: int = 0) -> Key:
    if kind == "p256":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "p384":
        return ec.generate_private_key(ec.SECP384R1())
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(
    key: Key,
    *,
    cn: str = "signer",
    serial: int = 0x1234,
    issuer: tuple[x509.Name, Key] | None = None,
    ski: bool = True,
) -> x509.Certificate:
    issuer_name, issuer_key = issuer or (_name(cn), key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(NOW)
        .not_valid_after(NOW + timedelta(days=30))
    )
    if ski:
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
    algorithm = None if isinstance(issuer_key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(issuer_key, algorithm)


def _signed(kind: str = "p256", **kwargs: Any) -> tuple[bytes, Key, x509.Certificate]:
    key = _key(kind)
    cert = _cert(key)
    return cms.sign(VOUCHER_JSON, key=key, cert=cert, **kwargs), key, cert
