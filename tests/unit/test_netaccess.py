"""The network-access decision and the RFC 5176 codec, in process."""

from __future__ import annotations

import hashlib
import hmac
import struct
from pathlib import Path

import pytest

from brski.errors import ConfigError, MalformedInput, SignatureInvalid
from brski.netaccess import AccessPolicy, network_access
from brski.radius import DisconnectRequest, decode_response

POLICY = AccessPolicy(denied_classes=frozenset({"quarantine"}))


@pytest.mark.parametrize(
    ("known", "cert", "state", "cls", "policy", "rule"),
    [
        (False, None, None, "default", POLICY, "netaccess.certificate-unknown"),
        (True, "revoked", "enrolled", "default", POLICY, "netaccess.certificate-revoked"),
        (True, "reserved", "enrolled", "default", POLICY, "netaccess.certificate-not-issued"),
        (True, "issued", "decommissioned", "default", POLICY, "netaccess.device-decommissioned"),
        (True, "issued", "revoked", "default", POLICY, "netaccess.device-revoked"),
        (True, "issued", "voucher-obtained", "default", POLICY, "netaccess.device-voucher-obtained"),
        (True, "issued", "enrolled", "quarantine", POLICY, "netaccess.class-denied"),
        (True, "issued", "enrolled", "camera", AccessPolicy(allowed_classes=frozenset({"sensor"})),
         "netaccess.class-not-allowed"),
        (True, "issued", "enrolled", "sensor", AccessPolicy(allowed_classes=frozenset({"sensor"})), "netaccess.allowed"),
        (True, "issued", "renewed", "default", POLICY, "netaccess.allowed"),
    ],
)
def test_decision_rules(known: bool, cert: str | None, state: str | None, cls: str, policy: AccessPolicy,
                        rule: str) -> None:
    d = network_access(cert_known=known, cert_state=cert, device_state=state, device_class=cls, policy=policy)
    assert d.rule == rule
    assert d.allow == (rule == "netaccess.allowed")


def test_policy_validates_class_names() -> None:
    with pytest.raises(ConfigError):
        AccessPolicy(allowed_classes=frozenset({"a b"}))
    with pytest.raises(ConfigError):
        AccessPolicy(allowed_classes=frozenset({"x"}), denied_classes=frozenset({"x"}))


SECRET = b"s3cret"


def _request() -> DisconnectRequest:
    return DisconnectRequest(identifier=7, event_timestamp=1_800_000_000, calling_station_id="02-00-00-00-00-01",
                             nas_ip_address="10.0.0.2")


def test_request_digests_follow_rfc5176() -> None:
    packet, auth = _request().encode(SECRET)
    code, ident, length = struct.unpack("!BBH", packet[:4])
    assert (code, ident, length) == (40, 7, len(packet))
    attrs = packet[20:]
    # Request Authenticator: MD5 over the packet with 16 zero octets in its place.
    assert hashlib.md5(packet[:4] + bytes(16) + attrs + SECRET).digest() == auth == packet[4:20]
    found, i = {}, 0
    while i < len(attrs):
        found[attrs[i]] = (20 + i + 2, attrs[i + 2 : i + attrs[i + 1]])
        i += attrs[i + 1]
    assert found[55][1] == struct.pack("!I", 1_800_000_000)  # Event-Timestamp
    assert found[31][1] == b"02-00-00-00-00-01"
    at, mac = found[80]
    zeroed = packet[:4] + bytes(16) + packet[20:at] + bytes(16) + packet[at + 16 :]
    assert hmac.new(SECRET, zeroed, hashlib.md5).digest() == mac


def test_request_needs_a_session_identifier_and_ipv4() -> None:
    with pytest.raises(MalformedInput) as e:
        DisconnectRequest(identifier=1, event_timestamp=1)
    assert e.value.check == "radius.session-identification"
    with pytest.raises(MalformedInput):
        DisconnectRequest(identifier=1, event_timestamp=1, user_name="x", nas_ip_address="::1").encode(SECRET)


def _answer(code: int, ident: int, req_auth: bytes, body: bytes = b"", secret: bytes = SECRET) -> bytes:
    head = struct.pack("!BBH", code, ident, 20 + len(body))
    return head + hashlib.md5(head + req_auth + body + secret).digest() + body


