"""brski.crl and brski.ocsp: RFC 5280 section 5 CRLs and RFC 6960 answers, pure."""

from __future__ import annotations

import base64
import os
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID

from brski.ca import new_serial
from brski.crl import REASONS, RevokedEntry, build_crl, parse_reason, reason_name
from brski.errors import ConfigError, MalformedInput, PayloadTooLarge
from brski.ocsp import CertStatus, OcspAnswer, issuer_hashes, parse_request, read_request, respond

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _ec_key_of(cert: x509.Certificate) -> ec.EllipticCurvePublicKey:
    """The certificate's public key, which _ca and _leaf make P-256."""
    key = cert.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    return key


def _ca(name: str = "test domain CA") -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(new_serial()).not_valid_before(NOW - timedelta(days=1)).not_valid_after(NOW + timedelta(days=900))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _leaf(ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    return (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "leaf")]))
        .issuer_name(ca.subject).public_key(key.public_key()).serial_number(new_serial())
        .not_valid_before(NOW - timedelta(hours=1)).not_valid_after(NOW + timedelta(days=30))
        .sign(ca_key, hashes.SHA256())
    )


def test_crl_is_v2_signed_numbered_with_aki_and_reasons() -> None:
    ca, key = _ca()
    entries = [
        RevokedEntry(serial=10, revoked_at=NOW - timedelta(hours=2), reason=x509.ReasonFlags.key_compromise),
        RevokedEntry(serial=11, revoked_at=NOW - timedelta(hours=1)),
    ]
    crl = build_crl(ca_cert=ca, ca_key=key, entries=entries, number=7, now=NOW, validity=timedelta(hours=24))
    assert crl.is_signature_valid(_ec_key_of(ca))
    assert crl.issuer == ca.subject
    assert crl.last_update_utc == NOW and crl.next_update_utc == NOW + timedelta(hours=24)
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 7
    aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    first = crl.get_revoked_certificate_by_serial_number(10)
    assert first is not None
    assert first.extensions.get_extension_for_class(x509.CRLReason).value.reason is x509.ReasonFlags.key_compromise
    second = crl.get_revoked_certificate_by_serial_number(11)
    assert second is not None and len(second.extensions) == 0  # RFC 5280 5.3.1: omit "unspecified"
    # DER starts with version v2 (INTEGER 1) in tbsCertList.
    der = crl.public_bytes(serialization.Encoding.DER)
    assert b"\x02\x01\x01" in der[:16]


def test_crl_refuses_naive_time_bad_number_and_reasons_round_trip() -> None:
    ca, key = _ca()
    with pytest.raises(ConfigError):
        build_crl(ca_cert=ca, ca_key=key, entries=[], number=1, now=NOW.replace(tzinfo=None), validity=timedelta(hours=1))
    with pytest.raises(ConfigError):
        build_crl(ca_cert=ca, ca_key=key, entries=[], number=0, now=NOW, validity=timedelta(hours=1))
    for name, flag in REASONS.items():
        assert parse_reason(name) is flag and reason_name(flag) == name
    assert parse_reason("key-compromise") is x509.ReasonFlags.key_compromise
    assert parse_reason(None) is x509.ReasonFlags.unspecified
    with pytest.raises(MalformedInput) as exc:
        parse_reason("removeFromCRL-please")
    assert exc.value.check == "revocation.reason"


def _request(cert: x509.Certificate, ca: x509.Certificate, *, nonce: bytes | None = None,
             algorithm: hashes.HashAlgorithm | None = None) -> bytes:
    b = ocsp.OCSPRequestBuilder().add_certificate(cert, ca, algorithm or hashes.SHA1())
    if nonce is not None:
        b = b.add_extension(x509.OCSPNonce(nonce), critical=False)
    return b.build().public_bytes(serialization.Encoding.DER)


@pytest.mark.parametrize("algorithm", [hashes.SHA1(), hashes.SHA256()])
def test_ocsp_good_revoked_unknown_with_nonce(algorithm: hashes.HashAlgorithm) -> None:
    ca, key = _ca()
    leaf = _leaf(ca, key)
    statuses = {
        "good": CertStatus(status="good"),
        "revoked": CertStatus(status="revoked", revoked_at=NOW - timedelta(minutes=5),
                              reason=x509.ReasonFlags.cessation_of_operation),
        "unknown": CertStatus(status="unknown"),
    }
    for name, info in statuses.items():
        nonce = os.urandom(16)
        query = read_request(_request(leaf, ca, nonce=nonce, algorithm=algorithm), ca_cert=ca)
        assert not isinstance(query, OcspAnswer) and query.serial == leaf.serial_number
        result = respond(query, info, ca_cert=ca, ca_key=key, now=NOW, validity=timedelta(hours=1))
        assert result.response_status == "successful" and result.cert_status == name
        resp = ocsp.load_der_ocsp_response(result.der)
        assert resp.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
        assert resp.certificate_status.name == name.upper()
        assert resp.serial_number == leaf.serial_number
        assert resp.this_update_utc == NOW and resp.next_update_utc == NOW + timedelta(hours=1)
        assert resp.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == nonce
        assert resp.responder_key_hash == x509.SubjectKeyIdentifier.from_public_key(ca.public_key()).digest
        _ec_key_of(ca).verify(resp.signature, resp.tbs_response_bytes, ec.ECDSA(hashes.SHA256()))
        if name == "revoked":
            assert resp.revocation_reason is x509.ReasonFlags.cessation_of_operation
            assert resp.revocation_time_utc == NOW - timedelta(minutes=5)


def test_ocsp_other_issuer_is_unauthorized_and_garbage_is_malformed() -> None:
    ca, _key = _ca()
    other, other_key = _ca("someone else")
    # Answered without a query: the store is never consulted for these.
    foreign = _request(_leaf(other, other_key), other)
    result = read_request(foreign, ca_cert=ca)
    assert isinstance(result, OcspAnswer) and result.response_status == "unauthorized"
    assert ocsp.load_der_ocsp_response(result.der).response_status is ocsp.OCSPResponseStatus.UNAUTHORIZED
    for junk in (b"", b"\x30\x03\x02\x01", b"not der at all", b"\x30" + b"\x80" * 40):
        result = read_request(junk, ca_cert=ca)
        assert isinstance(result, OcspAnswer) and result.response_status == "malformedRequest"
    with pytest.raises(PayloadTooLarge):
        parse_request(b"\x30" * 20000)


def test_issuer_hashes_match_what_clients_compute() -> None:
    ca, key = _ca()
    leaf = _leaf(ca, key)
    for algorithm in (hashes.SHA1(), hashes.SHA256()):
        req = ocsp.load_der_ocsp_request(_request(leaf, ca, algorithm=algorithm))
        assert issuer_hashes(ca, algorithm.name) == (req.issuer_name_hash, req.issuer_key_hash)
    assert base64.b64encode(issuer_hashes(ca, "sha1")[1])
