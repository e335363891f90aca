"""Refused TLS handshakes as events in the store.

A handshake the server refuses (TLS 1.1, no shared suite, a client chain
refused in the handshake, a timeout) never becomes an HTTP request, so the
error middleware, which records every other refusal, never sees it. The
transport reports each one here (``brski_web.tls.start_tls_server(on_refused=)``).

Why counted and written in batches rather than one event per handshake: a
scanner or a misconfigured fleet can fail thousands of handshakes a second,
and a durable write per failure would let anyone on the network turn cheap
TCP connections into fsyncs. Instead the refusals of a window (10 s by
default) are counted per (remote host, event, error) and stored as one event
each, with the count and the first and last time seen; at most ``max_keys``
distinct keys a window, the rest folded into one overflow event. The log
line per refusal stays (``brski_web.tls``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from brski_storage import EventLog
from brski_web.logs import kv
from brski_web.proxies import PROXY_NETWORKS, via_proxy

__all__ = ["HANDSHAKE_REFUSALS", "HandshakeRefusals", "RefusalSink", "install"]

log = logging.getLogger(__name__)

# (at, kind, check, detail) -> stored as a refusal; the app binds it to its store.
RefusalSink = Callable[[datetime, str, str, dict[str, Any]], Awaitable[None]]

EVENT_KIND = "tls.handshake-refused"
OVERFLOW_HOST = "*"


@dataclass
class _Tally:
    count: int
    first: datetime
    last: datetime


class HandshakeRefusals:
    """Counts refusals as they happen (synchronously, from the transport) and
    stores them window by window from a background task (:meth:`cleanup_ctx`)."""

    def __init__(
        self,
        sink: RefusalSink,
        *,
        window_s: float = 10.0,
        max_keys: int = 256,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if window_s <= 0 or max_keys < 1:
            raise ValueError("window_s must be positive and max_keys at least 1")
        self._sink = sink
        self._window_s = window_s
        self._max_keys = max_keys
        self._clock = clock
        self._tallies: dict[tuple[str, str, str], _Tally] = {}
        # Called with the transport's event name on every refusal (metrics).
        self.listeners: list[Callable[[str], None]] = []

    def add(self, remote: str | None, event: str, error: str) -> None:
        """The transport's ``on_refused`` hook: count, never block, never write."""
        for listener in self.listeners:
            listener(event)
        now = self._clock()
        key = (remote or "unknown", event, error)
        tally = self._tallies.get(key)
        if tally is None and len(self._tallies) >= self._max_keys:
            key = (OVERFLOW_HOST, "tls-handshake-refused", "more distinct refusals than one window keeps")
            tally = self._tallies.get(key)
        if tally is None:
            self._tallies[key] = _Tally(count=1, first=now, last=now)
        else:
            tally.count += 1
            tally.last = now

    async def flush(self) -> int:
        """Store what this window counted; returns how many events were written.
        A failed write is logged and its counts are dropped, not retried forever."""
        tallies, self._tallies = self._tallies, {}
        written = 0
        for (remote, event, error), tally in tallies.items():
            detail = {
                "remote": remote,
                "event": event,
                "error": error,
                "count": tally.count,
                "first": tally.first.isoformat(),
                "last": tally.last.isoformat(),
            }
            check = "tls.handshake-timeout" if event == "tls-handshake-timeout" else "tls.handshake"
            try:
                await self._sink(tally.last, EVENT_KIND, check, detail)
                written += 1
            except Exception as exc:
                log.warning(kv("tls-refusals-unrecorded", remote=remote, count=tally.count, error=repr(exc)[:200]))
        return written

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._window_s)
            await self.flush()

    async def cleanup_ctx(self, app: web.Application) -> AsyncIterator[None]:
        """Flush every window while the app runs, and once more on shutdown.
        Append it after the context that opens the store: cleanup runs in
        reverse, so the last flush still finds the store open."""
        task = asyncio.create_task(self._run())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await self.flush()


HANDSHAKE_REFUSALS: web.AppKey[HandshakeRefusals] = web.AppKey("handshake_refusals", HandshakeRefusals)


def install(
    app: web.Application, store_of: Callable[[web.Application], EventLog | None], *, window_s: float = 10.0
) -> HandshakeRefusals:
    """Record ``app``'s refused handshakes in the store ``store_of(app)`` returns
    (None while the app is not started: those are dropped with a log line).
    Call it after the app's store context is in ``cleanup_ctx``; the server
    runner finds it under :data:`HANDSHAKE_REFUSALS`."""

    async def sink(at: datetime, kind: str, check: str, detail: dict[str, Any]) -> None:
        store = store_of(app)
        if store is None:
            raise RuntimeError("the store is not open")
        if via_proxy(app.get(PROXY_NETWORKS, ()), detail.get("remote")):
            detail = {**detail, "via": "proxy"}  # RFC 8995 4.3: the pledge is behind a circuit proxy
        await store.append_event(at=at, kind=kind, device_serial=None, outcome="refuse", check=check, detail=detail)

    refusals = HandshakeRefusals(sink, window_s=window_s)
    app[HANDSHAKE_REFUSALS] = refusals
    app.cleanup_ctx.append(refusals.cleanup_ctx)
    return refusals
