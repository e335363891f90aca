"""What the COSE_Sign1 voucher tests share beyond tests/signer_helpers.py
(helpers, not tests): the cBRSKI vectors and COSE surgery."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cbor2
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests import VECTORS

CB = VECTORS / "cbrski-draft31"


def _der_cert(path: Path) -> x509.Certificate:
    return x509.load_der_x509_certificate(path.read_bytes())


def _same_key(a: x509.Certificate, b: x509.Certificate) -> bool:
    spki = PublicFormat.SubjectPublicKeyInfo
    return a.public_key().public_bytes(Encoding.DER, spki) == b.public_key().public_bytes(
        Encoding.DER, spki
    )


# The signer kinds the COSE round trips cover (of signer_helpers.IDS).
KINDS = ("p256", "p384", "ed25519")
EXPECTED_ALG = {"p256": -7, "p384": -35, "ed25519": -8}


def _rewrite(raw: bytes, *, index: int, value: Any) -> bytes:
    """Re-encode a COSE_Sign1 with element ``index`` replaced."""
    tag = cbor2.loads(raw)
    items = list(tag.value)
    items[index] = value
    return cbor2.dumps(cbor2.CBORTag(18, items))
