"""``brski demo --keep-running``: onboards, then leaves both servers up, prints
the consoles' URLs and how to load the admin certificates, and stops cleanly
on SIGTERM. The printed PKCS#12 file and password open the console (curl)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from brski_cli.lab import free_port


def test_demo_keep_running_prints_consoles_and_admin_certificates(tmp_path: Path) -> None:
    masa_port, registrar_port = free_port(), free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "brski_cli", "demo", "--pledges", "1", "--keep-running",
         "--certs", str(tmp_path / "certs"), "--workdir", str(tmp_path / "run"),
         "--masa-port", str(masa_port), "--registrar-port", str(registrar_port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    out: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 180
        for line in proc.stdout:
            out.append(line)
            if "Ctrl-C stops them" in line or time.monotonic() > deadline:
                break
        text = "".join(out)
        assert f"registrar  https://localhost:{registrar_port}/console/" in text, text
        assert f"MASA       https://localhost:{masa_port}/console/" in text, text
        password = re.search(r"PKCS#12, password (\S+)\):", text)
        assert password, text
        p12 = tmp_path / "run" / "registrar-admin.p12"
        assert str(p12) in text and "pk12util -i" in text
        # The servers are still up: the console answers the admin holding the printed PKCS#12.
        pem = tmp_path / "admin.pem"
        conv = subprocess.run(["openssl", "pkcs12", "-in", str(p12), "-nodes", "-passin", f"pass:{password.group(1)}",
                               "-out", str(pem)], capture_output=True, text=True, timeout=60)
        assert conv.returncode == 0, conv.stderr
        page = subprocess.run(
            ["curl", "-s", "--cacert", str(tmp_path / "certs/registrar/domain-ca.crt"), "--cert", str(pem),
             f"https://localhost:{registrar_port}/console/devices"],
            capture_output=True, text=True, timeout=60,
        )
        assert "PLG-000001" in page.stdout and "enrolled" in page.stdout, page.stdout[:2000]
    finally:
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, "".join(out) + rest
    assert "masa exit 0, registrar exit 0" in rest
