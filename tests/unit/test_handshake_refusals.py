"""brski_web.refusals: refused TLS handshakes counted per window and stored as events.

The promise: every refusal the transport reports is counted in exactly one
stored event (per remote host, event and error), a window never stores more
than ``max_keys`` + 1 events however many distinct refusals arrive, and the
shutdown flush stores what the last window counted (into a real store:
tests/storage/test_refusal_flush.py).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from brski_web.refusals import EVENT_KIND, HandshakeRefusals

T0 = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


async def test_refusals_are_counted_per_host_event_and_error() -> None:
    stored: list[tuple[datetime, str, str, dict[str, Any]]] = []

    async def sink(at: datetime, kind: str, check: str, detail: dict[str, Any]) -> None:
        stored.append((at, kind, check, detail))

    r = HandshakeRefusals(sink, clock=Clock())
    for _ in range(3):
        r.add("192.0.2.7", "tls-handshake-refused", "Error([('SSL routines', '', 'unsupported protocol')])")
    r.add("192.0.2.8", "tls-handshake-timeout", "TimeoutError('TLS handshake timed out')")
    assert await r.flush() == 2
    by_host = {d["remote"]: (kind, check, d) for _, kind, check, d in stored}
    kind, check, first = by_host["192.0.2.7"]
    assert kind == EVENT_KIND and check == "tls.handshake"
    assert first["count"] == 3 and first["first"] < first["last"]
    assert by_host["192.0.2.8"][1] == "tls.handshake-timeout" and by_host["192.0.2.8"][2]["count"] == 1
    assert await r.flush() == 0  # a window is stored once


async def test_a_window_stores_at_most_max_keys_plus_one_events() -> None:
    stored: list[dict[str, Any]] = []

    async def sink(at: datetime, kind: str, check: str, detail: dict[str, Any]) -> None:
        stored.append(detail)

    r = HandshakeRefusals(sink, max_keys=4, clock=Clock())
    for i in range(50):  # a scan from 50 addresses
        r.add(f"198.51.100.{i}", "tls-handshake-refused", "no shared cipher")
    assert await r.flush() == 5
    assert sum(d["count"] for d in stored) == 50  # nothing counted twice or lost
    assert [d["count"] for d in stored if d["remote"] == "*"] == [46]


async def test_a_failed_write_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    async def sink(at: datetime, kind: str, check: str, detail: dict[str, Any]) -> None:
        raise OSError("disk full")

    r = HandshakeRefusals(sink, clock=Clock())
    r.add(None, "tls-handshake-refused", "x")
    assert await r.flush() == 0
    assert "tls-refusals-unrecorded" in caplog.text and "remote=unknown" in caplog.text
