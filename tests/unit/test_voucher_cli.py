"""``brski voucher inspect|verify``: the operator's contract (exit 0 valid, 1 refused
naming the rule, 2 unusable input), on published vectors and on artifacts
signed here in every format.

The exit-code contract is checked on the real process (``python -m
brski_cli``); the format/expectation matrix runs the same ``main(argv)``
in-process, because each process start costs ~0.3 s of imports.
"""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from pathlib import Path

import pytest

from brski import oids
from brski.artifact import sign_artifact
from brski.devpki import build_dev_pki
from brski.voucher import Assertion, Voucher
from brski_cli import main
from tests import VECTORS
from tests.voucher_cli_helpers import (
    APPENDIX_C_VOUCHER,
    FORMATS,
    NONCE,
    NOW,
    RFC8995,
)

CB = VECTORS / "cbrski-draft31"


def _run(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str]:
    code = main(["voucher", *map(str, args)])
    return code, capsys.readouterr().out


# --- the real process: exit codes ------------------------------------------------------------


# --- the matrix, in-process (same main(), same argparse) ----------------------------------


def test_verify_appendix_c_voucher_today_fails_naming_the_rule(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _run(capsys, "verify", APPENDIX_C_VOUCHER, "--anchor", RFC8995 / "vendor.crt")
    assert code == 1
    assert out.startswith("INVALID:") and "(check: chain.expired)" in out


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_verify_each_format_is_detected_and_valid(
    voucher_lab: dict[str, Path], capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    code, out = _run(
        capsys, "verify", voucher_lab[f"voucher.{fmt}"], "--anchor", voucher_lab["anchor"], "--at", NOW.isoformat(),
        "--expect-serial", str(voucher_lab["serial"]), f"--expect-nonce={NONCE.decode()}",
    )
    assert code == 0, out
    assert out.startswith(f"VALID: voucher ({FORMATS[fmt]})")


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@pytest.mark.parametrize("which", ["voucher", "vr"])
def test_inspect_detects_every_format_and_kind(
    voucher_lab: dict[str, Path], capsys: pytest.CaptureFixture[str], fmt: str, which: str
) -> None:
    code, out = _run(capsys, "inspect", voucher_lab[f"{which}.{fmt}"])
    assert code == 0, out
    doc = json.loads(out)
    assert doc["media_type"] == FORMATS[fmt]
    assert doc["kind"] == ("voucher" if which == "voucher" else "voucher-request")


@pytest.mark.parametrize("name", ["voucher.b64", "voucher.pem"])
def test_inspect_reads_base64_and_pem(voucher_lab: dict[str, Path], capsys: pytest.CaptureFixture[str], name: str) -> None:
    code, out = _run(capsys, "inspect", voucher_lab[name])
    assert code == 0, out
    assert json.loads(out)["media_type"] == oids.MT_VOUCHER_CMS_JSON


def test_inspect_garbage_fails_naming_the_rule(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "junk"
    junk.write_bytes(b"\x30\x03\x02\x01")
    code, out = _run(capsys, "inspect", junk)
    assert code == 1
    doc = json.loads(out)
    assert doc["signature"] == "invalid" and doc["check"].startswith(("asn1.", "cms."))


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_verify_pledge_request_chains_as_an_idevid(
    voucher_lab: dict[str, Path], capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    code, out = _run(capsys, "verify", "--request", voucher_lab[f"vr.{fmt}"], "--anchor", voucher_lab["anchor"], "--at", NOW.isoformat())
    assert code == 0, out
    assert out.startswith(f"VALID: voucher-request ({FORMATS[fmt]})")


@pytest.mark.parametrize(
    ("args", "check"),
    [
        (["--expect-serial", "SOMEONE-ELSE"], "expect.serial-number"),
        (["--expect-nonce", base64.b64encode(b"another nonce!!!").decode()], "expect.nonce"),
        (["--at", "2020-01-01T00:00:00Z"], "chain.not-yet-valid"),
        (["--at", "2099-01-01T00:00:00+02:00"], "chain.expired"),
    ],
)
def test_verify_refusals_name_the_rule(
    voucher_lab: dict[str, Path], capsys: pytest.CaptureFixture[str], args: list[str], check: str
) -> None:
    argv: list[str | Path] = ["verify", voucher_lab["voucher.cms"], "--anchor", voucher_lab["anchor"], *(["--at", NOW.isoformat()] if "--at" not in args else []), *args]
    code, out = _run(capsys, *argv)
    assert code == 1, out
    assert out.startswith("INVALID:") and f"(check: {check})" in out


@pytest.mark.parametrize(
    "nonce",
    [NONCE.decode(), base64.b64encode(NONCE).decode(), base64.urlsafe_b64encode(NONCE).decode().rstrip("=")],
    ids=["literal", "base64", "base64url-unpadded"],
)
def test_verify_expect_nonce_forms(voucher_lab: dict[str, Path], capsys: pytest.CaptureFixture[str], nonce: str) -> None:
    code, out = _run(
        capsys, "verify", voucher_lab["voucher.jws"], "--anchor", voucher_lab["anchor"], "--at", NOW.isoformat(), "--expect-nonce", nonce
    )
    assert code == 0, out


def test_verify_under_the_wrong_anchor_is_untrusted(voucher_lab: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _run(capsys, "verify", voucher_lab["voucher.cose"], "--anchor", voucher_lab["domain"], "--at", NOW.isoformat())
    assert code == 1
    assert "(check: chain.untrusted)" in out


def test_verify_registrar_request_needs_cmc_ra_and_uses_that_role(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _run(
        capsys, "verify", "--request", RFC8995 / "parboiled_vr_00-D0-E5-F2-00-02.der",
        "--anchor", RFC8995 / "ownerca_secp384r1.crt", "--at", "2021-05-01",
    )
    assert code == 0, out
    assert out.startswith("VALID: voucher-request")


def test_cose_without_carried_certs_needs_cert(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """cbrski-draft31's pvr carries no certificate: --cert supplies the signer."""
    pledge_pem = tmp_path / "pledge.crt"
    pledge_pem.write_bytes((CB / "pledge.crt.der").read_bytes())
    code, out = _run(capsys, "inspect", CB / "pvr.cbor")
    assert code == 1 and json.loads(out)["check"] == "cose.no-signer"
    code, out = _run(capsys, "inspect", CB / "pvr.cbor", "--cert", pledge_pem)
    assert code == 0 and json.loads(out)["kind"] == "voucher-request"
    code, out = _run(
        capsys, "verify", "--request", CB / "pvr.cbor", "--cert", pledge_pem, "--anchor", CB / "masa_ca.crt.der",
        "--at", "2024-06-01T00:00:00Z", "--expect-serial", "JADA123456789",
    )
    assert code == 0, out
    # The voucher is signed by the MASA CA key itself: the anchor is the candidate.
    code, out = _run(capsys, "verify", CB / "voucher.cbor", "--anchor", CB / "masa_ca.crt.der", "--at", "2024-06-01")
    assert code == 0, out


def test_bad_options_exit_2(voucher_lab: dict[str, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["voucher", "verify", str(voucher_lab["voucher.cms"]), "--anchor", str(voucher_lab["anchor"]), "--at", "yesterday"]) == 2
    not_a_cert = tmp_path / "not-a-cert.pem"
    not_a_cert.write_bytes(b"hello")
    assert main(["voucher", "verify", str(voucher_lab["voucher.cms"]), "--anchor", str(not_a_cert)]) == 2
    assert "--anchor" in capsys.readouterr().err


# --- what a voucher is, and what the terminal shows ---------------------------------------------


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_verify_refuses_a_voucher_request_unless_asked(
    voucher_lab: dict[str, Path], capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    """A script reading only the exit status must not take a pledge-signed request for a voucher."""
    serial = str(voucher_lab["serial"])
    args: list[str | Path] = [voucher_lab[f"vr.{fmt}"], "--anchor", voucher_lab["anchor"], "--at", NOW.isoformat(), "--expect-serial", serial]
    code, out = _run(capsys, "verify", *args)
    assert code == 1, out
    assert "(check: verify.kind)" in out and "--request" in out
    code, out = _run(capsys, "verify", "--request", voucher_lab[f"voucher.{fmt}"], "--anchor", voucher_lab["anchor"], "--at", NOW.isoformat())
    assert code == 1 and "(check: verify.kind)" in out
    code, out = _run(capsys, "verify", "--request", *args)
    assert code == 0 and out.startswith("VALID: voucher-request")


def test_inspect_reports_signature_and_schema_apart(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A voucher without created-on: the signature is valid, the schema is not."""
    pki = build_dev_pki(pledges=1, masa_url="https://masa.example", now=NOW - timedelta(days=1))
    key, cert = pki.key("masa/voucher-signer.key"), pki.cert("masa/voucher-signer.crt")
    from brski import cms

    body = json.dumps({"ietf-voucher:voucher": {"assertion": "logged", "serial-number": "X1", "pinned-domain-cert": "MAA="}})
    path = tmp_path / "no-created-on.cms"
    path.write_bytes(cms.sign(body.encode(), key=key, cert=cert))
    code, out = _run(capsys, "inspect", path)
    doc = json.loads(out)
    assert code == 1
    assert doc["signature"] == "valid" and doc["schema"] == "invalid"
    assert doc["check"] == "voucher.mandatory" and "created-on" in doc["detail"]
    assert doc["payload"]["ietf-voucher:voucher"]["serial-number"] == "X1"
    assert doc["signer"]["subject"] == cert.subject.rfc4514_string()


def test_inspect_valid_artifact_reports_both_valid(voucher_lab: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _run(capsys, "inspect", voucher_lab["voucher.cms"])
    doc = json.loads(out)
    assert code == 0 and doc["signature"] == "valid" and doc["schema"] == "valid" and doc["kind"] == "voucher"


def test_control_characters_never_reach_the_terminal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """ESC[2J in a signer's name (a serial-number cannot carry it any more: RFC
    7950 9.4) is printed escaped by verify and inspect."""
    from cryptography import x509 as cx509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = cx509.Name([cx509.NameAttribute(NameOID.COMMON_NAME, "evil\x1b[2J\u202eMASA")])
    cert = (
        cx509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(7).not_valid_before(NOW - timedelta(days=1)).not_valid_after(NOW + timedelta(days=1))
        .add_extension(cx509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    voucher = Voucher(created_on=NOW, assertion=Assertion.LOGGED, serial_number="S\u00e9rie-1", pinned_domain_cert=b"0")
    path = tmp_path / "v.cms"
    path.write_bytes(sign_artifact(voucher, media_type=oids.MT_VOUCHER_CMS_JSON, key=key, cert=cert))
    anchor = tmp_path / "anchor.pem"
    from cryptography.hazmat.primitives.serialization import Encoding

    anchor.write_bytes(cert.public_bytes(Encoding.PEM))
    argvs: tuple[list[str | Path], ...] = (["verify", path, "--anchor", anchor, "--at", NOW.isoformat()], ["inspect", path])
    for argv in argvs:
        code, out = _run(capsys, *argv)
        assert "\x1b" not in out and "\u202e" not in out, argv
        assert "S\u00e9rie-1" in out or "S\\u00e9rie-1" in out
    code, out = _run(capsys, "verify", path, "--anchor", anchor, "--at", NOW.isoformat())
    assert code == 0 and "\\x1b[2J\\u202eMASA" in out, out


def test_escape_controls_keeps_printable_text_and_escapes_the_rest() -> None:
    from brski.display import escape_controls

    assert escape_controls("Gerät 😀 ok") == "Gerät 😀 ok"
    assert escape_controls("a\x1b[2Jb\x7f\x85\u202e\u2028") == "a\\x1b[2Jb\\x7f\\x85\\u202e\\u2028"
