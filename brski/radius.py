"""RADIUS Dynamic Authorization (RFC 5176): Disconnect-Request and its answers.

A sans-IO codec: bytes in, bytes out, no sockets and no clock (the caller
passes ``event_timestamp`` and the random ``identifier``). Only what the
registrar sends as a Dynamic Authorization Client is here: a
Disconnect-Request (code 40) that identifies one session, and the
Disconnect-ACK (41) / Disconnect-NAK (42) that come back.

Why not pyrad (PyPI): it needs attribute dictionary files at run time and
draws its authenticators and identifiers inside the packet class, which
puts randomness and state in what should be a pure codec; the part we need
is six attributes and two digests, about a hundred lines, all checked
against hostapd's DAS (2.10) in the end-to-end test.

Integrity (RFC 5176 3.5 and 3.1 / RFC 3579 3.2):

* Message-Authenticator = HMAC-MD5(secret, packet) computed with the
  Authenticator field and the Message-Authenticator value set to zeros;
* then Request Authenticator = MD5(Code | Identifier | Length | 16 zero
  octets | Attributes | secret), over the packet holding that
  Message-Authenticator;
* a response's Authenticator = MD5(Code | Identifier | Length | Request
  Authenticator | Attributes | secret); its Message-Authenticator, if any,
  is the HMAC over the packet with the Request Authenticator in place.

Event-Timestamp (RFC 5176 3.3 / 6.1 replay protection) is always sent:
hostapd's ``radius_das_require_event_timestamp=1`` silently drops a request
without one, or one outside its time window.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import struct
from dataclasses import dataclass, field

from brski.errors import MalformedInput, SignatureInvalid

__all__ = [
    "ATTR",
    "CODE",
    "ERROR_CAUSES",
    "DisconnectRequest",
    "DisconnectResponse",
    "decode_response",
]

CODE = {"Disconnect-Request": 40, "Disconnect-ACK": 41, "Disconnect-NAK": 42}
ATTR = {
    "User-Name": 1,
    "NAS-IP-Address": 4,
    "Calling-Station-Id": 31,
    "NAS-Identifier": 32,
    "Acct-Session-Id": 44,
    "Event-Timestamp": 55,
    "Message-Authenticator": 80,
    "Error-Cause": 101,
}
# RFC 5176 3.6 Error-Cause values a DAS may answer with.
ERROR_CAUSES = {
    201: "Residual Session Context Removed",
    401: "Unsupported Attribute",
    402: "Missing Attribute",
    403: "NAS Identification Mismatch",
    404: "Invalid Request",
    405: "Unsupported Service",
    406: "Unsupported Extension",
    407: "Invalid Attribute Value",
    501: "Administratively Prohibited",
    502: "Request Not Routable (Proxy)",
    503: "Session Context Not Found",
    504: "Session Context Not Removable",
    505: "Other Proxy Processing Error",
    506: "Resources Unavailable",
    507: "Request Initiated",
    508: "Multiple Session Selection Unsupported",
}
_HEADER = struct.Struct("!BBH16s")
_ZERO16 = bytes(16)
MAX_PACKET = 4096  # RFC 2865 3


def _attr(kind: int, value: bytes) -> bytes:
    if not 1 <= len(value) <= 253:
        raise MalformedInput(f"RADIUS attribute {kind} must be 1..253 octets", check="radius.attribute-length")
    return bytes((kind, len(value) + 2)) + value


@dataclass(frozen=True, kw_only=True)
class DisconnectRequest:
    """One Disconnect-Request; ``encode`` gives the packet and its Request Authenticator.

    At least one session identifier (RFC 5176 3: Calling-Station-Id,
    User-Name or Acct-Session-Id) is required; NAS-IP-Address /
    NAS-Identifier, when given, must match the NAS or it answers NAK 403.
    """

    identifier: int
    event_timestamp: int
    calling_station_id: str | None = None
    user_name: str | None = None
    acct_session_id: str | None = None
    nas_ip_address: str | None = None
    nas_identifier: str | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.identifier <= 255:
            raise MalformedInput("RADIUS identifier is one octet", check="radius.identifier")
        if not 0 <= self.event_timestamp < 2**32:
            raise MalformedInput("Event-Timestamp is 32-bit seconds since 1970", check="radius.event-timestamp")
        if not (self.calling_station_id or self.user_name or self.acct_session_id):
            raise MalformedInput(
                "a Disconnect-Request needs Calling-Station-Id, User-Name or Acct-Session-Id (RFC 5176 3)",
                check="radius.session-identification",
            )

    def _attributes(self) -> bytes:
        out = bytearray()
        for name, value in (
            ("User-Name", self.user_name),
            ("Calling-Station-Id", self.calling_station_id),
            ("Acct-Session-Id", self.acct_session_id),
            ("NAS-Identifier", self.nas_identifier),
        ):
            if value:
                out += _attr(ATTR[name], value.encode())
        if self.nas_ip_address:
            addr = ipaddress.ip_address(self.nas_ip_address)
            if addr.version != 4:
                raise MalformedInput("NAS-IP-Address is IPv4 (RFC 2865 5.4)", check="radius.nas-ip")
            out += _attr(ATTR["NAS-IP-Address"], addr.packed)
        out += _attr(ATTR["Event-Timestamp"], struct.pack("!I", self.event_timestamp))
        return bytes(out)

    def encode(self, secret: bytes) -> tuple[bytes, bytes]:
        """The packet and its Request Authenticator (needed to check the answer)."""
        if not secret:
            raise MalformedInput("the RADIUS shared secret is empty", check="radius.secret")
        attrs = self._attributes() + _attr(ATTR["Message-Authenticator"], _ZERO16)
        length = _HEADER.size + len(attrs)
        code = CODE["Disconnect-Request"]
        zeroed = _HEADER.pack(code, self.identifier, length, _ZERO16) + attrs
        mac = hmac.new(secret, zeroed, hashlib.md5).digest()
        attrs = attrs[:-16] + mac
        authenticator = hashlib.md5(_HEADER.pack(code, self.identifier, length, _ZERO16) + attrs + secret).digest()
        return _HEADER.pack(code, self.identifier, length, authenticator) + attrs, authenticator


@dataclass(frozen=True, kw_only=True)
class DisconnectResponse:
    acked: bool
    identifier: int
    error_cause: int | None = None
    attributes: tuple[tuple[int, bytes], ...] = field(default_factory=tuple)

    @property
    def error_text(self) -> str | None:
        if self.error_cause is None:
            return None
        return f"{self.error_cause} {ERROR_CAUSES.get(self.error_cause, 'unknown')}"


def _parse_attributes(body: bytes) -> list[tuple[int, int, bytes]]:
    """(offset of value, type, value) for each attribute; malformed is refused."""
    out, i = [], 0
    while i < len(body):
        if i + 2 > len(body):
            raise MalformedInput("truncated RADIUS attribute", check="radius.attribute-length")
        kind, alen = body[i], body[i + 1]
        if alen < 2 or i + alen > len(body):
            raise MalformedInput("bad RADIUS attribute length", check="radius.attribute-length")
        out.append((i + 2, kind, body[i + 2 : i + alen]))
        i += alen
    return out


def decode_response(packet: bytes, *, secret: bytes, request_authenticator: bytes, identifier: int) -> DisconnectResponse:
    """Check and parse a Disconnect-ACK/NAK answering the request sent with
    ``request_authenticator`` and ``identifier`` (RFC 5176 3.5)."""
    if len(packet) < _HEADER.size or len(packet) > MAX_PACKET:
        raise MalformedInput("not a RADIUS packet", check="radius.length")
    code, ident, length, authenticator = _HEADER.unpack_from(packet)
    if length != len(packet):
        raise MalformedInput("RADIUS length field does not match the datagram", check="radius.length")
    if code not in (CODE["Disconnect-ACK"], CODE["Disconnect-NAK"]):
        raise MalformedInput(f"RADIUS code {code} is not a Disconnect-ACK/NAK", check="radius.code")
    if ident != identifier:
        raise MalformedInput("RADIUS identifier does not match the request", check="radius.identifier")
    body = packet[_HEADER.size :]
    expected = hashlib.md5(packet[:4] + request_authenticator + body + secret).digest()
    if not hmac.compare_digest(expected, authenticator):
        raise SignatureInvalid("Response Authenticator does not verify (wrong secret?)", check="radius.authenticator")
    attrs = _parse_attributes(body)
    cause = None
    for offset, kind, value in attrs:
        if kind == ATTR["Message-Authenticator"]:
            if len(value) != 16:
                raise MalformedInput("Message-Authenticator is 16 octets", check="radius.message-authenticator")
            start = _HEADER.size + offset
            zeroed = packet[:4] + request_authenticator + packet[_HEADER.size : start] + _ZERO16 + packet[start + 16 :]
            if not hmac.compare_digest(hmac.new(secret, zeroed, hashlib.md5).digest(), value):
                raise SignatureInvalid("Message-Authenticator does not verify", check="radius.message-authenticator")
        elif kind == ATTR["Error-Cause"] and len(value) == 4:
            cause = struct.unpack("!I", value)[0]
    return DisconnectResponse(
        acked=code == CODE["Disconnect-ACK"],
        identifier=ident,
        error_cause=cause,
        attributes=tuple((k, v) for _, k, v in attrs),
    )
