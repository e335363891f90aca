"""The registrar as 802.1X policy decision point and RFC 5176 client, over real TLS.

The RADIUS server's calls are made the way rlm_rest makes them (JSON body of
attributes, a client certificate of the domain CA); the authenticator's DAS
is a UDP socket in this test that checks the Disconnect-Request with its own
RFC 5176 arithmetic (not brski.radius) and answers like hostapd.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import struct
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.protocol.net import Identity, Net, running_net

SECRET = b"das-test-secret"
RADIUS_SUBJECT = "CN=radius,O=brski dev domain"


class FakeDas:
    """A DAS on loopback: drops the first ``drop`` requests, then ACKs."""

    def __init__(self, drop: int = 0) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.drop = drop
        self.requests: list[dict[str, Any]] = []
        self.answer = True
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while True:
            try:
                data, addr = self.sock.recvfrom(4096)
            except OSError:
                return
            code, ident, length = struct.unpack("!BBH", data[:4])
            auth, attrs = data[4:20], data[20:length]
            # RFC 5176 3.5: Request Authenticator over the packet with 16 zero octets.
            ok_auth = hashlib.md5(data[:4] + bytes(16) + attrs + SECRET).digest() == auth
            parsed: dict[int, bytes] = {}
            i, ma_at = 0, -1
            while i < len(attrs):
                t, n = attrs[i], attrs[i + 1]
                parsed[t] = attrs[i + 2 : i + n]
                if t == 80:
                    ma_at = 20 + i + 2
                i += n
            zeroed = data[:4] + bytes(16) + data[20:ma_at] + bytes(16) + data[ma_at + 16 :]
            ok_ma = ma_at > 0 and hmac.new(SECRET, zeroed, hashlib.md5).digest() == parsed[80]
            self.requests.append({"code": code, "id": ident, "auth_ok": ok_auth, "ma_ok": ok_ma, "attrs": parsed})
            if self.drop > 0:
                self.drop -= 1
                continue
            rcode = 41 if self.answer else 42
            body = b"" if self.answer else bytes((101, 6)) + struct.pack("!I", 503)
            head = struct.pack("!BBH", rcode, ident, 20 + len(body))
            self.sock.sendto(head + hashlib.md5(head + auth + body + SECRET).digest() + body, addr)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def das() -> Iterator[FakeDas]:
    d = FakeDas()
    yield d
    d.close()


@pytest.fixture(scope="module")
def net(
    tmp_path_factory: pytest.TempPathFactory, das: FakeDas, engine: str, request: pytest.FixtureRequest
) -> Iterator[Net]:
    with running_net(
        tmp_path_factory.mktemp("netaccess"),
        engine,
        request,
        pledges=8,
        registrar={
            "admin_subjects": ["CN=admin,O=brski dev domain"],
            "network_access": {
                "radius_subjects": [RADIUS_SUBJECT],
                "das_secret": SECRET.decode(),
                "das_port": das.port,
                "das_timeout_s": 0.2,
                "denied_classes": ["quarantine"],
                "assurance_interval_s": 3600,  # these tests trigger enforcement explicitly
            },
        },
    ) as n:
        yield n


def ident(net: Net, name: str) -> Identity:
    return Identity(label=name, cert=None, key=None, pem_path=net.path(f"registrar/{name}.crt"),
                    key_path=net.path(f"registrar/{name}.key"))


def rest_body(cert_serial: int | None, mac: str, **extra: str) -> bytes:
    """What rlm_rest sends with body = 'json'."""
    attrs: dict[str, Any] = {
        "NAS-IP-Address": {"type": "ipaddr", "value": ["127.0.0.1"]},
        "NAS-Identifier": {"type": "string", "value": ["edge-1"]},
        "NAS-Port-Id": {"type": "string", "value": ["brx-e1"]},
        "Calling-Station-Id": {"type": "string", "value": [mac]},
        "User-Name": {"type": "string", "value": ["device"]},
    }
    if cert_serial is not None:
        attrs["TLS-Client-Cert-Serial"] = {"type": "string", "value": [format(cert_serial, "x")]}
    for k, v in extra.items():
        attrs[k] = {"type": "string", "value": [v]}
    return json.dumps(attrs).encode()


def post(net: Net, path: str, body: bytes, who: str = "radius") -> Any:
    return net.request("registrar", "POST", path, body=body, headers={"Content-Type": "application/json"},
                       identity=ident(net, who))


def enrolled(net: Net) -> tuple[str, int]:
    result = net.enroll()
    assert result.ok and result.ldevid is not None, result.detail
    return result.serial, result.ldevid.serial_number


def test_authorize_allows_enrolled_device_and_records_the_rule(net: Net) -> None:
    serial, cert = enrolled(net)
    reply = post(net, "/netaccess/v1/authorize", rest_body(cert, "02-00-00-00-00-01"))
    assert reply.status == 200, reply.body
    assert "netaccess.allowed" in json.loads(reply.body)["reply:Reply-Message"]
    kind, outcome, check, dev = net.last_event("registrar")
    assert (kind, outcome, check, dev) == ("netaccess.decision", "allow", "netaccess.allowed", serial)


def test_unknown_certificate_refused(net: Net) -> None:
    reply = post(net, "/netaccess/v1/authorize", rest_body(0x1234567, "02-00-00-00-00-02"))
    assert reply.status == 401  # rlm_rest: reject
    assert net.last_event("registrar")[:3] == ("netaccess.decision", "refuse", "netaccess.certificate-unknown")


@pytest.mark.parametrize("who", ["admin", None])
def test_only_the_configured_radius_client_may_ask(net: Net, who: str | None) -> None:
    _, cert = enrolled(net)
    if who is None:
        reply = net.request("registrar", "POST", "/netaccess/v1/authorize", body=rest_body(cert, "02-00-00-00-00-03"),
                            headers={"Content-Type": "application/json"})
        assert (reply.status, reply.check) == (401, "netaccess.client-cert")
    else:
        reply = post(net, "/netaccess/v1/authorize", rest_body(cert, "02-00-00-00-00-03"), who=who)
        assert (reply.status, reply.check) == (403, "netaccess.not-radius")


def test_bad_mac_is_a_problem(net: Net) -> None:
    _, cert = enrolled(net)
    reply = post(net, "/netaccess/v1/authorize", rest_body(cert, "not-a-mac"))
    assert (reply.status, reply.check) == (400, "netaccess.calling-station-id")


def _session(net: Net, mac: str) -> tuple[str, int]:
    serial, cert = enrolled(net)
    assert post(net, "/netaccess/v1/authorize", rest_body(cert, mac)).status == 200
    assert post(net, "/netaccess/v1/session", rest_body(cert, mac)).status == 204
    return serial, cert


def test_session_table_from_post_auth_and_admin_api(net: Net) -> None:
    serial, cert = _session(net, "02-00-00-00-00-04")
    reply = net.request("registrar", "GET", "/admin/v1/network/sessions", identity=ident(net, "admin"))
    rows = [s for s in json.loads(reply.body)["sessions"] if s["device"] == serial]
    assert len(rows) == 1
    assert rows[0]["mac"] == "02:00:00:00:00:04" and rows[0]["authenticator"] == "edge-1"
    assert rows[0]["port"] == "brx-e1" and rows[0]["cert_serial"] == format(cert, "x")
    shown = json.loads(net.request("registrar", "GET", f"/admin/v1/devices/{serial}", identity=ident(net, "admin")).body)
    assert [s["mac"] for s in shown["network_sessions"]] == ["02:00:00:00:00:04"]
    # Accounting-Stop ends it.
    body = rest_body(cert, "02-00-00-00-00-04", **{"Acct-Status-Type": "Stop", "Acct-Terminate-Cause": "User-Request"})
    assert post(net, "/netaccess/v1/session", body).status == 204
    assert net.rows("registrar", "SELECT end_reason FROM network_sessions WHERE device_serial = ?", (serial,)) == [
        ("accounting-stop:User-Request",)
    ]


def test_revocation_sends_disconnect_request_and_closes_the_session(net: Net, das: FakeDas) -> None:
    serial, cert = _session(net, "02-00-00-00-00-05")
    das.drop = 1  # the first Disconnect-Request is lost: the registrar must retransmit
    before = len(das.requests)
    reply = net.request("registrar", "POST", f"/admin/v1/devices/{serial}/revoke", body=b'{"reason": "keyCompromise"}',
                        headers={"Content-Type": "application/json"}, identity=ident(net, "admin"))
    assert reply.status == 200, reply.body
    net.call(_wait_sessions_closed(net, serial))
    sent = das.requests[before:]
    assert len(sent) == 2 and sent[0]["attrs"] == sent[1]["attrs"]  # a retransmission, same packet
    req = sent[0]
    assert req["code"] == 40 and req["auth_ok"] and req["ma_ok"]
    assert req["attrs"][31] == b"02-00-00-00-00-05" and 55 in req["attrs"]  # Calling-Station-Id, Event-Timestamp
    kinds = [r[0] for r in net.rows("registrar", "SELECT kind FROM events WHERE device_serial = ? ORDER BY id", (serial,))]
    assert kinds.index("netaccess.session-opened") < kinds.index("netaccess.disconnect-requested") < kinds.index("netaccess.cut-off")
    assert net.rows("registrar", "SELECT end_reason FROM network_sessions WHERE device_serial = ?", (serial,)) == [
        ("disconnected:netaccess.certificate-revoked",)
    ]
    # Re-authentication is refused by the decision point too.
    assert post(net, "/netaccess/v1/authorize", rest_body(cert, "02-00-00-00-00-05")).status == 401


def test_class_policy_change_cuts_off_and_refuses(net: Net, das: FakeDas) -> None:
    serial, cert = _session(net, "02-00-00-00-00-06")
    reply = net.request("registrar", "PUT", f"/admin/v1/devices/{serial}/class", body=b'{"class": "quarantine"}',
                        headers={"Content-Type": "application/json"}, identity=ident(net, "admin"))
    assert reply.status == 200, reply.body
    assert json.loads(reply.body)["cut_off"] == 1
    assert das.requests[-1]["attrs"][31] == b"02-00-00-00-00-06"
    reply = post(net, "/netaccess/v1/authorize", rest_body(cert, "02-00-00-00-00-06"))
    assert reply.status == 401
    assert net.last_event("registrar")[:3] == ("netaccess.decision", "refuse", "netaccess.class-denied")


async def _wait_sessions_closed(net: Net, serial: str) -> None:
    import asyncio

    from registrar.netaccess_api import NETACCESS

    assert net.registrar_app is not None
    na = net.registrar_app[NETACCESS]
    for _ in range(200):
        if not await na.store.network_sessions(device_serial=serial):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("session still open")


def test_refusals_with_curl(net: Net) -> None:
    """The same 4xx as a client we did not write sees them (curl, OpenSSL)."""
    import subprocess

    url = f"https://127.0.0.1:{net.registrar_port}/netaccess/v1/authorize"
    ca = str(net.path("registrar/domain-ca.crt"))
    base = ["curl", "-s", "-o", "-", "-w", "\n%{http_code}", "--cacert", ca, "-H", "Content-Type: application/json",
            "-H", "Accept: application/json, application/problem+json"]

    def call(*extra: str) -> tuple[int, dict[str, Any]]:
        out = subprocess.run([*base, *extra, url], capture_output=True, text=True, timeout=30).stdout
        body, _, code = out.rpartition("\n")
        return int(code), json.loads(body or "{}")

    code, problem = call("--data", "{}")
    assert (code, problem["check"]) == (401, "netaccess.client-cert")
    cert, key = str(net.path("registrar/radius.crt")), str(net.path("registrar/radius.key"))
    code, problem = call("--cert", cert, "--key", key, "--data", "not json")
    assert (code, problem["check"]) == (400, "netaccess.body")
    code, problem = call("--cert", cert, "--key", key, "--data", "{}")
    assert (code, problem["check"]) == (400, "netaccess.nas")
    code, reply = call("--cert", cert, "--key", key, "--data-binary", rest_body(0x7777, "02-00-00-00-00-09").decode())
    assert code == 401 and "netaccess.certificate-unknown" in reply["reply:Reply-Message"]
