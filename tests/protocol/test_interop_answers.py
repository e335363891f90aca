"""What clients we did not write see: curl and ``openssl s_client`` against both servers.

* Every 401 carries ``WWW-Authenticate`` (RFC 9110 15.5.2, RFC 7030 3.2.3).
* One negotiation rule for error bodies: ``application/problem+json`` only to
  a client whose Accept names it; otherwise the same problem as UTF-8 text;
  the MASA's voucher errors always as text (RFC 8995 5.6).
* A voucher-request that is not ``proximity``, or whose
  proximity-registrar-cert is not the registrar's, is answered 401 and the
  connection is closed (RFC 8995 5.2): curl reports the close, and
  ``openssl s_client -ign_eof`` (which only ends when the server ends the
  connection) returns with the 401 in hand.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from brski.devpki import DevPki
from brski.oids import MT_PROBLEM_JSON, MT_VOUCHER_CMS_JSON
from brski.pki import cert_der
from brski.voucher import Assertion
from tests.protocol.helpers import VR
from tests.protocol.net import Identity, Net, other_manufacturer, pledge_request

pytestmark = pytest.mark.skipif(
    shutil.which("curl") is None or shutil.which("openssl") is None, reason="needs curl and openssl"
)

AUDIT = "/.well-known/brski/requestauditlog"
ENROLL = "/.well-known/est/simpleenroll"


def curl(
    net: Net,
    role: str,
    path: str,
    *,
    body: bytes | None,
    headers: dict[str, str],
    ident: Identity | None = None,
    tmp: Path,
) -> tuple[int, dict[str, str], bytes, str]:
    """One request with curl; returns status, headers (lower-case), body, curl's -v log."""
    port = net.masa_port if role == "masa" else net.registrar_port
    ca = net.path("manufacturer/root-ca.crt" if role == "masa" else "registrar/domain-ca.crt")
    head, out = tmp / "head.txt", tmp / "body.bin"
    cmd = ["curl", "-sS", "-v", "--cacert", str(ca), "-D", str(head), "-o", str(out)]
    if ident is not None:
        assert ident.pem_path is not None and ident.key_path is not None
        cmd += ["--cert", str(ident.pem_path), "--key", str(ident.key_path)]
    for k, v in headers.items():
        cmd += ["-H", f"{k}: {v}" if v else f"{k}:"]
    if body is not None:
        (tmp / "req.bin").write_bytes(body)
        cmd += ["--data-binary", f"@{tmp / 'req.bin'}"]
    cmd.append(f"https://127.0.0.1:{port}{path}")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = head.read_bytes().decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            hdrs[k.strip().lower()] = v.strip()
    return status, hdrs, out.read_bytes(), proc.stderr


def _text_check(body: bytes) -> str:
    text = body.decode("utf-8")
    assert text.endswith(")\n") and "(check: " in text, text
    return text.rsplit("(check: ", 1)[1].rstrip(")\n")


@pytest.fixture(scope="module")
def stranger(net: Net, tmp_path_factory: pytest.TempPathFactory) -> DevPki:
    return other_manufacturer(tmp_path_factory.mktemp("stranger"))


# --- WWW-Authenticate on every 401 -------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "ctype", "body"),
    [
        (ENROLL, "application/pkcs10", b"MIIB"),
        (VR, MT_VOUCHER_CMS_JSON, b"x"),
        ("/.well-known/brski/enrollstatus", "application/json", b'{"version":1,"status":true}'),
    ],
    ids=["simpleenroll", "requestvoucher", "enrollstatus"],
)
def test_every_401_carries_www_authenticate(net: Net, tmp_path: Path, path: str, ctype: str, body: bytes) -> None:
    """No client certificate: 401 with the documented challenge (RFC 9110 15.5.2)."""
    status, hdrs, body, _ = curl(net, "registrar", path, body=body, headers={"Content-Type": ctype}, tmp=tmp_path)
    assert status == 401, body
    assert hdrs.get("www-authenticate") == 'TLS-Client-Certificate realm="brski"', hdrs


