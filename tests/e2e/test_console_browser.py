"""The registrar's web console in a real browser (headless Chromium).

An admin, holding the admin client certificate in the browser, watches a
pledge wait in the approval queue (RFC 8995 5.6), approves it, sees it reach
``enrolled``, revokes its LDevID with an RFC 5280 reason, and ``openssl
ocsp`` against the responder named in the LDevID then says revoked. A
visitor without the admin certificate (curl) gets 401/403 and no data; a
forged POST without the CSRF token is refused and changes nothing. The test
saves screenshots (set BRSKI_CONSOLE_SCREENSHOTS=docs to refresh the ones
the documentation shows).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from brski_cli.lab import Lab, ensure_dev_pki, free_port
from tests.e2e.browser import browser_home, require_browser, start_browser
from tests.e2e.labtools import engine_databases, openssl, rows

WAIT_S = 90


@pytest.fixture(scope="module")
def queue_lab(tmp_path_factory: pytest.TempPathFactory, engine: str, request: pytest.FixtureRequest) -> Iterator[Lab]:
    """A lab whose registrar parks unlisted devices for an operator's approval."""
    root = tmp_path_factory.mktemp("console-lab")
    masa_port, registrar_port = free_port(), free_port()
    certs = root / "certs"
    ensure_dev_pki(certs, pledges=3, masa_url=f"https://localhost:{masa_port}")
    lab = Lab(
        workdir=root / "run", certs=certs, masa_port=masa_port, registrar_port=registrar_port,
        registrar_extra=('unlisted_devices = "queue"', "approval_retry_after_s = 1"),
        **engine_databases(engine, request),
    )
    lab.write_configs()
    lab.import_devices()
    lab.start("masa")
    lab.start("registrar")
    yield lab
    lab.stop_all()


def _curl(lab: Lab, path: str, *args: str, cert: str | None = "admin") -> tuple[int, str]:
    """curl: a client we did not write. Returns (status, body)."""
    reg = lab.certs / "registrar"
    cmd = ["curl", "-s", "-w", "\n%{http_code}", "--cacert", str(reg / "domain-ca.crt")]
    if cert == "admin":
        cmd += ["--cert", str(reg / "admin.crt"), "--key", str(reg / "admin.key")]
    elif cert is not None:  # a pledge's IDevID: a valid client certificate, not an admin's
        pledge = lab.pledge_dirs()[0]
        bundle = Path(cert)
        bundle.write_bytes((pledge / "idevid.crt").read_bytes() + (pledge / "chain.pem").read_bytes())
        cmd += ["--cert", str(bundle), "--key", str(pledge / "idevid.key")]
    proc = subprocess.run([*cmd, *args, lab.registrar_url + path], capture_output=True, text=True, timeout=60)
    body, _, status = proc.stdout.rpartition("\n")
    return int(status), body


def _wait(driver: Any, what: str, ok: Any, *, reload: bool = True) -> None:
    deadline = time.monotonic() + WAIT_S
    while not ok():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; page:\n{driver.page_source[:3000]}")
        time.sleep(0.5)
        if reload:
            driver.refresh()


def _submit(driver: Any) -> None:
    """Press the confirmation form's button and wait for the page it leads to."""
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    button = driver.find_element(By.CSS_SELECTOR, "form.confirm button[type=submit]")
    button.click()

    def gone(_: Any) -> bool:
        """The old page's button is gone: the next page replaced it."""
        try:
            button.is_enabled()
        except StaleElementReferenceException:
            return True
        except WebDriverException as exc:
            # Asked while the next page replaces the document, Chrome may answer
            # for the old page's node with this instead of a stale reference.
            if "does not belong to the document" in str(exc):
                return True
            raise
        return False

    WebDriverWait(driver, WAIT_S).until(gone)


