"""Throwaway COSE signers and voucher payloads the COSE_Sign1 voucher tests
share (helpers, not tests)."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID

VECTORS = Path(__file__).resolve().parent / "vectors"
CB = VECTORS / "cbrski-draft31"


def _der_cert(path: Path) -> x509.Certificate:
    return x509.load_der_x509_certificate(path.read_bytes())


def _same_key(a: x509.Certificate, b: x509.Certificate) -> bool:
    spki = PublicFormat.SubjectPublicKeyInfo
    return a.public_key().public_bytes(Encoding.DER, spki) == b.public_key().public_bytes(
        Encoding.DER, spki
    )


# --- throwaway identities -----------------------------------------------------------


def make_identity(kind: str, cn: str) -> tuple[Any, x509.Certificate]:
    key: Any
    if kind == "p256":
        key = ec.generate_private_key(ec.SECP256R1())
    elif kind == "p384":
        key = ec.generate_private_key(ec.SECP384R1())
    elif kind == "ed25519":
        key = ed25519.Ed25519PrivateKey.generate()
    else:
        raise AssertionError(kind)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(datetime(2024, 1, 1, tzinfo=UTC))
        .not_valid_after(datetime(2034, 1, 1, tzinfo=UTC))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, None if kind == "ed25519" else hashes.SHA256())
    )
    return key, cert


KINDS = ("p256", "p384", "ed25519")
EXPECTED_ALG = {"p256": -7, "p384": -35, "ed25519": -8}
IDS = {k: make_identity(k, f"signer {k}") for k in KINDS}
OTHER_KEY, OTHER_CERT = make_identity("p256", "someone else")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


VOUCHER_OBJ: dict[str, Any] = {
    "ietf-voucher:voucher": {
        "assertion": "proximity",
        "created-on": "2024-05-01T10:00:00Z",
        "serial-number": "JADA123456789",
        "nonce": b64(b"0123456789abcdef"),
        "pinned-domain-cert": b64(OTHER_CERT.public_bytes(Encoding.DER)),
    }
}
REQUEST_OBJ: dict[str, Any] = {
    "ietf-voucher-request:voucher": {
        "assertion": "proximity",
        "created-on": "2024-05-01T10:00:00Z",
        "serial-number": "JADA123456789",
        "nonce": b64(b"0123456789abcdef"),
        "proximity-registrar-cert": b64(OTHER_CERT.public_bytes(Encoding.DER)),
    }
}


@dataclass(frozen=True)
class DictPayload:
    """Stands in for Voucher/VoucherRequest: sign() only needs to_obj()."""

    obj: dict[str, Any]

    def to_obj(self) -> dict[str, Any]:
        return self.obj


def _rewrite(raw: bytes, *, index: int, value: Any) -> bytes:
    """Re-encode a COSE_Sign1 with element ``index`` replaced."""
    tag = cbor2.loads(raw)
    items = list(tag.value)
    items[index] = value
    return cbor2.dumps(cbor2.CBORTag(18, items))


def _models() -> Any:
    voucher = pytest.importorskip("brski.voucher")
    pytest.importorskip("brski.artifact")
    return voucher
