"""The circuit relay (RFC 8995 4.3): bytes from a pledge to the registrar and back.

The proxy never terminates TLS: the pledge's handshake goes through unchanged, so
the registrar certificate the pledge sees is the registrar's own and the
voucher's pin still binds it (RFC 8995 4.3, "a circuit proxy"). What the proxy
adds is bounds, because the pledge link is unauthenticated: concurrent circuits
in total and per source address (link-local addresses are compared with their
scope: ``fe80::2`` on two links are two pledges), idle time, total time and
bytes per circuit. Every refusal and every close is one log line with its reason,
and counted (:attr:`CircuitRelay.refused`, :attr:`CircuitRelay.closed`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
import time
from collections import Counter
from collections.abc import Callable, Sequence

from brski_web.logs import kv
from join_proxy.config import CircuitLimits, Upstream

__all__ = ["CircuitRelay", "source_key"]

log = logging.getLogger("join_proxy.relay")
CHUNK = 64 * 1024


def source_key(peername: object) -> str:
    """The pledge's address with its scope: two links may reuse one link-local address."""
    if isinstance(peername, tuple) and len(peername) >= 2:
        host = str(peername[0])
        if len(peername) >= 4 and peername[3] and "%" not in host:
            try:
                scope = socket.if_indextoname(peername[3])
            except OSError:
                scope = str(peername[3])
            host = f"{host}%{scope}"
        return host
    return str(peername)


class _Closed(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class CircuitRelay:
    """``asyncio.start_server(relay.handle, ...)``: one circuit per accepted connection."""

    def __init__(
        self,
        limits: CircuitLimits,
        upstreams: Callable[[], Sequence[Upstream]],
        *,
        on_unreachable: Callable[[], None] | None = None,
    ) -> None:
        self.limits = limits
        self._upstreams = upstreams
        # Told when no registrar answered (the service then looks for it again).
        self._on_unreachable = on_unreachable
        self._ids = itertools.count(1)
        self.active = 0
        self.per_source: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()
        self.closed: Counter[str] = Counter()
        self.opened = 0

    def _refuse(self, writer: asyncio.StreamWriter, source: str, reason: str, **extra: object) -> None:
        self.refused[reason] += 1
        log.warning(kv("circuit-refused", source=source, reason=reason, **extra))
        writer.transport.abort()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        source = source_key(writer.get_extra_info("peername"))
        lim = self.limits
        if self.active >= lim.max_circuits:
            self._refuse(writer, source, "circuit-limit", active=self.active, limit=lim.max_circuits)
            return
        if self.per_source[source] >= lim.max_circuits_per_source:
            self._refuse(writer, source, "source-limit", active=self.per_source[source], limit=lim.max_circuits_per_source)
            return
        self.active += 1
        self.per_source[source] += 1
        try:
            await self._circuit(next(self._ids), source, reader, writer)
        finally:
            self.active -= 1
            self.per_source[source] -= 1
            if self.per_source[source] <= 0:
                del self.per_source[source]

    async def _connect(self) -> tuple[Upstream, asyncio.StreamReader, asyncio.StreamWriter] | None:
        for upstream in self._upstreams():
            try:
                async with asyncio.timeout(self.limits.connect_timeout_s):
                    r, w = await asyncio.open_connection(upstream.host, upstream.port)
                return upstream, r, w
            except (OSError, TimeoutError) as exc:
                log.warning(kv("registrar-unreachable", registrar=str(upstream), error=repr(exc)[:200]))
        return None

    async def _circuit(
        self, cid: int, source: str, p_reader: asyncio.StreamReader, p_writer: asyncio.StreamWriter
    ) -> None:
        connected = await self._connect()
        if connected is None:
            self._refuse(p_writer, source, "registrar-unreachable")
            if self._on_unreachable is not None:
                self._on_unreachable()
            return
        upstream, r_reader, r_writer = connected
        self.opened += 1
        started = last = time.monotonic()
        moved = {"up": 0, "down": 0}
        log.info(kv("circuit-open", id=cid, source=source, registrar=str(upstream)))

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, direction: str) -> None:
            nonlocal last
            while data := await src.read(CHUNK):
                moved[direction] += len(data)
                if moved["up"] + moved["down"] > self.limits.max_circuit_bytes:
                    raise _Closed("bytes")
                last = time.monotonic()
                dst.write(data)
                await dst.drain()
            # Half-close: the other direction may still be answering (TLS close_notify, a response).
            with contextlib.suppress(OSError, RuntimeError):
                if dst.can_write_eof():
                    dst.write_eof()

        async def idle_watch() -> None:
            tick = min(1.0, self.limits.idle_timeout_s / 4)
            while True:
                await asyncio.sleep(tick)
                if time.monotonic() - last >= self.limits.idle_timeout_s:
                    raise _Closed("idle")

        reason = "eof"
        tasks = [
            asyncio.create_task(pump(p_reader, r_writer, "up")),
            asyncio.create_task(pump(r_reader, p_writer, "down")),
        ]
        watch = asyncio.create_task(idle_watch())
        try:
            async with asyncio.timeout(self.limits.max_circuit_s):
                pending: set[asyncio.Task[None]] = set(tasks)
                while pending:
                    done, pending = await asyncio.wait(
                        pending | {watch}, return_when=asyncio.FIRST_COMPLETED
                    )
                    for t in done:
                        t.result()  # raises _Closed / OSError
                    pending.discard(watch)
        except TimeoutError:
            reason = "lifetime"
        except _Closed as exc:
            reason = exc.reason
        except (OSError, asyncio.IncompleteReadError) as exc:
            reason = f"error:{type(exc).__name__}"
        finally:
            for t in (*tasks, watch):
                t.cancel()
            await asyncio.gather(*tasks, watch, return_exceptions=True)
            for w in (p_writer, r_writer):
                w.transport.abort() if reason != "eof" else w.close()
        self.closed[reason] += 1
        log.info(
            kv(
                "circuit-closed", id=cid, source=source, reason=reason, bytes_up=moved["up"],
                bytes_down=moved["down"], seconds=round(time.monotonic() - started, 3),
            )
        )
