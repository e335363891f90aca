"""Manufacturer Usage Description (RFC 8520): what a device class may reach.

Pure: bytes and certificates in, a :class:`MudProfile` and nftables rule
bodies out; the registrar fetches, the edge applies.

* The MUD URL travels in the IDevID (RFC 8520 10, id-pe-mud-url, an
  IA5String https URL); :func:`mud_url_extension` writes it (dev PKI),
  :func:`mud_url` reads it.
* The MUD file is signed by the manufacturer with a detached CMS SignedData
  (RFC 8520 13.2); :func:`verify_mud` checks the signature and that the
  signer chains to the manufacturer's anchor, then parses the file.
* Only the parts of the ACL model (RFC 8519) this edge can enforce are
  turned into rules: IPv4/IPv6 destination networks, protocol, TCP/UDP
  destination port "eq", forwarding accept/drop/reject, in the
  from-device policy. An ACE using anything else (DNS names, the MUD
  abstractions of RFC 8520 8) is skipped and listed in ``skipped``: MUD
  ACLs allow, so skipping one narrows access and never widens it.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509

from brski import oids
from brski.asn1 import encode_tlv
from brski.cms import verify_detached
from brski.errors import ChainInvalid, MalformedInput, SignatureInvalid
from brski.pki import Role, verify_chain

__all__ = [
    "MAX_MUD_FILE",
    "AclRule",
    "MudProfile",
    "device_class_from_url",
    "mud_url",
    "mud_url_extension",
    "nft_rules",
    "parse_mud",
    "signature_url",
    "verify_mud",
]

MAX_MUD_FILE = 256 * 1024
_PROTOCOLS = {1: "icmp", 6: "tcp", 17: "udp", 58: "ipv6-icmp"}
_ACTIONS = {"accept": "accept", "drop": "drop", "reject": "reject with icmpx admin-prohibited"}


def mud_url_extension(url: str) -> x509.UnrecognizedExtension:
    """id-pe-mud-url (RFC 8520 10): MUDURLSyntax ::= IA5String, an https URL."""
    _check_url(url)
    return x509.UnrecognizedExtension(oids.ID_PE_MUD_URL, encode_tlv(0x16, url.encode("ascii")))  # IA5String


def _check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.netloc or not url.isascii() or any(c.isspace() for c in url):
        raise MalformedInput(f"MUD URL {url!r} must be an https URL (RFC 8520 3.3)", check="mud.url")


def mud_url(cert: x509.Certificate) -> str | None:
    """The MUD URL an IDevID carries, or None."""
    from asn1crypto import core as asn1_core

    try:
        ext = cert.extensions.get_extension_for_oid(oids.ID_PE_MUD_URL)
    except x509.ExtensionNotFound:
        return None
    except ValueError as exc:
        raise MalformedInput(f"certificate extensions: {exc}", check="mud.url") from exc
    value = ext.value
    if not isinstance(value, x509.UnrecognizedExtension):
        raise MalformedInput("unexpected id-pe-mud-url decoding", check="mud.url")
    try:
        text = asn1_core.IA5String.load(value.value, strict=True).native
    except (ValueError, TypeError, UnicodeDecodeError) as exc:
        raise MalformedInput(f"id-pe-mud-url is not a DER IA5String: {exc}", check="mud.url") from exc
    _check_url(text)
    return str(text)


def device_class_from_url(url: str) -> str:
    """The device class a MUD URL names: its last path segment without
    ".json" (the URL identifies the model, RFC 8520 1.6)."""
    name = urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1].removesuffix(".json")
    name = re.sub(r"[^A-Za-z0-9._:-]", "-", name)[:64]
    return name or "mud"


def signature_url(url: str, mud: dict[str, Any] | None = None) -> str:
    """Where the detached signature is: the file's "mud-signature", else the
    MUD URL with ".p7s" in place of ".json" (RFC 8520 13.2)."""
    sig = (mud or {}).get("mud-signature")
    if isinstance(sig, str):
        _check_url(sig)
        return sig
    return (url[: -len(".json")] if url.endswith(".json") else url) + ".p7s"


@dataclass(frozen=True, kw_only=True)
class AclRule:
    """One from-device ACE this edge can enforce."""

    name: str
    family: str  # "ip" or "ip6"
    destination: str | None  # network, normalised
    protocol: int | None
    port: int | None
    action: str  # accept | drop | reject

    def nft(self) -> str:
        parts = []
        if self.destination:
            parts.append(f"{self.family} daddr {self.destination}")
        else:
            parts.append(f"meta nfproto {'ipv4' if self.family == 'ip' else 'ipv6'}")
        if self.protocol is not None:
            proto = _PROTOCOLS[self.protocol]
            if self.port is not None:
                parts.append(f"{proto} dport {self.port}")
            else:
                parts.append(f"meta l4proto {proto}")
        parts.append(_ACTIONS[self.action])
        return " ".join(parts)


@dataclass(frozen=True, kw_only=True)
class MudProfile:
    url: str
    cache_validity_h: int
    systeminfo: str | None
    rules: tuple[AclRule, ...]
    skipped: tuple[str, ...] = field(default_factory=tuple)
    signer: str | None = None

    @property
    def device_class(self) -> str:
        return device_class_from_url(self.url)


def nft_rules(profile: MudProfile) -> list[str]:
    """nftables rule bodies for the device's port chain (brski_netaccess.gate)."""
    return [r.nft() for r in profile.rules]


