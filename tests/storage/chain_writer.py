"""One writer process for test_postgres: opens the shared store (racing the
others through the migrations), then appends events and reserves
certificates, some serials and keys colliding on purpose with other writers."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
from datetime import UTC, datetime

from brski.errors import Conflict
from brski_storage import NewEvent, open_registrar_store

T0 = datetime(2026, 1, 1, tzinfo=UTC)


async def main(url: str, me: int, count: int) -> None:
    store = await open_registrar_store(url)
    await store.upsert_device("SHARED", idevid_issuer="CN=ca", idevid_fingerprint="f", manufacturer="m", at=T0)

    async def one(i: int) -> str:
        await store.append_event(at=T0, kind="w", device_serial=None, outcome="info", check=None,
                                 detail={"writer": me, "i": i})
        serial = 1000 + i  # the same serials in every writer: one wins each
        key = hashlib.sha256(f"key-{i}".encode()).digest()
        try:
            await store.reserve_certificate(cert_serial=serial, device_serial="SHARED", spki_sha256=key, at=T0)
        except Conflict:
            return "lost"
        await store.complete_certificate(
            serial, der=b"\x30\x00", not_before=T0, not_after=T0, at=T0,
            events=[NewEvent(at=T0, kind="issued", device_serial="SHARED", outcome="allow", check=None,
                             detail={"writer": me, "serial": serial})],
        )
        return "won"

    results = await asyncio.gather(*(one(i) for i in range(count)))
    await store.close()
    print(json.dumps({"won": results.count("won"), "lost": results.count("lost")}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
