"""Headless Chromium (Debian's chromium + chromedriver, driven by selenium)
holding an admin client certificate, for the console tests.

How the browser gets the certificate, as an operator's would: the admin's
PKCS#12 is imported with ``pk12util`` into an NSS database under a temporary
HOME (``~/.pki/nssdb``, where Chromium on Linux keeps client certificates),
the domain CA is trusted there with ``certutil``, and Chromium's
``AutoSelectCertificateForUrls`` policy picks the certificate for the
console's origin (without it Chromium asks the user in a dialog that a
headless browser cannot answer). Chromium reads policies only from
/etc/chromium/policies, so chromedriver runs in a private mount namespace
(``unshare --mount``) where a temporary directory is bind-mounted over
/etc/chromium: the machine's own configuration is never touched. That needs
root (CI runs as root); elsewhere the tests skip, saying why.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import BestAvailableEncryption, pkcs12

from brski.pki import load_cert, load_private_key

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
P12_PASSWORD = b"brski-console-test"


def require_browser() -> None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    missing += [t for t in ("certutil", "pk12util", "unshare") if shutil.which(t) is None]
    if missing:
        pytest.skip(f"browser test needs {', '.join(missing)} (tools/sysdeps/console.txt; make sysdeps)")
    if os.geteuid() != 0:
        pytest.skip("browser test needs root: Chromium's certificate policy is bind-mounted in a mount namespace")
    if not Path("/etc/chromium").is_dir():
        pytest.skip("/etc/chromium missing (the chromium package ships it)")
    pytest.importorskip("selenium")


def _run(*cmd: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"{' '.join(cmd)}: {proc.stdout}{proc.stderr}"


def browser_home(root: Path, *, cert: Path | None, key: Path | None, ca: Path, origin: str, issuer_cn: str) -> Path:
    """A HOME with an NSS db (admin certificate if given, CA trusted) and the policy directory."""
    home = root / "home"
    nss = home / ".pki" / "nssdb"
    nss.mkdir(parents=True)
    _run("certutil", "-N", "-d", f"sql:{nss}", "--empty-password")
    _run("certutil", "-A", "-d", f"sql:{nss}", "-n", "brski domain CA", "-t", "C,,", "-i", str(ca))
    if cert is not None and key is not None:
        p12 = root / "admin.p12"
        p12.write_bytes(pkcs12.serialize_key_and_certificates(
            b"brski admin", load_private_key(key.read_bytes()), load_cert(cert.read_bytes()), None,
            BestAvailableEncryption(P12_PASSWORD),
        ))
        _run("pk12util", "-i", str(p12), "-d", f"sql:{nss}", "-W", P12_PASSWORD.decode())
    policies = root / "etc-chromium" / "policies" / "managed"
    policies.mkdir(parents=True)
    rule = {"pattern": origin, "filter": {"ISSUER": {"CN": issuer_cn}}}
    (policies / "brski-console.json").write_text(json.dumps({"AutoSelectCertificateForUrls": [json.dumps(rule)]}))
    wrapper = root / "chromedriver"
    wrapper.write_text(
        "#!/bin/sh\n"
        "exec unshare --mount --propagation private sh -c "
        "'mount --bind \"$0\" /etc/chromium && exec " + CHROMEDRIVER + " \"$@\"' "
        f"'{root / 'etc-chromium'}' \"$@\"\n"
    )
    wrapper.chmod(0o755)
    return root


def start_browser(root: Path, *, width: int = 1280, height: int = 1000) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--user-data-dir={root / 'profile'}", f"--window-size={width},{height}",
                "--no-first-run", "--disable-background-networking", "--disable-component-update"):
        options.add_argument(arg)
    service = Service(str(root / "chromedriver"), env={**os.environ, "HOME": str(root / "home")})
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(60)
    return driver
