"""End to end: MASA, registrar and pledges as separate processes over real TLS.

What is checked here is checked independently of the project's code where
it matters: the LDevID chain and the voucher signature with ``openssl``, the
stores by reading the SQLite files directly.
"""

from __future__ import annotations

import json
from pathlib import Path

from brski_cli.lab import Lab
from tests.e2e.labtools import enroll as _enroll
from tests.e2e.labtools import openssl as _openssl
from tests.e2e.labtools import pledge_dirs as _pledge_dirs
from tests.e2e.labtools import post as _post
from tests.e2e.labtools import rows as _rows
from tests.store_helpers import as_bytes, as_int, as_str


def test_three_pledges_onboard_and_results_verify_independently(lab: Lab, tmp_path: Path) -> None:
    root_ca = lab.certs / "manufacturer" / "root-ca.crt"
    domain_ca = lab.certs / "registrar" / "domain-ca.crt"
    serials = []
    for pledge_dir in _pledge_dirs(lab):
        out = tmp_path / pledge_dir.name
        proc = _enroll(lab, pledge_dir, out)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        result = json.loads(proc.stdout)
        serials.append(result["serial"])
        assert result["voucher"]["serial_number"] == pledge_dir.name
        # The LDevID chains to the domain CA: openssl, not our code, says so.
        ldevid = out / "ldevid.crt"
        check = _openssl("verify", "-CAfile", str(domain_ca), str(ldevid))
        assert check.returncode == 0 and ": OK" in check.stdout, check.stdout + check.stderr
        # The LDevID names the device.
        subject = _openssl("x509", "-in", str(ldevid), "-noout", "-subject", "-nameopt", "RFC2253")
        assert f"serialNumber={pledge_dir.name}" in subject.stdout

    registrar_db = lab.db_url("registrar")
    masa_db = lab.db_url("masa")
    # Each voucher the registrar received verifies with openssl against the
    # manufacturer anchor the pledges hold.
    vouchers = [(as_str(s), as_bytes(v)) for s, v in _rows(registrar_db, "SELECT serial, voucher FROM vouchers")]
    assert sorted(s for s, _ in vouchers) == sorted(serials)
    for serial, blob in vouchers:
        path = tmp_path / f"{serial}.voucher.der"
        path.write_bytes(blob)
        verified = _openssl(
            "cms", "-verify", "-inform", "DER", "-in", str(path), "-CAfile", str(root_ca), "-purpose", "any"
        )
        assert verified.returncode == 0, verified.stderr
        content = json.loads(verified.stdout)
        assert content["ietf-voucher:voucher"]["serial-number"] == serial

    # Records survive a restart of both servers.
    assert lab.stop("registrar") == 0
    assert lab.stop("masa") == 0
    lab.start("masa")
    lab.start("registrar")
    devices = {s: st for s, st in _rows(registrar_db, "SELECT serial, state FROM devices")}
    assert {s: devices[s] for s in serials} == {s: "enrolled" for s in serials}
    issued = _rows(registrar_db, "SELECT device_serial FROM certificates WHERE state = 'issued'")
    assert sorted(as_str(r[0]) for r in issued) == sorted(serials)
    audit = _rows(masa_db, "SELECT serial FROM audit_log")
    assert set(serials) <= {r[0] for r in audit}
    fetched = _rows(registrar_db, "SELECT serial FROM audit_logs")
    assert set(serials) <= {r[0] for r in fetched}


def test_bad_request_is_refused_recorded_and_a_good_pledge_still_enrolls(lab: Lab, tmp_path: Path) -> None:
    status, problem = _post(lab, "/.well-known/brski/requestvoucher", b"\x30\x03garbage", "application/voucher-cms+json", tmp_path)
    assert status == 400
    assert str(problem["check"]).startswith(("asn1.", "cms.")), problem
    status, problem = _post(lab, "/.well-known/brski/requestvoucher", b"{}", "text/plain", tmp_path)
    assert status == 415 and problem["check"] == "http.content-type"
    refusals = _rows(
        lab.db_url("registrar"), "SELECT check_name FROM events WHERE outcome = 'refuse'"
    )
    assert "http.content-type" in {r[0] for r in refusals}
    issued_before = as_int(_rows(lab.db_url("registrar"), "SELECT count(*) FROM certificates")[0][0])
    pledge_dir = _pledge_dirs(lab)[-1]
    proc = _enroll(lab, pledge_dir, tmp_path / "again")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    issued_after = as_int(_rows(lab.db_url("registrar"), "SELECT count(*) FROM certificates")[0][0])
    assert issued_after == issued_before + 1
