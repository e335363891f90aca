"""brski.pki: loading and identity extraction (verify_chain: test_pki_chain.py)."""

from __future__ import annotations

import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from brski import oids
from brski.errors import ConfigError, MalformedInput
from brski.pki import (
    cert_der,
    device_serial,
    fingerprint_sha256,
    generate_key,
    load_cert,
    load_certs,
    load_private_key,
    masa_url,
    public_key_of,
    spki_sha256,
)
from tests import VECTORS
from tests.pki_helpers import DAY, NOW, ChainPki, leaf_under

# --- loading --------------------------------------------------------------------


def test_load_cert_pem_and_der_roundtrip(chain_pki: ChainPki) -> None:
    cert = chain_pki["root"][0]
    pem = cert.public_bytes(serialization.Encoding.PEM)
    assert load_cert(pem) == cert
    assert load_cert(cert_der(cert)) == cert
    assert cert_der(cert)[0] == 0x30


def test_load_cert_accepts_pem_with_leading_text() -> None:
    # The rfc8366bis vector is `openssl x509 -text` output followed by the PEM.
    cert = load_cert((VECTORS / "rfc8366bis" / "vendor-00-D0-E5-F2-00-02.crt").read_bytes())
    assert cert.subject.rfc4514_string() == "CN=highway-test.example.com CA"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"garbage",
        b"\x30\x03\x02\x01\x01",
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    ],
)
def test_load_cert_rejects_garbage(data: bytes) -> None:
    with pytest.raises(MalformedInput):
        load_cert(data)


def test_load_cert_size_limit(chain_pki: ChainPki) -> None:
    der = cert_der(chain_pki["root"][0])
    with pytest.raises(MalformedInput) as exc:
        load_cert(der, max_size=len(der) - 1)
    assert exc.value.check == "pki.size"


def test_load_certs_bundle_in_order(chain_pki: ChainPki) -> None:
    certs = [chain_pki["inter"][0], chain_pki["root"][0]]
    bundle = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)
    assert load_certs(bundle) == certs
    assert load_certs(cert_der(certs[0])) == certs[:1]
    with pytest.raises(MalformedInput):
        load_certs(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")


@pytest.mark.parametrize("kind", ["p256", "p384", "ed25519", "rsa2048"])
def test_generate_and_load_private_key(kind: str) -> None:
    key = generate_key(kind)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    loaded = load_private_key(pem)
    assert spki_sha256(public_key_of(loaded)) == spki_sha256(public_key_of(key))


def test_generate_key_types() -> None:
    assert isinstance(generate_key(), ec.EllipticCurvePrivateKey)
    p384 = generate_key("p384")
    assert isinstance(p384, ec.EllipticCurvePrivateKey)
    assert p384.curve.name == "secp384r1"
    assert isinstance(generate_key("ed25519"), ed25519.Ed25519PrivateKey)
    assert isinstance(generate_key("rsa2048"), rsa.RSAPrivateKey)
    with pytest.raises(ConfigError):
        generate_key("dsa")


def test_load_private_key_refuses_encrypted_and_garbage() -> None:
    key = generate_key()
    enc = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    )
    with pytest.raises(MalformedInput):
        load_private_key(enc)
    with pytest.raises(MalformedInput):
        load_private_key(b"not a key")


def test_fingerprints(chain_pki: ChainPki) -> None:
    cert, key = chain_pki["root"]
    assert fingerprint_sha256(cert) == hashlib.sha256(cert_der(cert)).hexdigest()
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert spki_sha256(cert) == hashlib.sha256(spki).digest()
    assert spki_sha256(key.public_key()) == spki_sha256(cert)
    assert spki_sha256(cert) != spki_sha256(chain_pki["inter"][0])


# --- identity ------------------------------------------------------------------------


def _masa_ext(raw: bytes) -> list[tuple[x509.ExtensionType, bool]]:
    return [(x509.UnrecognizedExtension(oids.ID_PE_MASA_URL, raw), False)]


def _ia5(text: bytes) -> bytes:
    return bytes([0x16, len(text)]) + text


def test_device_serial_from_subject_attribute(chain_pki: ChainPki) -> None:
    cert = leaf_under(chain_pki, serial="SN-42")
    assert device_serial(cert) == "SN-42"
    assert device_serial(chain_pki["root"][0]) is None


def test_device_serial_refuses_two_different_values(chain_pki: ChainPki) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.SERIAL_NUMBER, "A"),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, "B"),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW - DAY)
        .not_valid_after(NOW + DAY)
        .sign(key, hashes.SHA256())
    )
    with pytest.raises(MalformedInput) as exc:
        device_serial(cert)
    assert exc.value.check == "pki.device-serial"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"masa.example.com", "https://masa.example.com"),
        (b"masa.example.com:9443", "https://masa.example.com:9443"),
        (b"https://masa.example.com:8443/", "https://masa.example.com:8443"),
        (b"https://masa.example.com/brski", "https://masa.example.com/brski"),
        (b"HTTPS://[2001:db8::1]:443", "HTTPS://[2001:db8::1]:443"),
    ],
)
def test_masa_url_forms(chain_pki: ChainPki, value: bytes, expected: str) -> None:
    cert = leaf_under(chain_pki, extra=_masa_ext(_ia5(value)))
    assert masa_url(cert) == expected


def test_masa_url_absent(chain_pki: ChainPki) -> None:
    assert masa_url(leaf_under(chain_pki)) is None


@pytest.mark.parametrize(
    ("raw", "check"),
    [
        (b"\x0c\x0bexample.com", "pki.masa-url"),  # UTF8String, not IA5String
        (_ia5(b"ex\xffample"), "pki.masa-url"),  # not ASCII
        (b"\x16\x10short", "pki.masa-url"),  # length overruns
        (_ia5(b"example.com") + b"\x00", "pki.masa-url"),  # trailing bytes
        (_ia5(b""), "pki.masa-url"),
        (_ia5(b"exa mple.com"), "pki.masa-url"),
        (_ia5(b"http://masa.example.com"), "pki.masa-url-scheme"),  # RFC 8995 2.3.2: HTTPS only
        (_ia5(b"masa.example.com:notaport"), "pki.masa-url"),
    ],
)
def test_masa_url_malformed(chain_pki: ChainPki, raw: bytes, check: str) -> None:
    cert = leaf_under(chain_pki, extra=_masa_ext(raw))
    with pytest.raises(MalformedInput) as exc:
        masa_url(cert)
    assert exc.value.check == check


def test_rfc8995_appendix_c_idevid_identity() -> None:
    # C.1.5: subject is only serialNumber; the extension holds the bare
    # authority "highway-test.example.com:9443", so https:// is assumed.
    cert = load_cert((VECTORS / "rfc8995" / "idevid_00-D0-E5-F2-00-02.crt").read_bytes())
    assert device_serial(cert) == "00-D0-E5-F2-00-02"
    assert masa_url(cert) == "https://highway-test.example.com:9443"
    assert cert.serial_number == 0x2AEC41D4  # the certificate serial is a different thing
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
