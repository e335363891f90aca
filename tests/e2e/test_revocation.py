"""End to end: the LDevID lifecycle with real clients.

Revocation is checked with ``openssl verify -crl_check`` against the CRL
fetched from the distribution point written into the LDevID, and with
``openssl ocsp`` against the responder named in its AIA, before and after an
admin revokes the device through the admin HTTPS API. Every issued LDevID,
the CRL and an OCSP response go through pkilint. Renewal (same key and new
key), decommission and re-onboarding run through the pledge CLI.
"""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from brski_cli.lab import Lab
from tests.e2e.labtools import enroll, openssl, pledge_dirs, rows

PKILINT_BAD = {"ERROR", "FATAL"}


def _urls(cert_path: Path) -> tuple[str, str]:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    dp = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    crl = dp[0].full_name[0].value
    ocsp = next(a.access_location.value for a in aia if a.access_method.dotted_string == "1.3.6.1.5.5.7.48.1")
    return crl, ocsp


def _fetch_crl(url: str, tmp: Path, name: str) -> Path:
    assert url.startswith("http://"), url  # plain HTTP, RFC 5280 4.2.1.13
    with urllib.request.urlopen(url, timeout=30) as resp:
        assert resp.headers["Content-Type"] == "application/pkix-crl"
        der = resp.read()
    (tmp / f"{name}.der").write_bytes(der)
    pem = tmp / f"{name}.pem"
    conv = openssl("crl", "-inform", "DER", "-in", str(tmp / f"{name}.der"), "-out", str(pem))
    assert conv.returncode == 0, conv.stderr
    return pem


def _verify_crl(ca: Path, crl: Path, cert: Path) -> subprocess.CompletedProcess[str]:
    return openssl("verify", "-crl_check", "-CAfile", str(ca), "-CRLfile", str(crl), str(cert))