def _obj(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MalformedInput(f"MUD: {what} must be an object", check="mud.structure")
    return value


def _ace(ace: dict[str, Any], family: str) -> AclRule:
    name = str(ace.get("name", "?"))
    matches = _obj(ace.get("matches", {}), "matches")
    action = _obj(ace.get("actions", {}), "actions").get("forwarding")
    if action not in _ACTIONS:
        raise ValueError(f"forwarding {action!r}")
    unknown = set(matches) - {"ipv4", "ipv6", "tcp", "udp", "icmp"}
    if unknown:
        raise ValueError(f"matches {sorted(unknown)}")
    ip = _obj(matches.get("ipv4" if family == "ip" else "ipv6", {}), "ip matches")
    dst_key = "destination-ipv4-network" if family == "ip" else "destination-ipv6-network"
    unknown = set(ip) - {dst_key, "protocol"}
    if unknown:
        raise ValueError(f"ip matches {sorted(unknown)}")
    destination = None
    if dst_key in ip:
        net = ipaddress.ip_network(str(ip[dst_key]), strict=False)
        if (net.version == 4) != (family == "ip"):
            raise ValueError("address family")
        destination = str(net)
    protocol = ip.get("protocol")
    if protocol is not None and (not isinstance(protocol, int) or protocol not in _PROTOCOLS):
        raise ValueError(f"protocol {protocol!r}")
    port = None
    for l4, number in (("tcp", 6), ("udp", 17)):
        if l4 in matches:
            spec = _obj(matches[l4], l4)
            if set(spec) - {"destination-port"}:
                raise ValueError(f"{l4} matches {sorted(set(spec) - {'destination-port'})}")
            if protocol not in (None, number):
                raise ValueError("protocol and port match disagree")
            protocol = number
            dport = spec.get("destination-port")
            if dport is not None:
                dport = _obj(dport, "destination-port")
                if dport.get("operator", "eq") != "eq" or not isinstance(dport.get("port"), int):
                    raise ValueError("destination-port other than eq PORT")
                if not 0 <= dport["port"] <= 65535:
                    raise ValueError("port out of range")
                port = dport["port"]
    return AclRule(name=name, family=family, destination=destination, protocol=protocol, port=port, action=action)


def parse_mud(data: bytes, *, url: str) -> MudProfile:
    """Parse a MUD file fetched from ``url`` (RFC 8520 2, ACLs of RFC 8519)."""
    if len(data) > MAX_MUD_FILE:
        raise MalformedInput("MUD file too large", check="mud.size")
    try:
        doc = json.loads(data)
    except ValueError:
        raise MalformedInput("MUD file is not JSON", check="mud.json") from None
    mud = _obj(_obj(doc, "MUD file").get("ietf-mud:mud"), "ietf-mud:mud")
    if mud.get("mud-version") != 1:
        raise MalformedInput("mud-version must be 1", check="mud.version")
    if mud.get("mud-url") != url:
        # RFC 8520 3.3: the file names the URL it is served under.
        raise MalformedInput(f"mud-url {mud.get('mud-url')!r} is not the URL fetched", check="mud.url-mismatch")
    validity = mud.get("cache-validity", 48)
    if not isinstance(validity, int) or not 1 <= validity <= 168:
        raise MalformedInput("cache-validity must be 1..168 hours (RFC 8520 3.5)", check="mud.cache-validity")
    acls = {}
    for acl in _obj(doc.get("ietf-access-control-list:acls", {}), "acls").get("acl", []):
        acl = _obj(acl, "acl")
        acls[str(acl.get("name"))] = acl
    rules: list[AclRule] = []
    skipped: list[str] = []
    policy = _obj(mud.get("from-device-policy", {}), "from-device-policy")
    for ref in _obj(policy.get("access-lists", {}), "access-lists").get("access-list", []):
        acl_name = str(_obj(ref, "access-list").get("name"))
        acl = acls.get(acl_name)
        if acl is None:
            raise MalformedInput(f"from-device-policy names unknown ACL {acl_name!r}", check="mud.acl-missing")
        family = {"ipv4-acl-type": "ip", "ipv6-acl-type": "ip6"}.get(str(acl.get("type", "")).split(":")[-1])
        aces = _obj(acl.get("aces", {}), "aces").get("ace", [])
        for ace in aces if isinstance(aces, list) else []:
            ace = _obj(ace, "ace")
            if family is None:
                skipped.append(f"{acl_name}/{ace.get('name')}: ACL type {acl.get('type')!r}")
                continue
            try:
                rules.append(_ace(ace, family))
            except ValueError as exc:
                skipped.append(f"{acl_name}/{ace.get('name')}: {exc}")
    return MudProfile(
        url=url, cache_validity_h=validity,
        systeminfo=str(mud["systeminfo"]) if isinstance(mud.get("systeminfo"), str) else None,
        rules=tuple(rules), skipped=tuple(skipped),
    )


def verify_mud(
    data: bytes, signature: bytes, *, url: str, anchors: Sequence[x509.Certificate], now: datetime
) -> MudProfile:
    """RFC 8520 13.2: the detached CMS signature over the MUD file must verify
    and its signer chain to one of the manufacturer's ``anchors``."""
    signed = verify_detached(signature, data, content_types=(oids.ID_DATA,))
    try:
        verify_chain(signed.signer, intermediates=list(signed.certificates), anchors=list(anchors), now=now,
                     role=Role.MASA_SIGNER)
    except ChainInvalid as exc:
        raise SignatureInvalid(f"MUD signer does not chain to the manufacturer: {exc.detail}",
                               check="mud.signer-untrusted") from exc
    profile = parse_mud(data, url=url)
    return MudProfile(url=profile.url, cache_validity_h=profile.cache_validity_h, systeminfo=profile.systeminfo,
                      rules=profile.rules, skipped=profile.skipped, signer=signed.signer.subject.rfc4514_string())
