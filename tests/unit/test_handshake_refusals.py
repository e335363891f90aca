"""brski_web.refusals: refused TLS handshakes counted per window and stored as events.

The promise: every refusal the transport reports is counted in exactly one
stored event (per remote host, event and error), a window never stores more
than ``max_keys`` + 1 events however many distinct refusals arrive, and the
shutdown flush stores what the last window counted.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web

from brski_storage import open_registrar_store
from brski_web.refusals import EVENT_KIND, HandshakeRefusals, install

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


async def test_installed_on_an_app_the_shutdown_flush_reaches_the_store(new_store_url: Callable[[str], str]) -> None:
    """install(): the events land in the app's store, and the last window is
    flushed while the store is still open (cleanup runs in reverse)."""
    db = new_store_url("registrar")
    app = web.Application()
    key: web.AppKey[Any] = web.AppKey("store", object)

    async def store_ctx(a: web.Application) -> Any:
        a[key] = await open_registrar_store(db)
        yield
        await a[key].close()

    app.cleanup_ctx.append(store_ctx)
    refusals = install(app, lambda a: a[key] if key in a else None, window_s=3600)
    runner = web.AppRunner(app)
    await runner.setup()
    refusals.add("203.0.113.5", "tls-handshake-refused", "unsupported protocol")
    refusals.add("203.0.113.5", "tls-handshake-refused", "unsupported protocol")
    await runner.cleanup()
    store = await open_registrar_store(db)
    try:
        events = [e for e in await store.events() if e.kind == EVENT_KIND]
        assert len(events) == 1
        assert events[0].outcome == "refuse" and events[0].device_serial is None
        assert events[0].detail["remote"] == "203.0.113.5" and events[0].detail["count"] == 2
        assert (await store.verify_event_chain()).ok
    finally:
        await store.close()
