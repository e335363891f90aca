"""Shared by test_ca.py and test_openssl_ca.py (helpers, not tests)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from brski.ca import issue_ldevid, new_serial, signature_hash
from brski.pki import PrivateKey
from tests.pki_helpers import NOW, key_usage_for, make_cert

YEAR = timedelta(days=365)


SERIAL = "00-D0-E5-F2-00-02"


def make_ca(
    key: PrivateKey | None = None,
    *,
    not_after: datetime = NOW + 10 * YEAR,
    with_ski: bool = True,
    ca: bool = True,
) -> tuple[x509.Certificate, PrivateKey]:
    """A self-signed "Domain CA" (keyCertSign and cRLSign even when ``ca=False``,
    for the refusal of a non-CA issuer)."""
    return make_cert(
        "Domain CA",
        key=key,
        ca=ca,
        not_before=NOW - YEAR,
        not_after=not_after,
        key_usage=key_usage_for(ca=True),
        ski=with_ski,
    )


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
    return builder.sign(key, signature_hash(key))


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
