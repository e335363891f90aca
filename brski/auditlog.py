"""The MASA audit log (RFC 8995 5.8.1), declared once: the MASA produces it, the
registrar parses and reviews it.

The CDDL of 5.8.1 is normative and says ``uint`` for "version", "truncated" and
the truncation counters; the example beside it writes them as strings ("1",
"0"). We send integers, as the CDDL says, and accept both. "nonce" is text or
null (null SHOULD be used when the voucher had no nonce); "date" is RFC 3339.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from brski.errors import MalformedInput

__all__ = ["ASSERTIONS", "AuditEvent", "AuditLog", "Truncation"]

ASSERTIONS = frozenset({"verified", "logged", "proximity"})
MAX_EVENTS = 100_000  # far beyond any device's history; a log beyond it is refused
MAX_SIZE = 16 * 1024 * 1024

_TRUNCATION_KEYS = {
    "nonced duplicates": "nonced_duplicates",
    "nonceless duplicates": "nonceless_duplicates",
    "arbitrary": "arbitrary",
}


def _bad(detail: str) -> MalformedInput:
    return MalformedInput(f"audit log: {detail}", check="auditlog.malformed")


def _uint(value: Any, what: str) -> int:
    """A CDDL uint, also as the decimal string the RFC's example uses."""
    if isinstance(value, bool):
        raise _bad(f"{what} must be an unsigned integer")
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or value < 0:
        raise _bad(f"{what} must be an unsigned integer, not {value!r:.40}")
    return value


@dataclass(frozen=True, kw_only=True)
class AuditEvent:
    """One voucher the MASA issued for the device (5.8.1 "event")."""

    date: datetime
    domain_id: str  # base64 of the domain CA's SubjectKeyIdentifier (5.8.2)
    nonce: str | None
    assertion: str
    truncated: int = 0  # entries of this domainID left out before this one

    def __post_init__(self) -> None:
        if self.date.tzinfo is None:
            raise _bad("event date has no time zone (RFC 3339 requires an offset)")
        if not self.domain_id:
            raise _bad("event has an empty domainID")
        if self.assertion not in ASSERTIONS:
            raise _bad(f"event assertion {self.assertion!r:.40} is not one of {sorted(ASSERTIONS)}")
        _uint(self.truncated, "truncated")

    def to_json_obj(self) -> dict[str, Any]:
        obj: dict[str, Any] = {
            "date": self.date.isoformat().replace("+00:00", "Z"),
            "domainID": self.domain_id,
            "nonce": self.nonce,
            "assertion": self.assertion,
        }
        if self.truncated:
            obj["truncated"] = self.truncated
        return obj

    @classmethod
    def from_json_obj(cls, obj: Any) -> AuditEvent:
        if not isinstance(obj, Mapping):
            raise _bad("an event is not a JSON object")
        date, domain, nonce, assertion = (obj.get(k) for k in ("date", "domainID", "nonce", "assertion"))
        if not isinstance(date, str):
            raise _bad("event date is not text")
        try:
            when = datetime.fromisoformat(date)
        except ValueError as exc:
            raise _bad(f"event date {date!r:.40} is not RFC 3339") from exc
        if not isinstance(domain, str):
            raise _bad("event domainID is not text")
        if nonce is not None and not isinstance(nonce, str):
            raise _bad("event nonce is neither text nor null")
        if not isinstance(assertion, str):
            raise _bad("event assertion is not text")
        return cls(
            date=when, domain_id=domain, nonce=nonce, assertion=assertion,
            truncated=_uint(obj.get("truncated", 0), "truncated"),
        )


@dataclass(frozen=True, kw_only=True)
class Truncation:
    """How many events the MASA left out (5.8.1; absent counters are zero)."""

    nonced_duplicates: int = 0
    nonceless_duplicates: int = 0
    arbitrary: int = 0

    def __post_init__(self) -> None:
        for name in _TRUNCATION_KEYS.values():
            _uint(getattr(self, name), name)


@dataclass(frozen=True, kw_only=True)
class AuditLog:
    """A device's audit log as the MASA serves it (5.8.1)."""

    version: int = 1
    events: tuple[AuditEvent, ...] = ()
    truncation: Truncation = field(default_factory=Truncation)

    def __post_init__(self) -> None:
        # 5.8.1: a version above 1 only adds information; it is read, not refused.
        if _uint(self.version, "version") < 1:
            raise _bad("version must be 1 or more")
        if len(self.events) > MAX_EVENTS:
            raise _bad(f"more than {MAX_EVENTS} events")

    def to_json(self) -> bytes:
        """The response body (Content-Type application/json)."""
        t = self.truncation
        return json.dumps(
            {
                "version": self.version,
                "events": [e.to_json_obj() for e in self.events],
                "truncation": {
                    "nonced duplicates": t.nonced_duplicates,
                    "nonceless duplicates": t.nonceless_duplicates,
                    "arbitrary": t.arbitrary,
                },
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def from_json(cls, data: bytes) -> AuditLog:
        """Parse a MASA's answer; anything off the CDDL is ``auditlog.malformed``."""
        if len(data) > MAX_SIZE:
            raise _bad(f"{len(data)} bytes is more than {MAX_SIZE}")
        try:
            doc = json.loads(data)
        except (ValueError, RecursionError) as exc:
            raise _bad(f"not JSON: {exc}") from exc
        if not isinstance(doc, dict):
            raise _bad("not a JSON object")
        events = doc.get("events")
        if not isinstance(events, list):
            raise _bad("no events list")
        raw_trunc = doc.get("truncation", {})
        if not isinstance(raw_trunc, Mapping):
            raise _bad("truncation is not an object")
        truncation = Truncation(**{
            attr: _uint(raw_trunc[key], key) for key, attr in _TRUNCATION_KEYS.items() if key in raw_trunc
        })
        return cls(
            version=_uint(doc.get("version"), "version"),
            events=tuple(AuditEvent.from_json_obj(e) for e in _bounded(events)),
            truncation=truncation,
        )


def _bounded(events: Sequence[Any]) -> Sequence[Any]:
    if len(events) > MAX_EVENTS:
        raise _bad(f"more than {MAX_EVENTS} events")
    return events
