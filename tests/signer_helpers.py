"""Throwaway signers and voucher payloads the COSE_Sign1 and JWS voucher
tests share (helpers, not tests)."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from brski.pki import PrivateKey, generate_key
from tests.pki_helpers import make_cert


def make_identity(kind: str, cn: str) -> tuple[PrivateKey, x509.Certificate]:
    """A self-signed certificate with no usage extensions for a ``kind``
    (brski.pki.generate_key) key."""
    cert, key = make_cert(
        cn,
        key=generate_key(kind),
        not_before=datetime(2024, 1, 1, tzinfo=UTC),
        not_after=datetime(2034, 1, 1, tzinfo=UTC),
        key_usage=None,
        basic_constraints=False,
    )
    return key, cert


IDS = {k: make_identity(k, f"signer {k}") for k in ("p256", "p384", "ed25519", "rsa2048")}
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


def voucher_models() -> Any:
    """brski.voucher, or a skip where the voucher models are not built."""
    voucher = pytest.importorskip("brski.voucher")
    pytest.importorskip("brski.artifact")
    return voucher
