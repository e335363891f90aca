"""Inputs ``make fuzz`` (tools/fuzz.py) found, kept as regression tests, and a
smoke run of the tool itself so that it stays runnable and able to fail.

cryptography raises ``x509.InvalidVersion`` (not a ValueError) for a
certificate or CSR whose version field is out of range; every loader of
untrusted certificates must turn that into MalformedInput.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from brski import est, pki
from brski.errors import MalformedInput

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "tests" / "vectors"


def _bad_version_cert() -> bytes:
    der = (VECTORS / "cbrski-draft31" / "pledge.crt.der").read_bytes()
    # tbsCertificate version [0] EXPLICIT INTEGER 2 (v3) -> 5: no such version.
    assert der.count(b"\xa0\x03\x02\x01\x02") == 1
    return der.replace(b"\xa0\x03\x02\x01\x02", b"\xa0\x03\x02\x01\x05")


def _bad_version_csr() -> bytes:
    der = (VECTORS / "rfc7030" / "A.3-simpleenroll-request.p10.der").read_bytes()
    at = der.index(b"\x02\x01\x00")  # CertificationRequestInfo version 0 (v1)
    return der[:at] + b"\x02\x01\x05" + der[at + 3 :]


def test_load_cert_and_load_certs_refuse_an_unknown_certificate_version() -> None:
    for load in (pki.load_cert, pki.load_certs):
        with pytest.raises(MalformedInput) as info:
            load(_bad_version_cert())
        assert info.value.check == "pki.certificate"


def test_parse_csr_refuses_an_unknown_csr_version() -> None:
    with pytest.raises(MalformedInput) as info:
        est.parse_csr(_bad_version_csr())
    assert info.value.check == "est.csr-der"


def test_parse_certs_only_refuses_an_unknown_certificate_version() -> None:
    good = (VECTORS / "cbrski-draft31" / "pledge.crt.der").read_bytes()
    body = est.build_certs_only([pki.load_cert(good)]).replace(good, _bad_version_cert())
    with pytest.raises(MalformedInput) as info:
        est.parse_certs_only(body)
    assert info.value.check == "est.certs-only-cert"


# --- the tool ---------------------------------------------------------------------------


def _fuzz_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("brski_fuzz_tool", ROOT / "tools" / "fuzz.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_fuzz_tool_covers_every_parser_and_passes_a_short_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fuzz = _fuzz_module()
    targets = fuzz.build_targets()
    names = {t.name for t in targets}
    for wanted in (
        "cms.verify", "asn1.check_der", "cbor.decode_cbor", "voucher.Voucher.from_json",
        "est.parse_csr", "est.parse_certs_only", "csrattrs.parse_csrattrs", "est.decode_base64_body",
        "telemetry.parse_status", "pki.load_cert",
    ):
        assert wanted in names
    assert sum(n.startswith("artifact.verify_artifact[") for n in names) == 6
    assert all(t.seeds for t in targets), [t.name for t in targets if not t.seeds]
    code = fuzz.main(["--count", "30", "--save", str(tmp_path)], targets=targets)
    out = capsys.readouterr().out
    assert code == 0, out
    assert "0 unhandled exceptions" in out


def test_fuzz_tool_reports_an_unhandled_exception_and_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fuzz = _fuzz_module()

    def leaky(data: bytes) -> None:
        if len(data) % 2:
            raise KeyError("leaked")

    code = fuzz.main(["--count", "20", "--save", str(tmp_path)], targets=[fuzz.Target("leaky", leaky, [b"abc"])])
    out = capsys.readouterr().out
    assert code == 1
    assert "builtins.KeyError" in out and list(tmp_path.glob("leaky-*.bin"))
