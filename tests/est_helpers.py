"""Shared by test_est.py and test_openssl_est.py (helpers, not tests)."""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests import VECTORS

RFC7030 = VECTORS / "rfc7030"


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)
