"""State evidence end to end: the stores are held to their own event logs.

A real onboarding leaves both stores consistent with their logs (``audit
verify`` exits 0 for both roles, the admin API agrees). Then the stores
are edited behind the servers' backs -- a device's state changed, a
voucher row deleted, an approval flipped on the registrar; an owner row
inserted at the MASA -- and ``audit verify`` names each row and exits 1, the
servers refuse to start (exit 2, check audit.store-inconsistent), and start
only when told to serve on an inconsistent store, which is recorded. On both
engines: the SQLite files, or the PostgreSQL schemas, edited with each
dialect's own SQL.
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from brski_cli.lab import Lab
from tests.e2e.labtools import edit, enroll, pledge_dirs, rows
from tests.store_helpers import as_int, sql_blob


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "brski_cli", *args], capture_output=True, text=True, timeout=120)


def _admin_verify(lab: Lab) -> dict[str, Any]:
    ca = lab.certs / "registrar" / "domain-ca.crt"
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.load_cert_chain(str(lab.certs / "registrar" / "admin.crt"), str(lab.certs / "registrar" / "admin.key"))
    with urllib.request.urlopen(lab.registrar_url + "/admin/v1/audit/verify", context=ctx, timeout=60) as resp:
        return dict(json.loads(resp.read()))


def _serve(role: str, config: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", role, "serve", "--config", str(config), *extra],
                          capture_output=True, text=True, timeout=120)


def test_onboarding_leaves_both_stores_consistent(lab: Lab, tmp_path: Path) -> None:
    pledge = pledge_dirs(lab)[0]
    assert enroll(lab, pledge, tmp_path / pledge.name).returncode == 0
    for role in ("registrar", "masa"):
        audit = _cli(role, "audit", "verify", "--config", str(lab.workdir / f"{role}.toml"))
        assert audit.returncode == 0, audit.stdout + audit.stderr
        assert "intact" in audit.stdout and "consistent with its event log" in audit.stdout, audit.stdout
    report = _admin_verify(lab)
    assert report["ok"] is True and report["chain_ok"] is True
    assert report["state"]["ok"] is True and report["state"]["rows_checked"]["devices"] >= 1
    assert report["state"]["disagreement_count"] == 0
    # the registrar's start-up took a checkpoint; the admin verify folded what followed
    assert as_int(rows(lab.db_url("registrar"), "SELECT count(*) FROM events WHERE kind = 'state.checkpoint'")[0][0]) >= 1


def test_edited_registrar_store_is_named_and_refused(lab: Lab, tmp_path: Path) -> None:
    config, db = lab.workdir / "registrar.toml", lab.db_url("registrar")
    pledge = pledge_dirs(lab)[1]
    assert enroll(lab, pledge, tmp_path / pledge.name).returncode == 0
    assert lab.stop("registrar") == 0
    serial = pledge.name
    (voucher_id,) = rows(db, "SELECT max(id) FROM vouchers WHERE serial = ?", (serial,))[0]
    edit(db,
         f"UPDATE devices SET state = 'discovered' WHERE serial = '{serial}'",
         f"DELETE FROM vouchers WHERE id = {voucher_id}",
         "INSERT INTO device_approvals (serial, decision, decided_at, decided_by) VALUES"
         " ('FORGED-1', 'approved', '2026-01-01T00:00:00.000000+00:00', 'nobody')")

    audit = _cli("registrar", "audit", "verify", "--config", str(config))
    assert audit.returncode == 1, audit.stdout + audit.stderr
    assert "event log intact" in audit.stdout  # the log is fine; the tables are not
    assert f"devices row '{serial}'" in audit.stdout and "state=10:discovered" in audit.stdout
    assert f"vouchers row '{voucher_id}': missing" in audit.stdout
    assert "device_approvals row 'FORGED-1'" in audit.stdout and "not accounted for" in audit.stdout

    serve = _serve("registrar", config)
    assert serve.returncode == 2, serve.stdout + serve.stderr
    assert "audit.store-inconsistent" in serve.stderr and f"devices row '{serial}'" in serve.stderr
    assert rows(db, "SELECT outcome FROM events WHERE kind = 'audit.store-inconsistent'") == [("refuse",)]

    with config.open("a") as fh:  # [registrar] is the file's last table
        fh.write("allow_inconsistent = true\n")
    try:
        lab.start("registrar")
        report = _admin_verify(lab)
    finally:
        config.write_text(config.read_text().replace("allow_inconsistent = true\n", ""))
    assert report["ok"] is False and report["chain_ok"] is True and report["state"]["ok"] is False
    named = {(d["table"], d["key"], d["problem"]) for d in report["state"]["disagreements"]}
    assert named == {("devices", serial, "changed"), ("vouchers", str(voucher_id), "missing"),
                     ("device_approvals", "FORGED-1", "unexpected")}
    assert rows(db, "SELECT outcome FROM events WHERE kind = 'audit.store-inconsistent' ORDER BY id") == [
        ("refuse",), ("info",)]


def test_edited_masa_store_is_named_and_refused(lab: Lab, tmp_path: Path) -> None:
    config, db = lab.workdir / "masa.toml", lab.db_url("masa")
    assert lab.stop("masa") == 0
    serial = pledge_dirs(lab)[2].name
    edit(db, "INSERT INTO owners (serial, domain_ca_spki_sha256, domain_ca_der, added_at) VALUES"
             f" ('{serial}', {sql_blob(db, os.urandom(32))}, {sql_blob(db, bytes.fromhex('3000'))},"
             " '2026-01-01T00:00:00.000000+00:00')")
    (owner_id,) = rows(db, "SELECT max(id) FROM owners")[0]

    audit = _cli("masa", "audit", "verify", "--config", str(config))
    assert audit.returncode == 1, audit.stdout + audit.stderr
    assert f"owners row '{owner_id}'" in audit.stdout and "not accounted for" in audit.stdout

    serve = _serve("masa", config)
    assert serve.returncode == 2, serve.stdout + serve.stderr
    assert "audit.store-inconsistent" in serve.stderr and f"owners row '{owner_id}'" in serve.stderr

    # --allow-inconsistent: it serves, and says so in the log and the chain.
    ready = tmp_path / "masa.ready"
    log = (tmp_path / "masa.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "masa", "serve", "--config", str(config), "--allow-inconsistent",
                             "--ready-file", str(ready)], stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))
    try:
        deadline = time.monotonic() + 60
        while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists(), (tmp_path / "masa.log").read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()
    assert "store-inconsistent-allowed" in (tmp_path / "masa.log").read_text()
    assert rows(db, "SELECT outcome, check_name FROM events WHERE kind = 'audit.store-inconsistent' ORDER BY id") == [
        ("refuse", "audit.store-inconsistent"), ("info", "audit.store-inconsistent")]