def _shot(driver: Any, tmp_path: Path, name: str, *, width: int = 1280) -> Path:
    # The whole page, not the first screenful.
    driver.set_window_size(width, 900)
    height = driver.execute_script("return Math.ceil(document.body.getBoundingClientRect().bottom)")
    driver.set_window_size(width, min(max(int(height) + 120, 800), 2400))
    out_dir = Path(os.environ.get("BRSKI_CONSOLE_SCREENSHOTS") or tmp_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"console-{name}.png"
    assert driver.save_screenshot(str(path)), path
    return path


def test_visitor_without_admin_certificate_gets_no_data(queue_lab: Lab, tmp_path: Path) -> None:
    lab = queue_lab
    status, body = _curl(lab, "/console/", cert=None)
    assert status == 401 and "admin.client-cert" in body and "Dashboard" not in body
    status, body = _curl(lab, "/console/devices", cert=str(tmp_path / "idevid.pem"))
    assert status == 403 and "admin.chain" in body and "<table" not in body
    status, _ = _curl(lab, "/console/static/console.css", cert=None)
    assert status == 401
    status, body = _curl(lab, "/console/audit/export", cert=None)
    assert status == 401 and '"hash"' not in body
    status, body = _curl(lab, "/console/", cert="admin")
    assert status == 200 and "Dashboard" in body


def test_admin_approves_watches_enrolment_and_revokes_in_a_browser(queue_lab: Lab, tmp_path: Path) -> None:
    require_browser()
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    lab = queue_lab
    reg = lab.certs / "registrar"
    pledge = lab.pledge_dirs()[1]
    serial = pledge.name
    out = tmp_path / "pledge"
    patient = tmp_path / "pledge.toml"  # keeps asking (Retry-After 1 s) until the admin decides
    patient.write_text("[pledge]\nmax_voucher_attempts = 200\n")
    enrolment = subprocess.Popen(
        [sys.executable, "-m", "brski_cli", "pledge", "enroll", "--config", str(patient), "--dir", str(pledge),
         "--registrar", lab.registrar_url, "--anchor", str(lab.certs / "manufacturer" / "root-ca.crt"),
         "--out", str(out), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    root = browser_home(
        tmp_path / "browser", cert=reg / "admin.crt", key=reg / "admin.key", ca=reg / "domain-ca.crt",
        origin=lab.registrar_url, issuer_cn="brski dev domain CA",
    )
    driver = start_browser(root)
    driver.implicitly_wait(10)  # a link followed: wait for the next page's elements
    try:
        # The dashboard shows the queue; the device list finds the pledge waiting.
        driver.get(lab.registrar_url + "/console/")
        assert driver.find_element(By.TAG_NAME, "h1").text == "Dashboard"
        _wait(driver, "the approval queue to hold the pledge",
              lambda: driver.find_element(By.CSS_SELECTOR, "#approval-queue .n").text == "1")
        driver.find_element(By.ID, "approval-queue").click()
        driver.find_element(By.LINK_TEXT, serial).click()
        assert driver.find_element(By.ID, "state").text == "awaiting-approval"

        # Approve, through the confirmation step.
        driver.find_element(By.ID, "action-approve").click()
        assert "Approve device" in driver.find_element(By.TAG_NAME, "h1").text
        driver.find_element(By.ID, "reason").send_keys("seen on the installer's list")
        _submit(driver)
        notice = driver.find_elements(By.CSS_SELECTOR, ".notice")
        assert notice and "Approve: done" in notice[0].text, driver.page_source[:4000]

        # Watch it reach "enrolled" (the page also reloads itself while the device is on its way).
        _wait(driver, "enrolled", lambda: driver.find_element(By.ID, "state").text == "enrolled")
        proc_out, proc_err = enrolment.communicate(timeout=WAIT_S)
        assert enrolment.returncode == 0, proc_out + proc_err
        assert driver.find_element(By.CSS_SELECTOR, "#certs .ocsp").text == "good"
        timeline = driver.find_element(By.ID, "timeline").text
        assert "registrar.approval-approved" in timeline and "awaiting-approval → voucher-obtained" in timeline
        _shot(driver, tmp_path, "device")

        # Revoke with an RFC 5280 reason, confirmed.
        driver.find_element(By.ID, "action-revoke").click()
        Select(driver.find_element(By.ID, "reason")).select_by_value("keyCompromise")
        _submit(driver)
        assert driver.find_element(By.ID, "state").text == "revoked"
        assert driver.find_element(By.CSS_SELECTOR, "#certs .ocsp").text == "revoked"
        assert "keyCompromise" in driver.find_element(By.ID, "certs").text

        # Readable on a phone: nothing wider than the screen (no sideways scrolling).
        driver.set_window_size(390, 844)
        overflow = driver.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"device page is {overflow}px wider than a phone screen"
        _shot(driver, tmp_path, "phone", width=390)
        driver.set_window_size(1280, 1000)

        # Sortable tables: a keyboard user sorts the timeline by outcome.
        header = driver.find_element(By.CSS_SELECTOR, "#timeline thead th:nth-child(3) button")
        header.send_keys("\n")
        assert driver.find_element(By.CSS_SELECTOR, "#timeline thead th:nth-child(3)").get_attribute("aria-sort") == "ascending"

        driver.get(lab.registrar_url + "/console/")
        assert "intact" not in driver.page_source  # not verified yet
        driver.get(lab.registrar_url + "/console/audit")
        _submit(driver)
        assert "intact" in driver.find_element(By.ID, "verify-result").text
        # A visitor without the certificate was refused: the dashboard groups it by check.
        assert _curl(lab, "/console/devices", cert=None)[0] == 401
        driver.get(lab.registrar_url + "/console/")
        assert "intact" in driver.find_element(By.ID, "chain").text
        assert "admin.client-cert" in driver.find_element(By.ID, "refusals").text
        _shot(driver, tmp_path, "dashboard")
        # No CSP violation or script error on the way.
        errors = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
        assert errors == [], errors
    finally:
        driver.quit()
        if enrolment.poll() is None:
            enrolment.kill()

    # openssl ocsp, against the responder the LDevID names, says revoked.
    ldevid = out / "ldevid.crt"
    text = openssl("x509", "-in", str(ldevid), "-noout", "-ocsp_uri").stdout.strip()
    assert text == f"{lab.revocation_url}/ocsp", text
    ocsp = openssl("ocsp", "-issuer", str(reg / "domain-ca.crt"), "-cert", str(ldevid), "-url", text,
                   "-CAfile", str(reg / "domain-ca.crt"))
    assert ocsp.returncode == 0, ocsp.stderr
    assert f"{ldevid}: revoked" in ocsp.stdout and "Reason: keyCompromise" in ocsp.stdout, ocsp.stdout

    # Each action is an event naming the admin, exactly as through the API.
    db = lab.db_url("registrar")
    kinds = rows(db, "SELECT kind, check_name, detail FROM events WHERE device_serial = ? AND kind LIKE 'ad%'", (serial,))
    assert ("admission.operator", "registrar.approval-approved") in [(k, c) for k, c, _ in kinds]
    revoked = [d for k, _, d in kinds if k == "admin.revoked"]
    assert len(revoked) == 1 and "CN=admin,O=brski dev domain" in str(revoked[0])


def test_forged_post_without_csrf_token_is_refused(queue_lab: Lab, tmp_path: Path) -> None:
    lab = queue_lab
    serial = lab.pledge_dirs()[0].name
    # The device exists (it asked once and was parked).
    once = tmp_path / "pledge.toml"
    once.write_text("[pledge]\nmax_voucher_attempts = 1\n")
    subprocess.run(
        [sys.executable, "-m", "brski_cli", "pledge", "enroll", "--config", str(once),
         "--dir", str(lab.pledge_dirs()[0]),
         "--registrar", lab.registrar_url, "--anchor", str(lab.certs / "manufacturer" / "root-ca.crt"),
         "--out", str(tmp_path / "p"), "--json"],
        capture_output=True, text=True, timeout=120,
    )
    db = lab.db_url("registrar")
    assert rows(db, "SELECT state FROM devices WHERE serial = ?", (serial,)) == [("awaiting-approval",)]
    # The admin's own browser would present the certificate: only the token tells a forgery.
    status, body = _curl(lab, f"/console/devices/{serial}/approve", "-d", "reason=forged")
    assert status == 403 and "console.csrf" in body
    status, body = _curl(lab, f"/console/devices/{serial}/approve", "-d", "csrf_token=00&reason=forged")
    assert status == 403 and "console.csrf" in body
    # A real token, but the browser says the request came from another site.
    _, page = _curl(lab, f"/console/devices/{serial}/approve")
    token = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    status, body = _curl(lab, f"/console/devices/{serial}/approve", "-H", "Sec-Fetch-Site: cross-site",
                         "-d", f"csrf_token={token}")
    assert status == 403 and "console.csrf" in body
    assert rows(db, "SELECT decision FROM device_approvals WHERE serial = ?", (serial,)) == [("pending",)]
    # With the token, from the console's own origin: accepted (303 back to the device page).
    status, _ = _curl(lab, f"/console/devices/{serial}/approve", "-d", f"csrf_token={token}")
    assert status == 303
    assert rows(db, "SELECT decision FROM device_approvals WHERE serial = ?", (serial,)) == [("approved",)]


def test_admin_api_approves_a_queued_device_like_the_console(queue_lab: Lab, tmp_path: Path) -> None:
    """POST /admin/v1/devices/{serial}/approve: the same action, the same event."""
    lab = queue_lab
    pledge = lab.pledge_dirs()[2]
    once = tmp_path / "pledge.toml"
    once.write_text("[pledge]\nmax_voucher_attempts = 1\n")
    subprocess.run(
        [sys.executable, "-m", "brski_cli", "pledge", "enroll", "--config", str(once), "--dir", str(pledge),
         "--registrar", lab.registrar_url, "--anchor", str(lab.certs / "manufacturer" / "root-ca.crt"),
         "--out", str(tmp_path / "p"), "--json"],
        capture_output=True, text=True, timeout=120,
    )
    db = lab.db_url("registrar")
    assert rows(db, "SELECT decision FROM device_approvals WHERE serial = ?", (pledge.name,)) == [("pending",)]
    json_args = ("-H", "Content-Type: application/json", "-H", "Accept: application/json", "-d", '{"reason": "api"}')
    status, body = _curl(lab, f"/admin/v1/devices/{pledge.name}/approve", *json_args, cert=None)
    assert status == 401 and "admin.client-cert" in body
    status, body = _curl(lab, "/admin/v1/devices/NO-SUCH/approve", *json_args)
    assert status == 404 and "admin.unknown-device" in body
    status, body = _curl(lab, f"/admin/v1/devices/{pledge.name}/approve", *json_args)
    assert status == 200 and '"decision": "approved"' in body, body
    events = rows(db, "SELECT check_name, detail FROM events WHERE device_serial = ? AND kind = 'admission.operator'",
                  (pledge.name,))
    assert [c for c, _ in events] == ["registrar.approval-approved"]
    assert "CN=admin,O=brski dev domain" in str(events[0][1])
