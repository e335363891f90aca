"""brski.cms against openssl cms, both ways (a subprocess, so not a unit test)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from brski import cms, oids
from tests.cms_helpers import VOUCHER_JSON, _cert, _key, _signed

OPENSSL = shutil.which("openssl")


needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="openssl binary not available")


def _pem(tmp: Path, name: str, data: bytes) -> str:
    path = tmp / name
    path.write_bytes(data)
    return str(path)


@needs_openssl
@pytest.mark.parametrize("kind", ["p256", "p384", "rsa"])
@pytest.mark.parametrize("signer_id", ["issuer-serial", "ski"])
def test_openssl_verifies_what_we_sign(tmp_path: Path, kind: str, signer_id: Any) -> None:
    der, _, cert = _signed(kind, signer_id=signer_id)
    result = subprocess.run(
        [
            str(OPENSSL), "cms", "-verify", "-binary", "-inform", "DER",
            "-in", _pem(tmp_path, "msg.der", der),
            "-certfile", _pem(tmp_path, "c.pem", cert.public_bytes(serialization.Encoding.PEM)),
            "-noverify",
        ],
        capture_output=True,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == VOUCHER_JSON


@needs_openssl
@pytest.mark.parametrize("flags", [["-stream"], ["-keyid"]], ids=["ber-stream", "keyid"])
def test_we_verify_what_openssl_signs(tmp_path: Path, flags: list[str]) -> None:
    key = _key("p256")
    cert = _cert(key)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    out = tmp_path / "out.der"
    subprocess.run(
        [
            str(OPENSSL), "cms", "-sign", "-binary", "-nodetach", "-outform", "DER", *flags,
            "-in", _pem(tmp_path, "content.json", VOUCHER_JSON),
            "-signer", _pem(tmp_path, "c.pem", cert.public_bytes(serialization.Encoding.PEM)),
            "-inkey", _pem(tmp_path, "k.pem", key_pem),
            "-out", str(out),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    message = cms.verify(out.read_bytes())
    assert message.content == VOUCHER_JSON
    assert message.signer == cert
    assert message.content_type == oids.ID_DATA
