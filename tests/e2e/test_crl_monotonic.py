"""RFC 5280 3.3 end to end: a CRL never drops an unexpired revoked certificate.

A device is revoked and the CRL published; then someone edits the
certificate's row in the registrar's store (SQLite file or PostgreSQL
schema) back to 'issued' (or restores an old backup). Restarted on that store, the registrar must not
answer OCSP "good", accept /simplereenroll or publish a CRL without the
serial. It refuses to start (exit 2, check crl.store-disagrees), ``brski
registrar audit verify`` names the row, and with ``allow_crl_mismatch`` it
serves with the published revocation still in force -- as OpenSSL sees it.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import urllib.request
from pathlib import Path

from cryptography import x509

from brski_cli.lab import Lab
from tests.e2e.labtools import edit, enroll, openssl, pledge_dirs, rows


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "brski_cli", *args], capture_output=True, text=True, timeout=120)


def _crl(lab: Lab, tmp: Path, name: str) -> Path:
    with urllib.request.urlopen(f"{lab.revocation_url}/crl", timeout=30) as resp:
        (tmp / f"{name}.der").write_bytes(resp.read())
    pem = tmp / f"{name}.pem"
    assert openssl("crl", "-inform", "DER", "-in", str(tmp / f"{name}.der"), "-out", str(pem)).returncode == 0
    return pem


def test_edited_revocation_row_is_refused_and_never_good(lab: Lab, tmp_path: Path) -> None:
    ca = lab.certs / "registrar" / "domain-ca.crt"
    config = lab.workdir / "registrar.toml"
    db = lab.db_url("registrar")
    pledge = pledge_dirs(lab)[0]
    out = tmp_path / pledge.name
    assert enroll(lab, pledge, out).returncode == 0
    ldevid = out / "ldevid.crt"
    serial_hex = format(x509.load_pem_x509_certificate(ldevid.read_bytes()).serial_number, "x")
    revoked = _cli("registrar", "devices", "revoke", pledge.name, "--reason", "keyCompromise", "--config", str(config))
    assert revoked.returncode == 0, revoked.stderr
    before = _crl(lab, tmp_path, "published")
    assert openssl("verify", "-crl_check", "-CAfile", str(ca), "-CRLfile", str(before), str(ldevid)).returncode != 0

    # The store is edited behind the registrar's back: the revocation "undone".
    assert lab.stop("registrar") == 0
    edit(db,
         "UPDATE certificates SET state = 'issued', revoked_at = NULL, revocation_reason = NULL"
         f" WHERE cert_serial = '{serial_hex}'",
         f"UPDATE devices SET state = 'enrolled' WHERE serial = '{pledge.name}'")

    # Restart: refused loudly, exit 2, the check and the certificate named.
    serve = subprocess.run([sys.executable, "-m", "registrar", "serve", "--config", str(config)],
                           capture_output=True, text=True, timeout=60)
    assert serve.returncode == 2, serve.stdout + serve.stderr
    assert "crl.store-disagrees" in serve.stderr and serial_hex in serve.stderr and "crl.entry-unrevoked" in serve.stderr
    refusal = rows(db, "SELECT outcome, check_name FROM events WHERE kind = 'crl.store-disagrees'")
    assert refusal == [("refuse", "crl.store-disagrees")]
    # audit verify says the same (the event chain itself is intact).
    audit = _cli("registrar", "audit", "verify", "--config", str(config))
    assert audit.returncode == 1, audit.stdout + audit.stderr
    assert "intact" in audit.stdout and f"certificate {serial_hex}" in audit.stdout and "crl.entry-unrevoked" in audit.stdout
    # ... and so does the state evidence: the log recorded the revocation.
    assert f"certificates row '{serial_hex}': evidence says [" in audit.stdout and "state=7:revoked" in audit.stdout

    # Served anyway on the operator's word: the published revocation stays in force.
    with config.open("a") as fh:  # [registrar] is the file's last table
        fh.write("allow_crl_mismatch = true\n")
        fh.write("allow_inconsistent = true\n")  # the edited rows also contradict the event log
    lab.start("registrar")
    ocsp = openssl("ocsp", "-issuer", str(ca), "-cert", str(ldevid), "-url", f"{lab.revocation_url}/ocsp",
                   "-CAfile", str(ca))
    assert f"{ldevid}: revoked" in ocsp.stdout and "Response verify OK" in ocsp.stderr, ocsp.stdout + ocsp.stderr
    # A CRL signed now (the revoked count changed) is a superset of the last one.
    after = _crl(lab, tmp_path, "after")
    numbers = rows(db, "SELECT number FROM crls ORDER BY number")
    assert len(numbers) >= 2
    check = openssl("verify", "-crl_check", "-CAfile", str(ca), "-CRLfile", str(after), str(ldevid))
    assert check.returncode != 0 and "certificate revoked" in check.stdout + check.stderr
    again = subprocess.run(
        [sys.executable, "-m", "brski_cli", "pledge", "reenroll", "--registrar", lab.registrar_url,
         "--ldevid", str(ldevid), "--ldevid-key", str(out / "ldevid.key"), "--out", str(out), "--json", "--new-key"],
        capture_output=True, text=True, timeout=120,
    )
    assert again.returncode == 1 and "ldevid.revoked" in again.stdout, again.stdout + again.stderr
    # The admin API's audit says so too.
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.load_cert_chain(str(lab.certs / "registrar" / "admin.crt"), str(lab.certs / "registrar" / "admin.key"))
    with urllib.request.urlopen(lab.registrar_url + "/admin/v1/audit/verify", context=ctx, timeout=30) as resp:
        report = json.loads(resp.read())
    assert report["ok"] is False and report["chain_ok"] is True
    assert any(serial_hex in line and "crl.entry-unrevoked" in line for line in report["crl_disagreements"])
    allowed = rows(db, "SELECT outcome FROM events WHERE kind = 'crl.store-disagrees' ORDER BY id")
    assert allowed == [("refuse",), ("info",)]
