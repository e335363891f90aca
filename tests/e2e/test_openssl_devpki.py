"""The development PKI's chains checked by openssl verify (a subprocess, so not a unit test)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from brski.devpki import DevPki
from tests.devpki_helpers import (
    NOW,
)


def _openssl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["/usr/bin/openssl", *args], capture_output=True, text=True, check=False)


@pytest.mark.skipif(shutil.which("/usr/bin/openssl") is None, reason="openssl not installed")
def test_openssl_verifies_generated_chains(dev: DevPki, tmp_path: Path) -> None:
    for rel, content in dev.files.items():
        target = tmp_path / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    at = str(int(NOW.timestamp()))

    def verify(anchor: str, leaf: str, *extra: str) -> None:
        res = _openssl(
            "verify", "-x509_strict", "-attime", at, "-CAfile", str(tmp_path / anchor), *extra,
            str(tmp_path / leaf),
        )  # fmt: skip
        assert res.returncode == 0 and ": OK" in res.stdout, res.stdout + res.stderr

    verify(
        "manufacturer/anchors.pem",
        "pledges/PLG-000002/idevid.crt",
        "-untrusted",
        str(tmp_path / "pledges/PLG-000002/chain.pem"),
    )
    verify("manufacturer/root-ca.crt", "masa/tls.crt", "-purpose", "sslserver")
    verify("manufacturer/root-ca.crt", "masa/voucher-signer.crt")
    verify("registrar/domain-ca.crt", "registrar/tls.crt", "-purpose", "sslserver")
    verify("registrar/domain-ca.crt", "registrar/admin.crt", "-purpose", "sslclient")
    verify("registrar/domain-ca.crt", "registrar/ra.crt", "-purpose", "sslclient")
    # And openssl says no when it should (the test can fail).
    bad = _openssl(
        "verify", "-attime", at, "-CAfile", str(tmp_path / "registrar/domain-ca.crt"),
        str(tmp_path / "masa/tls.crt"),
    )  # fmt: skip
    assert bad.returncode != 0
