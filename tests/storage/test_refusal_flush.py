"""brski_web.refusals installed on an app: the shutdown flush stores the last
window's refused handshakes in the app's store, on both engines."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from brski_storage import open_registrar_store
from brski_web.refusals import EVENT_KIND, install


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
