"""cms_signer.issuer_der reads the issuer Name straight from the TBSCertificate.

It must give exactly ``cert.issuer.public_bytes()`` for every certificate it
meets: v3 certificates (with the [0] version field) from the vectors, and a
v1 certificate (no version field, so the issuer sits one field earlier),
built here by re-signing a TBSCertificate without version and extensions.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from brski.asn1 import der_children, der_element, encode_tlv
from brski.cms_signer import issuer_der as _issuer_der
from brski.pki import load_certs
from tests import VECTORS


def test_every_vector_certificate() -> None:
    seen = 0
    for path in sorted(VECTORS.rglob("*")):
        if path.suffix not in (".crt", ".pem"):
            continue
        data = path.read_bytes()
        if b"BEGIN CERTIFICATE" not in data:
            continue
        for cert in load_certs(data):
            assert _issuer_der(cert) == cert.issuer.public_bytes(), path
            seen += 1
    assert seen >= 10


def _v1_certificate() -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "issuer of a v1 cert"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "brski test")])
    now = datetime.now(UTC)
    v3 = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(12345).not_valid_before(now).not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    tbs = v3.tbs_certificate_bytes
    _i, _s, body, end = der_element(tbs, 0, len(tbs))
    fields = der_children(tbs, body, end)
    assert fields[0][0] == 0xA0
    # serial, signature, issuer, validity, subject, spki: drop [0] version and [3] extensions
    kept = b"".join(tbs[f[1]:f[3]] for f in fields[1:7])
    new_tbs = encode_tlv(0x30, kept)
    sig_alg = tbs[fields[2][1]:fields[2][3]]
    signature = key.sign(new_tbs, ec.ECDSA(hashes.SHA256()))
    der = encode_tlv(0x30, new_tbs + sig_alg + encode_tlv(0x03, b"\x00" + signature))
    return x509.load_der_x509_certificate(der)


def test_v1_certificate_without_version_field() -> None:
    cert = _v1_certificate()
    assert cert.version == x509.Version.v1
    assert _issuer_der(cert) == cert.issuer.public_bytes()
