"""The tests' one certificate factory (helpers, not tests): certificates
with the extensions a test names (P-256 unless the test brings a key of
its own), and a root, an intermediate and an unrelated root to chain them to.
Keys come from brski.pki.generate_key and signature hashes from
brski.ca.signature_hash, as the registrar's CA picks them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TypedDict, Unpack

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from brski.ca import signature_hash
from brski.errors import ChainInvalid
from brski.pki import PrivateKey, generate_key

NOW = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)

Issued = tuple[x509.Certificate, PrivateKey]


def key_usage_for(
    *, ca: bool, digital_signature: bool | None = None, key_cert_sign: bool | None = None
) -> x509.KeyUsage:
    """An end entity's digitalSignature (keyAgreement with ``digital_signature=False``),
    a CA's keyCertSign and cRLSign (RFC 5280 4.2.1.3); ``digital_signature=True``
    adds it to a CA's."""
    signs = not ca if digital_signature is None else digital_signature
    return x509.KeyUsage(
        digital_signature=signs,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=not signs and not ca,
        key_cert_sign=ca if key_cert_sign is None else key_cert_sign,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def make_cert(
    cn: str,
    *,
    issuer: Issued | None = None,
    key: PrivateKey | None = None,
    ca: bool = False,
    path_length: int | None = None,
    not_before: datetime = NOW - DAY,
    not_after: datetime = NOW + 30 * DAY,
    eku: Sequence[x509.ObjectIdentifier] | None = None,
    key_usage: x509.KeyUsage | bool | None = True,
    serial: str | None = None,
    extra: Sequence[tuple[x509.ExtensionType, bool]] = (),
    basic_constraints: bool = True,
    ski: bool = True,
    subject: x509.Name | None = None,
) -> Issued:
    """``cn`` (and ``serial``), or the whole ``subject``, certified by ``issuer``,
    or self-signed; with a fresh P-256 key unless ``key`` is given."""
    key = key or generate_key("p256")
    if subject is None:
        attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
        if serial is not None:
            attrs.append(x509.NameAttribute(NameOID.SERIAL_NUMBER, serial))
        subject = x509.Name(attrs)
    b = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer[0].subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
    if ski:
        b = b.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    if basic_constraints:
        b = b.add_extension(x509.BasicConstraints(ca=ca, path_length=path_length), critical=True)
    if key_usage is True:
        b = b.add_extension(key_usage_for(ca=ca), critical=True)
    elif isinstance(key_usage, x509.KeyUsage):
        b = b.add_extension(key_usage, critical=True)
    if eku is not None:
        b = b.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    if issuer is not None:
        b = b.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer[1].public_key()),
            critical=False,
        )
    for ext, critical in extra:
        b = b.add_extension(ext, critical=critical)
    signer = issuer[1] if issuer else key
    return b.sign(signer, signature_hash(signer)), key


class ChainPki(TypedDict):
    """make_pki's root, its intermediate, and an unrelated root."""

    root: Issued
    inter: Issued
    other: Issued


class CertOptions(TypedDict, total=False):
    """make_cert's keywords besides ``issuer`` (leaf_under sets it)."""

    key: PrivateKey | None
    ca: bool
    path_length: int | None
    not_before: datetime
    not_after: datetime
    eku: Sequence[x509.ObjectIdentifier] | None
    key_usage: x509.KeyUsage | bool | None
    serial: str | None
    extra: Sequence[tuple[x509.ExtensionType, bool]]
    basic_constraints: bool
    ski: bool


def make_pki() -> ChainPki:
    root = make_cert("root", ca=True, path_length=1, not_after=NOW + 3650 * DAY)
    inter = make_cert("inter", issuer=root, ca=True, path_length=0, not_after=NOW + 3650 * DAY)
    other_root = make_cert("other root", ca=True)
    return {"root": root, "inter": inter, "other": other_root}


@pytest.fixture(scope="module")
def chain_pki() -> ChainPki:
    """A module's root, intermediate and unrelated root (make_pki)."""
    return make_pki()


def leaf_under(pki: ChainPki, **kw: Unpack[CertOptions]) -> x509.Certificate:
    return make_cert("leaf", issuer=pki["inter"], **kw)[0]


def check_of(exc: pytest.ExceptionInfo[ChainInvalid]) -> str:
    return exc.value.check
