"""brski.certfacts: facts remembered per certificate object must be that object's."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from brski import certfacts
from brski.certfacts import (
    cert_der,
    cert_spki_sha256,
    issuer_name_der,
    load_der_cert,
    subject_name_der,
)
from brski.devpki import DevPki, build_dev_pki

DER = serialization.Encoding.DER


@pytest.fixture(scope="module")
def pki() -> DevPki:
    return build_dev_pki(pledges=3, masa_url="https://masa.example", now=datetime(2031, 1, 1, tzinfo=UTC))


def _truth(cert: x509.Certificate) -> tuple[bytes, bytes, bytes, bytes]:
    spki = cert.public_key().public_bytes(DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return cert.public_bytes(DER), hashlib.sha256(spki).digest(), cert.subject.public_bytes(), cert.issuer.public_bytes()


def _facts(cert: x509.Certificate) -> tuple[bytes, bytes, bytes, bytes]:
    return cert_der(cert), cert_spki_sha256(cert), subject_name_der(cert), issuer_name_der(cert)


def test_facts_are_the_certificates_own(pki: DevPki) -> None:
    for path in ("registrar/ra.crt", "registrar/domain-ca.crt", "masa/voucher-signer.crt"):
        cert = pki.cert(path)
        assert _facts(cert) == _truth(cert)
        assert _facts(cert) == _truth(cert)  # remembered


def test_a_reused_id_gets_fresh_facts(pki: DevPki) -> None:
    """Objects made and dropped one after the other reuse addresses; past the
    memo's bound each must still get its own facts, never another's."""
    ders = [pki.cert(f"{pki.pledge_dir(s)}/idevid.crt").public_bytes(DER) for s in pki.pledge_serials]
    ids = set()
    for i in range(4 * certfacts.MEMO_SIZE):
        cert = x509.load_der_x509_certificate(ders[i % len(ders)])
        ids.add(id(cert))
        assert _facts(cert) == _truth(cert), i
        del cert
    assert len(ids) < 4 * certfacts.MEMO_SIZE, "no address was reused: the test proves nothing"


def test_bounded(pki: DevPki) -> None:
    der = pki.cert("registrar/ra.crt").public_bytes(DER)
    keep = [x509.load_der_x509_certificate(der) for _ in range(certfacts.MEMO_SIZE + 50)]
    for cert in keep:
        cert_der(cert)
    assert len(certfacts._memo) <= certfacts.MEMO_SIZE
    assert all(cert_der(c) == der for c in keep)


def test_load_der_cert_one_object_per_der(pki: DevPki) -> None:
    der = pki.cert("registrar/tls.crt").public_bytes(DER)
    assert load_der_cert(der) is load_der_cert(bytes(der))
    with pytest.raises(ValueError):
        load_der_cert(der[:-1])