def _ocsp(ca: Path, cert: Path, url: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    return openssl(
        "ocsp", "-issuer", str(ca), "-cert", str(cert), "-url", url, "-CAfile", str(ca),
        "-respout", str(tmp / "ocsp-response.der"),
    )


def _admin(lab: Lab, method: str, path: str, body: dict[str, Any] | None = None,
           *, cert: Path | None = None, key: Path | None = None) -> tuple[int, dict[str, Any]]:
    ctx = ssl.create_default_context(cafile=str(lab.certs / "registrar" / "domain-ca.crt"))
    if cert is not None and key is not None:
        ctx.load_cert_chain(str(cert), str(key))
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        lab.registrar_url + path, data=data, method=method,
        headers={"Content-Type": "application/json", "Accept": "application/json, application/problem+json"},
    )
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def _as_admin(lab: Lab, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    d = lab.certs / "registrar"
    return _admin(lab, method, path, body, cert=d / "admin.crt", key=d / "admin.key")


def _pkilint(kind: str, path: Path, *extra: str) -> list[str]:
    tool = Path(sys.executable).parent / kind
    if not tool.exists():
        pytest.fail(f"{kind} not installed: pip install pkilint (it is in the test extra)")
    proc = subprocess.run([str(tool), "lint", *extra, "-s", "ALL", "-f", "JSON", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.stdout, proc.stderr
    findings = [
        f"{r['validator']} @ {r['node_path']}: {f['severity']} {f['code']} {f.get('message') or ''}"
        for r in json.loads(proc.stdout)["results"] for f in r["finding_descriptions"]
    ]
    return [f for f in findings if f.split(": ", 1)[1].split(" ", 1)[0] in PKILINT_BAD]


def _reenroll(lab: Lab, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "brski_cli", "pledge", "reenroll", "--registrar", lab.registrar_url,
         "--ldevid", str(out / "ldevid.crt"), "--ldevid-key", str(out / "ldevid.key"),
         "--out", str(out), "--json", *extra],
        capture_output=True, text=True, timeout=120,
    )


def test_revocation_is_published_by_crl_and_ocsp_and_enforced(lab: Lab, tmp_path: Path) -> None:
    ca = lab.certs / "registrar" / "domain-ca.crt"
    pledge = pledge_dirs(lab)[0]
    out = tmp_path / pledge.name
    proc = enroll(lab, pledge, out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ldevid = out / "ldevid.crt"
    crl_url, ocsp_url = _urls(ldevid)
    assert crl_url == f"{lab.revocation_url}/crl" and ocsp_url == f"{lab.revocation_url}/ocsp"

    # pkilint (RFC 5280 profile) over what the registrar issued: no error, no fatal.
    assert _pkilint("lint_pkix_cert", ldevid) == []

    # Before revocation: openssl accepts the LDevID with the CRL, OCSP says good.
    crl = _fetch_crl(crl_url, tmp_path, "crl-before")
    before = _verify_crl(ca, crl, ldevid)
    print("openssl verify -crl_check (before):", before.stdout.strip(), before.stderr.strip())
    assert before.returncode == 0 and ": OK" in before.stdout, before.stdout + before.stderr
    assert _pkilint("lint_crl", tmp_path / "crl-before.der", "-t", "CRL", "-p", "PKIX") == []
    good = _ocsp(ca, ldevid, ocsp_url, tmp_path)
    print("openssl ocsp (before):", good.stdout.strip(), good.stderr.strip())
    assert good.returncode == 0, good.stderr
    assert f"{ldevid}: good" in good.stdout and "Response verify OK" in good.stderr
    assert _pkilint("lint_ocsp_response", tmp_path / "ocsp-response.der") == []

    # The admin revokes the device over the admin API.
    status, body = _as_admin(lab, "POST", f"/admin/v1/devices/{pledge.name}/revoke", {"reason": "keyCompromise"})
    assert status == 200, body
    assert body["device"]["state"] == "revoked"
    assert [c["state"] for c in body["revoked"]] == ["revoked"]

    # After: the CRL served at the DP lists it, openssl refuses, OCSP says revoked.
    crl = _fetch_crl(crl_url, tmp_path, "crl-after")
    after = _verify_crl(ca, crl, ldevid)
    print("openssl verify -crl_check (after):", after.stdout.strip(), after.stderr.strip())
    assert after.returncode != 0 and "certificate revoked" in after.stdout + after.stderr
    text = openssl("crl", "-in", str(crl), "-noout", "-text").stdout
    assert "Key Compromise" in text and "X509v3 CRL Number" in text and "Authority Key Identifier" in text
    assert _pkilint("lint_crl", tmp_path / "crl-after.der", "-t", "CRL", "-p", "PKIX") == []
    revoked = _ocsp(ca, ldevid, ocsp_url, tmp_path)
    print("openssl ocsp (after):", revoked.stdout.strip(), revoked.stderr.strip())
    assert f"{ldevid}: revoked" in revoked.stdout and "Response verify OK" in revoked.stderr
    assert "Reason: keyCompromise" in revoked.stdout
    # RFC 6960 A.1 GET form: {url}/{url-encoded base64 of the DER request}.
    req = openssl("ocsp", "-issuer", str(ca), "-cert", str(ldevid), "-reqout", str(tmp_path / "req.der"), "-no_nonce")
    assert req.returncode == 0, req.stderr
    b64 = urllib.parse.quote(base64.b64encode((tmp_path / "req.der").read_bytes()).decode(), safe="")
    with urllib.request.urlopen(f"{ocsp_url}/{b64}", timeout=30) as resp:
        assert resp.headers["Content-Type"] == "application/ocsp-response"
        (tmp_path / "get.der").write_bytes(resp.read())
    shown = openssl("ocsp", "-respin", str(tmp_path / "get.der"), "-issuer", str(ca), "-cert", str(ldevid),
                    "-CAfile", str(ca), "-no_nonce")
    assert f"{ldevid}: revoked" in shown.stdout and "Response verify OK" in shown.stderr, shown.stdout + shown.stderr
    assert _pkilint("lint_ocsp_response", tmp_path / "ocsp-response.der") == []

    # /simplereenroll refuses the revoked LDevID; the admin API shows it revoked.
    again = _reenroll(lab, out, "--new-key")
    assert again.returncode == 1 and "ldevid.revoked" in again.stdout, again.stdout + again.stderr
    status, device = _as_admin(lab, "GET", f"/admin/v1/devices/{pledge.name}")
    assert status == 200 and device["state"] == "revoked"
    assert [c["state"] for c in device["certificates"]] == ["revoked"]
    assert device["certificates"][0]["revocation_reason"] == "keyCompromise"
    assert [t["to"] for t in device["transitions"]][-1] == "revoked"
    # A revoked device stays out until decommissioned (policy decision, recorded).
    refused = enroll(lab, pledge, tmp_path / "retry")
    assert refused.returncode == 1 and "registrar.device-revoked" in refused.stdout, refused.stdout
    # Every admin action is an event naming the admin.
    kinds = rows(lab.db_url("registrar"), "SELECT kind, detail FROM events WHERE kind LIKE 'admin.%'")
    assert {"admin.revoked", "admin.device-shown"} <= {k for k, _ in kinds}
    assert all("CN=admin" in str(d) for _, d in kinds)


def test_admin_api_authentication_listing_and_problems(lab: Lab, tmp_path: Path) -> None:
    status, problem = _admin(lab, "GET", "/admin/v1/devices")
    assert status == 401 and problem["check"] == "admin.client-cert"
    p = pledge_dirs(lab)[1]
    status, problem = _admin(lab, "GET", "/admin/v1/devices", cert=p / "idevid.crt", key=p / "idevid.key")
    assert status == 403 and problem["check"] == "admin.chain"
    # A device's LDevID is never an admin credential.
    out = tmp_path / "dev"
    assert enroll(lab, p, out).returncode == 0
    status, problem = _admin(lab, "GET", "/admin/v1/devices", cert=out / "ldevid.crt", key=out / "ldevid.key")
    assert status == 403 and problem["check"] == "admin.device-cert"
    # Paging: limit 1 walks every device exactly once.
    seen: list[str] = []
    after: str | None = None
    while True:
        q = "/admin/v1/devices?limit=1" + (f"&after={after}" if after else "")
        status, page = _as_admin(lab, "GET", q)
        assert status == 200, page
        seen += [d["serial"] for d in page["devices"]]
        after = page["next_after"]
        if after is None:
            break
    assert seen == sorted(set(seen)) and len(seen) >= 2
    status, page = _as_admin(lab, "GET", "/admin/v1/devices?state=enrolled")
    assert status == 200 and all(d["state"] == "enrolled" for d in page["devices"])
    status, problem = _as_admin(lab, "GET", "/admin/v1/devices?limit=0")
    assert status == 400 and problem["check"] == "admin.query"
    status, problem = _as_admin(lab, "GET", "/admin/v1/devices/NO-SUCH")
    assert status == 404 and problem["check"] == "admin.unknown-device"
    status, report = _as_admin(lab, "GET", "/admin/v1/audit/verify")
    assert status == 200 and report["ok"] is True


def test_renewal_same_key_and_new_key(lab: Lab, tmp_path: Path) -> None:
    pledge = pledge_dirs(lab)[2]
    out = tmp_path / "renew"
    assert enroll(lab, pledge, out).returncode == 0
    first = x509.load_pem_x509_certificate((out / "ldevid.crt").read_bytes())
    (tmp_path / "first.crt").write_bytes((out / "ldevid.crt").read_bytes())
    (tmp_path / "first.key").write_bytes((out / "ldevid.key").read_bytes())
    # Not due yet: --if-older-than skips without contacting the registrar.
    skip = _reenroll(lab, out, "--if-older-than", "0.5")
    assert skip.returncode == 0 and json.loads(skip.stdout)["renewed"] is False, skip.stdout + skip.stderr
    # Same key (RFC 7030 4.2.2 renew).
    same = _reenroll(lab, out)
    assert same.returncode == 0, same.stdout + same.stderr
    second = x509.load_pem_x509_certificate((out / "ldevid.crt").read_bytes())
    assert second.public_key() == first.public_key() and second.serial_number != first.serial_number
    assert _pkilint("lint_pkix_cert", out / "ldevid.crt") == []
    # The old certificate cannot be renewed with its key a second time.
    old = tmp_path / "old"
    old.mkdir()
    for name in ("ldevid.crt", "ldevid.key"):
        (old / name).write_bytes((tmp_path / ("first" + Path(name).suffix)).read_bytes())
    (old / "domain-ca.pem").write_bytes((out / "domain-ca.pem").read_bytes())
    twice = _reenroll(lab, old)
    assert twice.returncode == 1 and "est.already-renewed" in twice.stdout, twice.stdout
    # New key (rekey).
    rekey = _reenroll(lab, out, "--new-key")
    assert rekey.returncode == 0, rekey.stdout + rekey.stderr
    third = x509.load_pem_x509_certificate((out / "ldevid.crt").read_bytes())
    assert third.public_key() != second.public_key()
    db = lab.db_url("registrar")
    states = [r[0] for r in rows(db, "SELECT to_state FROM device_transitions WHERE serial = ? ORDER BY id", (pledge.name,))]
    assert states[-2:] == ["renewed", "renewed"]
    renews = rows(db, "SELECT renews FROM certificates WHERE cert_serial = ?", (format(second.serial_number, "x"),))
    assert renews == [(format(first.serial_number, "x"),)]


def test_decommission_then_factory_reset_onboards_with_a_new_ldevid(lab: Lab, tmp_path: Path) -> None:
    pledge = pledge_dirs(lab)[1]
    out = tmp_path / "first"
    assert enroll(lab, pledge, out).returncode == 0
    proc = subprocess.run(
        [sys.executable, "-m", "brski_cli", "registrar", "devices", "decommission", pledge.name,
         "--config", str(lab.workdir / "registrar.toml")],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["device"]["state"] == "decommissioned" and result["revoked"]
    assert all(c["revocation_reason"] == "cessationOfOperation" for c in result["revoked"])
    # The running registrar publishes the CLI's revocation at the next CRL fetch.
    crl_url, ocsp_url = _urls(out / "ldevid.crt")
    ca = lab.certs / "registrar" / "domain-ca.crt"
    crl = _fetch_crl(crl_url, tmp_path, "crl")
    refused = _verify_crl(ca, crl, out / "ldevid.crt")
    assert refused.returncode != 0 and "certificate revoked" in refused.stdout + refused.stderr
    assert f"{out / 'ldevid.crt'}: revoked" in _ocsp(ca, out / "ldevid.crt", ocsp_url, tmp_path).stdout
    # Factory reset: BRSKI again with the IDevID; default policy lets it back, new LDevID.
    again = enroll(lab, pledge, tmp_path / "second")
    assert again.returncode == 0, again.stdout + again.stderr
    old = x509.load_pem_x509_certificate((out / "ldevid.crt").read_bytes())
    new = x509.load_pem_x509_certificate((tmp_path / "second" / "ldevid.crt").read_bytes())
    assert new.serial_number != old.serial_number and new.public_key() != old.public_key()
    states = [r[0] for r in rows(lab.db_url("registrar"),
                                 "SELECT to_state FROM device_transitions WHERE serial = ? ORDER BY id", (pledge.name,))]
    i = states.index("decommissioned")
    assert states[i:i + 4] == ["decommissioned", "discovered", "voucher-obtained", "enrolled"]
    kinds = {r[0] for r in rows(lab.db_url("registrar"), "SELECT kind FROM events WHERE device_serial = ?", (pledge.name,))}
    assert {"device.decommissioned", "credential.revoked", "policy.reonboard", "credential.issued"} <= kinds
    verify = subprocess.run(
        [sys.executable, "-m", "brski_cli", "registrar", "audit", "verify", "--config", str(lab.workdir / "registrar.toml")],
        capture_output=True, text=True, timeout=60,
    )
    assert verify.returncode == 0 and "intact" in verify.stdout, verify.stdout + verify.stderr
