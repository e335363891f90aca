"""What a certificate's bytes determine, computed once per certificate object.

Certificates arrive again and again: the registrar's RA certificate and chain
in every voucher-request, the MASA signer and root in every voucher. For each
question cryptography re-encodes (``public_bytes``: 5-10 us), parses the key
again (an SPKI: 7 us) or builds Name objects, and hashing a certificate to
key an ``lru_cache`` costs 1.5 us itself. So the facts are kept per object,
by identity (0.2 us), in a bounded memo that holds the object (an ``id`` is
not reused while its object lives), and :func:`load_der_cert` hands out one
object per distinct DER, so repeated bytes reach the same facts. Nothing here
depends on the time or on trust: validity and chains stay with
``brski.pki.verify_chain``, which takes ``now``.
"""

from __future__ import annotations

import functools
import hashlib

from cryptography import x509
from cryptography.hazmat.primitives import serialization

__all__ = ["cert_der", "cert_spki_sha256", "issuer_name_der", "load_der_cert", "subject_name_der"]

# The repeated ones are re-learnt at most once per this many others.  An entry
# keeps its certificate object alive with what was parsed from it (2-8 KB);
# in the registrar's fleet runs 64 entries gave the hits 256 did, bar 1.3
# recomputations per onboarding (docs/performance.md, "Registrar memory").
MEMO_SIZE = 128


class _Facts:
    __slots__ = ("cert", "der", "issuer", "spki_sha256", "subject")

    def __init__(self, cert: x509.Certificate) -> None:
        self.cert = cert
        self.der: bytes | None = None
        self.spki_sha256: bytes | None = None
        self.subject: bytes | None = None
        self.issuer: bytes | None = None


_memo: dict[int, _Facts] = {}


def _facts(cert: x509.Certificate) -> _Facts:
    facts = _memo.get(id(cert))
    if facts is None or facts.cert is not cert:
        facts = _memo[id(cert)] = _Facts(cert)
        if len(_memo) > MEMO_SIZE:
            try:
                del _memo[next(iter(_memo))]  # oldest first
            except (KeyError, RuntimeError, StopIteration):  # another thread got there
                pass
    return facts


def cert_der(cert: x509.Certificate) -> bytes:
    facts = _facts(cert)
    if facts.der is None:
        facts.der = cert.public_bytes(serialization.Encoding.DER)
    return facts.der


def cert_spki_sha256(cert: x509.Certificate) -> bytes:
    """SHA-256 over the DER SubjectPublicKeyInfo."""
    facts = _facts(cert)
    if facts.spki_sha256 is None:
        spki = cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        facts.spki_sha256 = hashlib.sha256(spki).digest()
    return facts.spki_sha256


def subject_name_der(cert: x509.Certificate) -> bytes:
    """The subject Name's DER (what RFC 5280 section 6.1 chains by)."""
    facts = _facts(cert)
    if facts.subject is None:
        facts.subject = cert.subject.public_bytes()
    return facts.subject


def issuer_name_der(cert: x509.Certificate) -> bytes:
    """The issuer Name's DER."""
    facts = _facts(cert)
    if facts.issuer is None:
        facts.issuer = cert.issuer.public_bytes()
    return facts.issuer


@functools.lru_cache(maxsize=MEMO_SIZE)
def load_der_cert(der: bytes) -> x509.Certificate:
    """``x509.load_der_x509_certificate``, one object per distinct DER seen lately.

    Raises as the loader does (a refusal is not remembered).
    """
    return x509.load_der_x509_certificate(der)
