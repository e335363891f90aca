"""Every TLS context the project builds carries the one policy (brski_tls.policy).

In-process only: contexts are built and inspected, no socket is opened.
"""

from __future__ import annotations

import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import SSL

from brski_tls.client import _provisional_context
from brski_tls.policy import POLICY, TLS12_CIPHERS, TlsPolicy
from brski_web.serve import client_ssl_context, server_ssl_context
from brski_web.tls_context import TlsServerConfig, build_context

TLS12 = set(TLS12_CIPHERS.split(":"))


@pytest.fixture(scope="module")
def material(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A throwaway self-signed certificate and key (generated per run, never stored)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "policy test")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=1)).sign(key, hashes.SHA256())
    )
    d = tmp_path_factory.mktemp("policy")
    (d / "c.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / "k.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                          serialization.NoEncryption())
    )
    return d / "c.pem", d / "k.pem"


def _openssl_tls12(ctx: SSL.Context) -> set[str]:
    names = SSL.Connection(ctx, None).get_cipher_list()
    return {n for n in names if not n.startswith("TLS_")}  # TLS 1.3 suites are named TLS_*


def _stdlib_tls12(ctx: ssl.SSLContext) -> set[str]:
    return {c["name"] for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.2"}


def test_pyopenssl_server_and_pledge_client_contexts(material: tuple[Path, Path]) -> None:
    cert, key = material
    server = build_context(TlsServerConfig(cert_chain_pem=cert.read_bytes(), key_pem=key.read_bytes()))
    _provisional_context.cache_clear()  # a fresh one: pyOpenSSL freezes a used context
    pledge = _provisional_context(())
    for ctx in (server, pledge):
        options = ctx.set_options(0)  # pyOpenSSL has no getter; setting nothing returns them
        assert options & SSL.OP_NO_RENEGOTIATION and options & SSL.OP_NO_COMPRESSION
        assert _openssl_tls12(ctx) == TLS12


def test_stdlib_server_and_client_contexts(material: tuple[Path, Path]) -> None:
    cert, key = material
    server = server_ssl_context(cert=cert, key=key, client_cas=[cert])
    client = client_ssl_context(trust=[cert])
    for ctx in (server, client):
        assert _stdlib_tls12(ctx) == TLS12
        assert ctx.minimum_version is ssl.TLSVersion.TLSv1_2
        assert ctx.options & ssl.OP_NO_RENEGOTIATION


def test_policy_refuses_a_malformed_cipher_list() -> None:
    with pytest.raises(ValueError):
        TlsPolicy(tls12_ciphers="ECDHE-ECDSA-AES128-GCM-SHA256, AES128-SHA")
    assert POLICY.tls12_ciphers == TLS12_CIPHERS
