"""MUD (RFC 8520): URL extension, detached signature, ACL -> nftables."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs7

from brski.devpki import DevPki, build_dev_pki
from brski.errors import MalformedInput, SignatureInvalid
from brski.mud import mud_url, nft_rules, parse_mud, signature_url, verify_mud

NOW = datetime(2031, 1, 1, tzinfo=UTC)
URL = "https://masa.example:8443/mud/camera.json"


def mud_file(url: str = URL, over: Mapping[str, object] | None = None) -> bytes:
    """A MUD file for URL; ``over`` replaces or adds ietf-mud:mud members."""
    doc = {
        "ietf-mud:mud": {
            "mud-version": 1, "mud-url": url, "cache-validity": 24, "is-supported": True,
            "systeminfo": "dev camera",
            "from-device-policy": {"access-lists": {"access-list": [{"name": "from4"}, {"name": "from6"}]}},
            **(over or {}),
        },
        "ietf-access-control-list:acls": {"acl": [
            {"name": "from4", "type": "ipv4-acl-type", "aces": {"ace": [
                {"name": "video", "matches": {"ipv4": {"destination-ipv4-network": "10.77.0.1/32"},
                                              "tcp": {"destination-port": {"operator": "eq", "port": 8080}}},
                 "actions": {"forwarding": "accept"}},
                {"name": "dns-name", "matches": {"ipv4": {"ietf-acldns:dst-dnsname": "cloud.example"}},
                 "actions": {"forwarding": "accept"}},
            ]}},
            {"name": "from6", "type": "ipv6-acl-type", "aces": {"ace": [
                {"name": "ntp", "matches": {"ipv6": {"destination-ipv6-network": "fd00::1/128", "protocol": 17},
                                            "udp": {"destination-port": {"operator": "eq", "port": 123}}},
                 "actions": {"forwarding": "accept"}},
            ]}},
        ]},
    }
    return json.dumps(doc, indent=1).encode()  # multi-line: CRLF canonicalisation would break it


@pytest.fixture(scope="module")
def pki() -> DevPki:
    return build_dev_pki(pledges=2, masa_url="https://masa.example:8443", now=NOW, mud_urls={"PLG-000001": URL})


def sign(pki: DevPki, data: bytes) -> bytes:
    cert = pki.cert("masa/voucher-signer.crt")
    key = pki.key("masa/voucher-signer.key")
    assert isinstance(key, ec.EllipticCurvePrivateKey)  # the dev PKI's keys are P-256
    return (
        pkcs7.PKCS7SignatureBuilder().set_data(data).add_signer(cert, key, hashes.SHA256())
        .sign(serialization.Encoding.DER, [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.NoCapabilities, pkcs7.PKCS7Options.Binary])
    )


def test_idevid_carries_the_mud_url(pki: DevPki) -> None:
    assert mud_url(pki.cert("pledges/PLG-000001/idevid.crt")) == URL
    assert mud_url(pki.cert("pledges/PLG-000002/idevid.crt")) is None


def test_signed_mud_file_becomes_nft_rules(pki: DevPki) -> None:
    data = mud_file()
    profile = verify_mud(data, sign(pki, data), url=URL, anchors=[pki.cert("manufacturer/root-ca.crt")], now=NOW)
    assert profile.device_class == "camera" and profile.cache_validity_h == 24
    assert nft_rules(profile) == ["ip daddr 10.77.0.1/32 tcp dport 8080 accept", "ip6 daddr fd00::1/128 udp dport 123 accept"]
    assert profile.skipped and "dns-name" in profile.skipped[0]  # not enforceable here: skipped, never widened
    assert profile.signer


def test_tampered_file_or_foreign_signer_refused(pki: DevPki) -> None:
    data = mud_file()
    sig = sign(pki, data)
    anchors = [pki.cert("manufacturer/root-ca.crt")]
    with pytest.raises(SignatureInvalid):
        verify_mud(data.replace(b"8080", b"8081"), sig, url=URL, anchors=anchors, now=NOW)
    with pytest.raises(SignatureInvalid) as e:
        verify_mud(data, sig, url=URL, anchors=[pki.cert("registrar/domain-ca.crt")], now=NOW)
    assert e.value.check == "mud.signer-untrusted"


def test_mud_file_rules() -> None:
    with pytest.raises(MalformedInput) as e:
        parse_mud(mud_file(), url="https://other.example/mud/camera.json")
    assert e.value.check == "mud.url-mismatch"
    with pytest.raises(MalformedInput) as e:
        parse_mud(mud_file(over={"cache-validity": 500}), url=URL)
    assert e.value.check == "mud.cache-validity"
    with pytest.raises(MalformedInput):
        parse_mud(b"not json", url=URL)
    assert signature_url(URL) == "https://masa.example:8443/mud/camera.p7s"


def test_injection_into_nft_is_impossible() -> None:
    data = json.loads(mud_file())
    ace = data["ietf-access-control-list:acls"]["acl"][0]["aces"]["ace"][0]
    ace["matches"]["ipv4"]["destination-ipv4-network"] = "10.0.0.1/32 accept; flush ruleset"
    profile = parse_mud(json.dumps(data).encode(), url=URL)
    assert all("flush" not in r for r in nft_rules(profile))
    assert any("video" in s for s in profile.skipped)
