"""The registrar's MUD manager (RFC 8520): learn a device's MUD URL from its
IDevID, fetch the MUD file and its signature from the manufacturer, verify
both against the manufacturer anchors, cache per cache-validity, and hand
out the device's nftables rules.

The URL is learnt during the voucher exchange (the IDevID is the TLS client
certificate, RFC 8520 10); the file is fetched right away in the background
and again whenever the cached copy is older than its cache-validity
(RFC 8520 3.5). Every fetch is an event (``mud.fetched`` / ``mud.invalid``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from dataclasses import dataclass
from datetime import datetime, timedelta

import aiohttp
from cryptography import x509

from brski.errors import BrskiError, MalformedInput
from brski.mud import (
    MudProfile,
    device_class_from_url,
    mud_url,
    nft_rules,
    signature_url,
    verify_mud,
)
from brski_storage.base import RegistrarStore
from brski_web.logs import kv

__all__ = ["MudOutcome", "MudService"]

log = logging.getLogger("brski.registrar.mud")


@dataclass(frozen=True, kw_only=True)
class MudOutcome:
    url: str | None
    profile: MudProfile | None
    problem: str | None = None


class MudService:
    def __init__(self, store: RegistrarStore, *, anchors: list[x509.Certificate], ssl_context: ssl.SSLContext,
                 timeout_s: float = 10.0) -> None:
        self.store = store
        self.anchors = anchors
        self.ssl_context = ssl_context
        self.timeout_s = timeout_s
        self._cache: dict[str, tuple[MudProfile, datetime]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task[MudOutcome]] = set()

    async def note_idevid(self, serial: str, idevid: x509.Certificate, *, now: datetime) -> None:
        """Voucher exchange: record the IDevID's MUD URL (an operator's class stays)."""
        try:
            url = mud_url(idevid)
        except MalformedInput as exc:
            await self.store.append_event(at=now, kind="mud.invalid", device_serial=serial, outcome="refuse",
                                          check=exc.check, detail={"detail": exc.detail})
            return
        if url is None:
            return
        current = await self.store.get_device_profile(serial)
        if current is not None and current.source.startswith("operator"):
            return
        if current is None or current.mud_url != url:
            await self.store.set_device_profile(serial, device_class=device_class_from_url(url), mud_url=url,
                                                source="mud", at=now)
            await self.store.append_event(at=now, kind="mud.url", device_serial=serial, outcome="info",
                                          check="mud.idevid", detail={"mud_url": url,
                                                                      "class": device_class_from_url(url)})
        task = asyncio.get_running_loop().create_task(self.outcome(serial, url, now=now))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def outcome(self, serial: str | None, url: str, *, now: datetime) -> MudOutcome:
        """The verified profile of ``url`` (cached), or why there is none."""
        lock = self._locks.setdefault(url, asyncio.Lock())
        async with lock:
            cached = self._cache.get(url)
            if cached is not None and cached[1] > now:
                return MudOutcome(url=url, profile=cached[0])
            try:
                profile = await self._fetch(url, now=now)
            except BrskiError as exc:
                problem = f"{exc.check}: {exc.detail}"
                log.warning(kv("mud-invalid", url=url, check=exc.check, detail=exc.detail))
                await self.store.append_event(at=now, kind="mud.invalid", device_serial=serial, outcome="refuse",
                                              check=exc.check, detail={"mud_url": url, "detail": exc.detail})
                return MudOutcome(url=url, profile=None, problem=problem)
            self._cache[url] = (profile, now + timedelta(hours=profile.cache_validity_h))
            await self.store.append_event(
                at=now, kind="mud.fetched", device_serial=serial, outcome="allow", check="mud.verified",
                detail={"mud_url": url, "signer": profile.signer, "rules": nft_rules(profile),
                        "skipped": list(profile.skipped), "cache_validity_h": profile.cache_validity_h},
            )
            return MudOutcome(url=url, profile=profile)

    async def _get(self, session: aiohttp.ClientSession, url: str) -> bytes:
        try:
            async with session.get(url, ssl=self.ssl_context) as resp:
                if resp.status != 200:
                    raise MalformedInput(f"GET {url}: HTTP {resp.status}", check="mud.fetch")
                body = await resp.content.read(256 * 1024 + 1)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise MalformedInput(f"GET {url}: {type(exc).__name__}: {exc}", check="mud.unreachable") from exc
        return body

    async def _fetch(self, url: str, *, now: datetime) -> MudProfile:
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            data = await self._get(session, url)
            try:
                doc = json.loads(data)
                inner = doc.get("ietf-mud:mud") if isinstance(doc, dict) else None
            except ValueError:
                inner = None
            sig = await self._get(session, signature_url(url, inner if isinstance(inner, dict) else None))
        return verify_mud(data, sig, url=url, anchors=self.anchors, now=now)
