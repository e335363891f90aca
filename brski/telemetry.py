"""Pledge status telemetry: voucher_status and enrollstatus (RFC 8995 5.7, 5.9.4).

Both share one JSON shape (CDDL in RFC 8995 section 5.7)::

    { "version": uint, "status": bool, ? "reason": text, ? "reason-context": { * $$arbitrary-map } }

Servers store these as evidence, so the parser bounds what it keeps.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from brski.errors import MalformedInput, PayloadTooLarge

__all__ = ["MAX_TELEMETRY_BYTES", "StatusReport", "parse_status"]

MAX_TELEMETRY_BYTES = 8192
_MAX_DEPTH = 8


@dataclass(frozen=True, kw_only=True)
class StatusReport:
    version: int
    status: bool
    reason: str | None = None
    reason_context: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> bytes:
        doc: dict[str, Any] = {"version": self.version, "status": self.status}
        if self.reason is not None:
            doc["reason"] = self.reason
        if self.reason_context:
            doc["reason-context"] = self.reason_context
        return json.dumps(doc).encode()


def _depth_ok(data: bytes) -> bool:
    depth = 0
    in_str = escaped = False
    for b in data:
        c = chr(b)
        if in_str:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
        elif c in "[{":
            depth += 1
            if depth > _MAX_DEPTH:
                return False
        elif c in "]}":
            depth -= 1
    return True


def parse_status(body: bytes, *, kind: str) -> StatusReport:
    """Parse and check one telemetry document; ``kind`` names it in errors."""
    if len(body) > MAX_TELEMETRY_BYTES:
        raise PayloadTooLarge(f"{kind} body over {MAX_TELEMETRY_BYTES} bytes", check=f"{kind}.size")
    if not _depth_ok(body):
        raise MalformedInput(f"{kind} JSON nested deeper than {_MAX_DEPTH}", check=f"{kind}.depth")
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedInput(f"{kind} body is not JSON: {exc}", check=f"{kind}.json") from exc
    if not isinstance(doc, dict):
        raise MalformedInput(f"{kind} body must be a JSON object", check=f"{kind}.json")
    version = doc.get("version")
    # RFC 8995 section 5.7 example writes "version":"1" as a string; accept both.
    if isinstance(version, str) and version.isdigit():
        version = int(version)
    if not isinstance(version, int) or isinstance(version, bool):
        raise MalformedInput(f"{kind} needs an integer version", check=f"{kind}.version")
    status = doc.get("status")
    if not isinstance(status, bool):
        raise MalformedInput(f"{kind} needs a boolean status", check=f"{kind}.status")
    reason = doc.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise MalformedInput(f"{kind} reason must be text", check=f"{kind}.reason")
    ctx = doc.get("reason-context", {})
    if not isinstance(ctx, dict):
        raise MalformedInput(f"{kind} reason-context must be an object", check=f"{kind}.reason-context")
    return StatusReport(version=version, status=status, reason=reason, reason_context=ctx)
