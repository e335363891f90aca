"""brski.ca: issued LDevIDs checked by openssl as an independent verifier (a subprocess, so not a unit test)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from brski.ldevid import LdevidProfile
from brski.pki import PrivateKey
from tests.ca_helpers import SERIAL, issue, make_ca
from tests.pki_helpers import NOW

OPENSSL = "/usr/bin/openssl"


def openssl_verify(tmp_path: Path, leaf: x509.Certificate, ca: x509.Certificate) -> str:
    (tmp_path / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "leaf.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    result = subprocess.run(
        [
            OPENSSL, "verify",
            "-attime", str(int(NOW.timestamp())),
            "-x509_strict",
            "-purpose", "sslclient",
            "-CAfile", str(tmp_path / "ca.pem"),
            str(tmp_path / "leaf.pem"),
        ],
        capture_output=True,
        text=True,
    )  # fmt: skip
    return result.stdout + result.stderr


@pytest.mark.parametrize(
    "ca_key",
    [
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP384R1()),
        ed25519.Ed25519PrivateKey.generate(),
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
    ],
    ids=["p256", "p384", "ed25519", "rsa"],
)
def test_ldevid_chain_verifies_with_openssl(tmp_path: Path, ca_key: PrivateKey) -> None:
    ca = make_ca(ca_key)
    leaf = issue(ca=ca)
    out = openssl_verify(tmp_path, leaf, ca[0])
    assert "leaf.pem: OK" in out, out
    expected = {
        ec.SECP256R1: hashes.SHA256,
        ec.SECP384R1: hashes.SHA384,
    }
    if isinstance(ca_key, ec.EllipticCurvePrivateKey):
        assert isinstance(leaf.signature_hash_algorithm, expected[type(ca_key.curve)])
    elif isinstance(ca_key, ed25519.Ed25519PrivateKey):
        assert leaf.signature_hash_algorithm is None


def test_openssl_rejects_ldevid_from_another_ca(tmp_path: Path) -> None:
    """The verification above can fail: a certificate from a different CA is refused."""
    leaf = issue()
    other, _ = make_ca()
    out = openssl_verify(tmp_path, leaf, other)
    assert "OK" not in out.replace("leaf.pem: OK", "")
    assert "error" in out


def test_crl_and_ocsp_and_san_when_given(tmp_path: Path) -> None:
    ca = make_ca()
    leaf = issue(
        ca=ca,
        crl_url="http://ca.example.com/domain.crl",
        ocsp_url="http://ocsp.example.com/",
        grant=LdevidProfile(san=("dns:pledge.example.com", "dns:{serial}.example.com")).grant(serial=SERIAL),
    )
    crl = leaf.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert crl[0].full_name == [x509.UniformResourceIdentifier("http://ca.example.com/domain.crl")]
    aia = leaf.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    assert [(a.access_method, a.access_location.value) for a in aia] == [
        (x509.oid.AuthorityInformationAccessOID.OCSP, "http://ocsp.example.com/")
    ]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert not san.critical
    assert san.value.get_values_for_type(x509.DNSName) == [
        "pledge.example.com",
        f"{SERIAL.lower()}.example.com",
    ]
    assert "leaf.pem: OK" in openssl_verify(tmp_path, leaf, ca[0])
