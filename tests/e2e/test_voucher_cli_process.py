"""brski voucher as a real process: output and exit codes seen from outside."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from brski import oids
from tests.voucher_cli_helpers import (
    APPENDIX_C_VOUCHER,
    NOW,
    RFC8995,
)

APPENDIX_C_NONCE = "-_XE9zK9q8Ll1qylMtLKeg"  # as RFC 8995 Appendix C writes it (base64url)


def _cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "brski_cli", "voucher", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_inspect_prints_the_appendix_c_voucher_as_json() -> None:
    proc = _cli("inspect", APPENDIX_C_VOUCHER)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["media_type"] == oids.MT_VOUCHER_CMS_JSON
    assert doc["kind"] == "voucher" and doc["signature"] == "valid"
    assert doc["payload"]["ietf-voucher:voucher"]["serial-number"] == "00-D0-E5-F2-00-02"
    assert "MASA" in doc["signer"]["subject"]
    assert [c["subject"] for c in doc["certificates"]] == [doc["signer"]["subject"]]


def test_verify_appendix_c_voucher_when_its_certificates_were_valid() -> None:
    proc = _cli(
        "verify", APPENDIX_C_VOUCHER, "--anchor", RFC8995 / "vendor.crt", "--at", "2021-05-01T00:00:00Z",
        "--expect-serial", "00-D0-E5-F2-00-02",
        # The nonce starts with "-": argparse needs the "=" form for such a value.
        f"--expect-nonce={APPENDIX_C_NONCE}",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("VALID: voucher (application/voucher-cms+json)")
    assert "chain[1]: CN=highway-test.example.com CA" in proc.stdout


def test_verify_tampered_voucher_fails_on_the_message_digest(voucher_lab: dict[str, Path]) -> None:
    proc = _cli("verify", voucher_lab["tampered"], "--anchor", voucher_lab["anchor"], "--at", NOW.isoformat())
    assert proc.returncode == 1
    assert proc.stdout.startswith("INVALID:") and "(check: cms.message-digest)" in proc.stdout


def test_unusable_input_exits_2(voucher_lab: dict[str, Path], tmp_path: Path) -> None:
    proc = _cli("verify", tmp_path / "missing.der", "--anchor", voucher_lab["anchor"])
    assert proc.returncode == 2 and "missing.der" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_verify_exit_status_on_the_real_process_for_a_request(voucher_lab: dict[str, Path]) -> None:
    proc = _cli("verify", voucher_lab["vr.cms"], "--anchor", voucher_lab["anchor"], "--at", NOW.isoformat())
    assert proc.returncode == 1 and "verify.kind" in proc.stdout
