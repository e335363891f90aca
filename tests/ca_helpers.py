"""Shared by test_ca.py and test_openssl_ca.py (helpers, not tests)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from brski.ca import issue_ldevid, new_serial
from brski.pki import PrivateKey

NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)


YEAR = timedelta(days=365)


SERIAL = "00-D0-E5-F2-00-02"


def _hash(key: PrivateKey) -> hashes.SHA256 | None:
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


def make_ca(
    key: PrivateKey | None = None,
    *,
    not_after: datetime = NOW + 10 * YEAR,
    with_ski: bool = True,
    ca: bool = True,
) -> tuple[x509.Certificate, PrivateKey]:
    key = key or ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Domain CA")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - YEAR)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    if with_ski:
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
    return builder.sign(key, _hash(key)), key


def make_csr(
    key: PrivateKey | None = None,
    *,
    subject: list[x509.NameAttribute[str]] | None = None,
    san: list[x509.GeneralName] | None = None,
) -> x509.CertificateSigningRequest:
    key = key or ec.generate_private_key(ec.SECP256R1())
    attrs = subject if subject is not None else [x509.NameAttribute(NameOID.COMMON_NAME, "pledge")]
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attrs))
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return builder.sign(key, _hash(key))


def issue(
    csr: x509.CertificateSigningRequest | None = None,
    *,
    ca: tuple[x509.Certificate, PrivateKey] | None = None,
    **kw: Any,
) -> x509.Certificate:
    ca_cert, ca_key = ca or make_ca()
    args: dict[str, Any] = {
        "ca_cert": ca_cert,
        "ca_key": ca_key,
        "serial": new_serial(),
        "now": NOW,
        "validity": YEAR,
        "device_serial": SERIAL,
    }
    args.update(kw)
    return issue_ldevid(csr or make_csr(), **args)