def test_response_ack_nak_and_forgeries() -> None:
    _, auth = _request().encode(SECRET)
    assert decode_response(_answer(41, 7, auth), secret=SECRET, request_authenticator=auth, identifier=7).acked
    nak = decode_response(_answer(42, 7, auth, bytes((101, 6)) + struct.pack("!I", 503)), secret=SECRET,
                          request_authenticator=auth, identifier=7)
    assert not nak.acked and nak.error_cause == 503 and nak.error_text == "503 Session Context Not Found"
    with pytest.raises(SignatureInvalid):
        decode_response(_answer(41, 7, auth, secret=b"other"), secret=SECRET, request_authenticator=auth, identifier=7)
    with pytest.raises(MalformedInput) as e:
        decode_response(_answer(41, 8, auth), secret=SECRET, request_authenticator=auth, identifier=7)
    assert e.value.check == "radius.identifier"
    with pytest.raises(MalformedInput):
        decode_response(_answer(41, 7, auth, bytes((101, 9, 0))), secret=SECRET, request_authenticator=auth, identifier=7)
    # A Message-Authenticator in the answer must verify too.
    body = bytes((80, 18)) + bytes(16)
    head = struct.pack("!BBH", 41, 7, 20 + len(body))
    mac = hmac.new(SECRET, head + auth + body, hashlib.md5).digest()
    good = body[:2] + mac
    pkt = head + hashlib.md5(head + auth + good + SECRET).digest() + good
    assert decode_response(pkt, secret=SECRET, request_authenticator=auth, identifier=7).acked
    bad = body[:2] + bytes(15) + b"\x01"
    pkt = head + hashlib.md5(head + auth + bad + SECRET).digest() + bad
    with pytest.raises(SignatureInvalid):
        decode_response(pkt, secret=SECRET, request_authenticator=auth, identifier=7)


def test_network_access_config(tmp_path: Path) -> None:
    from registrar.netaccess import parse_network_access

    (tmp_path / "das.secret").write_text("from-file\n")
    cfg = parse_network_access({
        "radius_subjects": ["CN=radius"], "das_secret_file": "das.secret", "denied_classes": ["q"],
        "das_endpoints": {"edge-1": "10.0.0.2:3800"}, "mud_failure": "default", "mud_default_rules": ["accept"],
    }, tmp_path)
    assert cfg.enabled and cfg.das_secret == b"from-file" and cfg.policy.denied_classes == {"q"}
    assert cfg.das_endpoints == {"edge-1": "10.0.0.2:3800"} and cfg.mud_default_rules == ("accept",)
    assert not parse_network_access(None, tmp_path).enabled
    for bad, check in (
        ({"radius_subjects": ["CN=r"], "typo": 1}, "config.unknown-key"),
        ({}, "config.netaccess-clients"),
        ({"radius_subjects": ["CN=r"], "das_endpoints": {"e": "[::1]:3799"}}, "config.netaccess-das"),
        ({"radius_subjects": ["CN=r"], "mud_failure": "allow"}, "config.netaccess-mud"),
        ({"radius_subjects": ["CN=r"], "das_attempts": 0}, "config.netaccess-das"),
    ):
        with pytest.raises(ConfigError) as e:
            parse_network_access(bad, tmp_path)
        assert e.value.check == check, bad


def test_mud_gate_follows_the_failure_policy() -> None:
    from brski.netaccess import mud_gate

    assert mud_gate(mud_url=None, profile_ok=False, failure_policy="deny").rule == "netaccess.mud-none"
    assert mud_gate(mud_url="https://m/x.json", profile_ok=True, failure_policy="deny").allow
    denied = mud_gate(mud_url="https://m/x.json", profile_ok=False, failure_policy="deny", problem="mud.unreachable")
    assert (denied.allow, denied.rule) == (False, "netaccess.mud-unavailable") and "mud.unreachable" in denied.detail
    default = mud_gate(mud_url="https://m/x.json", profile_ok=False, failure_policy="default")
    assert (default.allow, default.rule) == (True, "netaccess.mud-default-profile")
