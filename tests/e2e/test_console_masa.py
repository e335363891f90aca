"""The MASA's web console, with curl (a client we did not write).

The manufacturer's admin (a client certificate under the manufacturer root,
listed in ``admin_subjects``) sees the devices made and their vouchers, adds
an owner through the confirmation step and removes it again; every write is
an event naming the admin. Without the certificate, or with another role's
admin certificate, there is no data; a POST without the CSRF token changes
nothing.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from brski_cli.lab import Lab
from tests.e2e.labtools import enroll, rows


def _curl(lab: Lab, path: str, *args: str, cert: str | None = "masa") -> tuple[int, str]:
    cmd = ["curl", "-s", "-w", "\n%{http_code}", "--cacert", str(lab.certs / "manufacturer" / "root-ca.crt")]
    if cert is not None:
        d = lab.certs / cert
        cmd += ["--cert", str(d / "admin.crt"), "--key", str(d / "admin.key")]
    proc = subprocess.run([*cmd, *args, lab.masa_url + path], capture_output=True, text=True, timeout=60)
    body, _, status = proc.stdout.rpartition("\n")
    return int(status), body


def _token(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page)
    assert found, page[:2000]
    return found.group(1)


def test_masa_console_devices_vouchers_and_owners(lab: Lab, tmp_path: Path) -> None:
    serial = lab.pledge_dirs()[0].name
    proc = enroll(lab, lab.pledge_dirs()[0], tmp_path / "p")
    assert proc.returncode == 0, proc.stdout + proc.stderr

    # No certificate, or the registrar's admin certificate: refused, no data.
    status, body = _curl(lab, "/console/devices", cert=None)
    assert status == 401 and serial not in body
    status, body = _curl(lab, "/console/devices", cert="registrar")
    assert status == 403 and "admin.chain" in body and serial not in body

    status, body = _curl(lab, "/console/")
    assert status == 200 and "vouchers issued" in body and serial in body  # latest vouchers issued
    status, body = _curl(lab, f"/console/devices?q={serial[:5]}")
    assert status == 200 and f"/console/devices/{serial}" in body
    status, page = _curl(lab, f"/console/devices/{serial}")
    # The voucher, its audit log entry, and the owner the first claim recorded ("open" ownership).
    assert status == 200 and "proximity" in page and "masa.open.first-claim" in page
    assert "CN=brski dev domain CA" in page
    db = lab.db_url("masa")
    token = _token(page)

    # Remove it: the confirmation page first (nothing written), then the removal.
    remove = re.search(rf'href="(/console/devices/{serial}/owners/[0-9a-f]{{64}}/remove)"', page)
    assert remove, page[:3000]
    status, confirm = _curl(lab, remove.group(1))
    assert status == 200 and "Confirm: remove owner" in confirm
    assert rows(db, "SELECT count(*) FROM owners WHERE serial = ?", (serial,)) == [(1,)]
    status, _ = _curl(lab, remove.group(1), "-d", f"csrf_token={token}")
    assert status == 303
    assert rows(db, "SELECT count(*) FROM owners WHERE serial = ?", (serial,)) == [(0,)]

    pem = (lab.certs / "registrar" / "domain-ca.crt").read_text()
    # Forged: no token. Nothing is added.
    status, body = _curl(lab, f"/console/devices/{serial}/owners/add", "--data-urlencode", f"pem={pem}",
                         "-d", "confirmed=yes")
    assert status == 403 and "console.csrf" in body
    assert rows(db, "SELECT count(*) FROM owners WHERE serial = ?", (serial,)) == [(0,)]

    # Add it back: the confirmation page names the CA and its key, then the add.
    status, confirm = _curl(lab, f"/console/devices/{serial}/owners/add", "-d", f"csrf_token={token}",
                            "--data-urlencode", f"pem={pem}")
    assert status == 200 and "Confirm: add owner" in confirm and "brski dev domain CA" in confirm
    assert rows(db, "SELECT count(*) FROM owners WHERE serial = ?", (serial,)) == [(0,)]
    status, _ = _curl(lab, f"/console/devices/{serial}/owners/add", "-d", f"csrf_token={token}",
                      "--data-urlencode", f"pem={pem}", "-d", "confirmed=yes")
    assert status == 303
    status, page = _curl(lab, f"/console/devices/{serial}")
    assert "CN=brski dev domain CA" in page
    assert rows(db, "SELECT count(*) FROM owners WHERE serial = ?", (serial,)) == [(1,)]
    events = rows(db, "SELECT kind, detail FROM events WHERE device_serial = ? AND kind LIKE 'owner.%'", (serial,))
    assert [k for k, _ in events] == ["owner.removed", "owner.added"]
    assert all("CN=masa admin,O=brski dev manufacturer" in str(d) for _, d in events)
