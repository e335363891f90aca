"""Registrar stores for the benchmark: created by the store's own migrations,
preloaded with a million rows, and the console's device list paged through."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchlib.procs import cpu_seconds
from brski_cli.lab import Lab


def create_registrar_store(url: str) -> None:
    """The schema comes from the store's own migrations, never from here."""
    from brski_storage import open_registrar_store

    async def main() -> None:
        store = await open_registrar_store(url)
        await store.close()

    asyncio.run(main())


def preload_registrar(db: Path, count: int) -> float:
    """``count`` device rows in one transaction; returns seconds taken."""
    t0 = time.perf_counter()
    now = datetime.now(UTC).isoformat(timespec="microseconds")
    con = sqlite3.connect(db)
    con.execute("PRAGMA synchronous=OFF")  # a bulk preload, not a durability test
    batch = 50_000
    with con:
        for start in range(0, count, batch):
            con.executemany(
                "INSERT INTO devices (serial, idevid_issuer, idevid_fingerprint, manufacturer,"
                " state, first_seen, updated_at) VALUES (?, ?, ?, ?, 'enrolled', ?, ?)",
                (
                    (
                        f"PRE-{i:08d}",
                        "CN=preloaded IDevID CA,O=brski bench",
                        f"{i:064x}",
                        "CN=preloaded root,O=brski bench",
                        now,
                        now,
                    )
                    for i in range(start, min(count, start + batch))
                ),
            )
    con.close()
    adopt_preload(db, count)
    return time.perf_counter() - t0


def adopt_preload(db: Path, count: int) -> None:
    """Rows written behind the store's back have no state evidence: adopt
    them as a recorded baseline, as an operator would (``audit adopt``), or
    the registrar refuses to start on them."""
    from brski_storage import open_registrar_store

    async def main() -> None:
        store = await open_registrar_store(str(db))
        try:
            await store.adopt_state_baseline(at=None, reason=f"benchmark preload of {count} synthetic devices")
        finally:
            await store.close()

    asyncio.run(main())


def console_paging(lab: Lab, devices: int, *, page: int = 100, max_pages: int = 200) -> dict[str, Any]:
    """Walk ``/console/devices`` pages (keyset, by serial) as the admin; ms per page."""
    import http.client
    import ssl
    from urllib.parse import quote

    reg = lab.certs / "registrar"
    ctx = ssl.create_default_context(cafile=str(reg / "domain-ca.crt"))
    ctx.load_cert_chain(str(reg / "admin.crt"), str(reg / "admin.key"))
    conn = http.client.HTTPSConnection("localhost", lab.registrar_port, context=ctx, timeout=60)

    def get(path: str) -> tuple[float, str]:
        t0 = time.perf_counter()
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read().decode()
        if resp.status != 200:
            raise RuntimeError(f"{path}: {resp.status} {body[:300]}")
        return (time.perf_counter() - t0) * 1000, body

    get("/console/devices?limit=1")  # handshake and first-request costs out of the figures
    pid = lab.pid("registrar")
    cpu0, walls, after, pages = cpu_seconds(pid), [], "", 0
    while pages < max_pages:
        ms, body = get(f"/console/devices?limit={page}" + (f"&after={quote(after)}" if after else ""))
        walls.append(ms)
        pages += 1
        found = re.search(r'id="next-page" href="[^"]*after=([^"&]+)"', body)
        if not found:
            break
        after = found.group(1).replace("%2D", "-")
    cpu_ms = (cpu_seconds(pid) - cpu0) * 1000 / pages
    deep_ms, _ = get(f"/console/devices?limit={page}&after=PRE-{devices // 2:08d}")
    search_ms, _ = get(f"/console/devices?limit={page}&q=PRE-{devices // 2 // 1000:05d}&state=enrolled")
    conn.close()
    walls.sort()
    return {
        "devices": devices, "page_size": page, "pages_walked": pages,
        "page_ms_p50": round(walls[len(walls) // 2], 2), "page_ms_max": round(walls[-1], 2),
        "registrar_cpu_ms_per_page": round(cpu_ms, 2),
        "deep_page_ms": round(deep_ms, 2), "prefix_search_ms": round(search_ms, 2),
    }