# --- one negotiation rule for error bodies --------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "problem_json"),
    [
        (MT_VOUCHER_CMS_JSON, False),  # "json" in the type is not a request for problem+json
        ("*/*", False),
        ("", False),
        (f"{MT_VOUCHER_CMS_JSON}, {MT_PROBLEM_JSON}", True),
        (f"{MT_PROBLEM_JSON};q=0, {MT_VOUCHER_CMS_JSON}", False),
    ],
    ids=["voucher-type", "any", "none", "problem-json", "problem-json-q0"],
)
def test_registrar_voucher_refusals_negotiate_alike(net: Net, tmp_path: Path, accept: str, problem_json: bool) -> None:
    """415, 400 and 401 on the voucher route take the same form for the same Accept."""
    me = net.pledge(net.fresh_serial())
    good = pledge_request(net, me)
    cases = [
        ({"Content-Type": "text/plain"}, good, 415, "http.content-type"),
        ({"Content-Type": MT_VOUCHER_CMS_JSON}, b"\x30\x03garbage", 400, None),
        ({"Content-Type": MT_VOUCHER_CMS_JSON}, pledge_request(net, me, assertion=Assertion.LOGGED), 401,
         "pledge-request.assertion"),
    ]
    for headers, body, want_status, want_check in cases:
        status, hdrs, got, _ = curl(net, "registrar", VR, body=body, headers={**headers, "Accept": accept},
                                    ident=me, tmp=tmp_path)
        assert status == want_status, got
        ctype = hdrs["content-type"].split(";")[0]
        if problem_json:
            assert ctype == MT_PROBLEM_JSON, hdrs
            doc = json.loads(got)
            check = doc["check"]
            assert {"title", "detail", "status"} <= doc.keys() and doc["status"] == want_status
        else:
            assert hdrs["content-type"] == "text/plain; charset=utf-8", hdrs
            check = _text_check(got)
        if want_check is not None:
            assert check == want_check


@pytest.mark.parametrize("accept", [MT_VOUCHER_CMS_JSON, f"{MT_VOUCHER_CMS_JSON}, {MT_PROBLEM_JSON}", "*/*"])
def test_masa_voucher_errors_are_always_plain_text(net: Net, tmp_path: Path, accept: str) -> None:
    """RFC 8995 5.6: the MASA's voucher error is plaintext, whatever the Accept."""
    status, hdrs, body, _ = curl(
        net, "masa", VR, body=b"\x30\x03garbage",
        headers={"Content-Type": MT_VOUCHER_CMS_JSON, "Accept": accept}, tmp=tmp_path,
    )
    assert status == 400
    assert hdrs["content-type"] == "text/plain; charset=utf-8", hdrs
    assert _text_check(body).startswith(("asn1.", "cms."))


def test_masa_other_errors_follow_the_rule(net: Net, tmp_path: Path) -> None:
    """The audit-log route is no voucher answer: problem+json when asked for."""
    headers = {"Content-Type": MT_VOUCHER_CMS_JSON}
    status, hdrs, body, _ = curl(net, "masa", AUDIT, body=b"\x30\x03garbage",
                                 headers={**headers, "Accept": MT_PROBLEM_JSON}, tmp=tmp_path)
    assert status == 400 and hdrs["content-type"] == MT_PROBLEM_JSON, (hdrs, body)
    status, hdrs, body, _ = curl(net, "masa", AUDIT, body=b"\x30\x03garbage",
                                 headers={**headers, "Accept": "application/json"}, tmp=tmp_path)
    assert status == 400 and hdrs["content-type"] == "text/plain; charset=utf-8", (hdrs, body)


# --- RFC 8995 5.2: 401, then the connection is closed --------------------------------------


