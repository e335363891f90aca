"""RFC 5280 3.3 in the pure core: which published CRL entries the store contradicts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from brski.crl import CertRow, PublishedCrl, RevokedEntry, build_crl, crl_disagreements
from brski.errors import SignatureInvalid

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def _ca() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "domain CA")])
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(NOW - timedelta(days=1)).not_valid_after(NOW + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def test_parse_round_trips_and_checks_the_signature() -> None:
    cert, key = _ca()
    entries = [RevokedEntry(serial=0xA1, revoked_at=NOW, reason=x509.ReasonFlags.key_compromise),
               RevokedEntry(serial=0xA2, revoked_at=NOW)]
    der = build_crl(ca_cert=cert, ca_key=key, entries=entries, number=3, now=NOW,
                    validity=timedelta(hours=1)).public_bytes(Encoding.DER)
    published = PublishedCrl(der, ca_cert=cert)
    assert published.entries() == entries and published.serials == {0xA1, 0xA2}
    assert published.entry(0xA1) == entries[0] and published.entry(0xA3) is None
    other, _ = _ca()
    with pytest.raises(SignatureInvalid) as info:
        PublishedCrl(der, ca_cert=other)
    assert info.value.check == "crl.signature"


def test_only_unexpired_entries_the_store_no_longer_backs_disagree() -> None:
    published = [1, 2, 3, 4, 5]
    rows = {
        1: CertRow(state="revoked", not_after=NOW + timedelta(days=1)),  # agrees
        2: CertRow(state="issued", not_after=NOW + timedelta(days=1)),   # edited back: refused
        3: CertRow(state="issued", not_after=NOW - timedelta(days=1)),   # expired: may leave the CRL
        # 4: no row at all (deleted, or an old backup)
        5: CertRow(state="reserved", not_after=None),
    }
    found = {(d.serial, d.check) for d in crl_disagreements(published, rows, now=NOW)}
    assert found == {(2, "crl.entry-unrevoked"), (4, "crl.entry-without-row"), (5, "crl.entry-unrevoked")}