def _wrong_requests(net: Net, me: Identity, stranger: DevPki) -> dict[str, bytes]:
    return {
        "assertion-not-proximity": pledge_request(net, me, assertion=Assertion.LOGGED),
        "foreign-proximity-cert": pledge_request(net, me, proximity=cert_der(stranger.cert("registrar/tls.crt"))),
    }


@pytest.mark.parametrize("case", ["assertion-not-proximity", "foreign-proximity-cert"])
def test_proximity_refusal_is_401_and_curl_sees_the_close(net: Net, stranger: DevPki, tmp_path: Path, case: str) -> None:
    me = net.pledge(net.fresh_serial())
    body = _wrong_requests(net, me, stranger)[case]
    status, hdrs, got, log = curl(net, "registrar", VR, body=body,
                                  headers={"Content-Type": MT_VOUCHER_CMS_JSON, "Accept": MT_VOUCHER_CMS_JSON},
                                  ident=me, tmp=tmp_path)
    assert status == 401, got
    assert hdrs.get("connection") == "close" and "www-authenticate" in hdrs, hdrs
    # curl's -v log says whether it kept the connection for reuse.
    assert "left intact" not in log and ("Closing connection" in log or "shutting down connection" in log), log


@pytest.mark.parametrize("case", ["assertion-not-proximity", "foreign-proximity-cert"])
def test_proximity_refusal_closes_the_connection_for_openssl(
    net: Net, stranger: DevPki, tmp_path: Path, case: str
) -> None:
    """``s_client -ign_eof`` returns only when the server ends the connection."""
    serial = net.fresh_serial()
    me = net.pledge(serial)
    body = _wrong_requests(net, me, stranger)[case]
    request = (
        f"POST {VR} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {MT_VOUCHER_CMS_JSON}\r\n"
        f"Accept: {MT_VOUCHER_CMS_JSON}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    proc = subprocess.run(
        [
            "openssl", "s_client", "-quiet", "-ign_eof", "-connect", f"127.0.0.1:{net.registrar_port}",
            "-CAfile", str(net.path("registrar/domain-ca.crt")),
            "-cert", str(net.path(f"pledges/{serial}/idevid.crt")),
            "-cert_chain", str(net.path(f"pledges/{serial}/chain.pem")),
            "-key", str(net.path(f"pledges/{serial}/idevid.key")),
        ],
        input=request, capture_output=True, timeout=60,  # a connection left open ends in TimeoutExpired
    )
    assert proc.stdout.startswith(b"HTTP/1.1 401 "), (proc.stdout[:300], proc.stderr[-500:])
    assert b"\r\nConnection: close\r\n" in proc.stdout


# --- a voucher-request as base64 text (NIST SP 1800-36 Build 5 pledges) --------------------


@pytest.mark.parametrize("wrap", [False, True], ids=["one-line", "wrapped-76"])
def test_base64_voucher_request_is_refused_by_name(net: Net, tmp_path: Path, wrap: bool) -> None:
    """RFC 8366 8.3: CMS vouchers are DER; base64 text is named, not a DER length error."""
    me = net.pledge(net.fresh_serial())
    text = base64.b64encode(pledge_request(net, me))
    if wrap:
        text = b"\r\n".join(text[i : i + 76] for i in range(0, len(text), 76)) + b"\r\n"
    before = net.count("registrar", "voucher_requests")
    status, _, got, _ = curl(net, "registrar", VR, body=text,
                                headers={"Content-Type": MT_VOUCHER_CMS_JSON, "Accept": MT_VOUCHER_CMS_JSON},
                                ident=me, tmp=tmp_path)
    assert status == 400, got
    assert _text_check(got) == "pledge-request.base64-body"
    assert b"RFC 8366 section 8.3" in got and b"DER" in got
    assert net.count("registrar", "voucher_requests") == before
    assert net.last_event("registrar")[1:3] == ("refuse", "pledge-request.base64-body")
