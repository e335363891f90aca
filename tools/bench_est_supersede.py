"""A first enrolment's recording: then its supersede read, or superseding inside it.

A real SQLite registrar store in a temporary directory; per enrolment a new
device, then either ``record_issued_certificate`` followed by the device's
certificates read (what ``/simpleenroll`` did: the supersede list after the
recording commit) or ``record_issued_superseding`` (the list taken and the
earlier LDevIDs revoked inside the recording transaction). One enrolment at a
time (each commit flushed alone), 150 per block, 8 alternating blocks;
process CPU (with the writer thread) and main-thread CPU per enrolment, and
the block pair ratios. Usage: ``python tools/bench_est_supersede.py``.
Nothing is asserted; it measures.
"""

from __future__ import annotations

import asyncio
import hashlib
import statistics as st
import tempfile
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from brski_storage import NewEvent, open_registrar_store
from brski_storage.certificates import Supersede

T0 = datetime(2026, 12, 1, tzinfo=UTC)
BY = Supersede(by="registrar (superseded by x)", check="registrar.supersede")
async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async with await open_registrar_store(f"sqlite:///{tmp}/r.db") as store:
            n = 0
            res: dict[str, list[tuple[float, float]]] = {"plain+read": [], "superseding": []}
            for block in range(8):
                order = ["plain+read", "superseding"] if block % 2 == 0 else ["superseding", "plain+read"]
                for way in order:
                    devs: list[str] = []
                    for i in range(150):
                        s = f"D{block}-{way[0]}-{i}"
                        await store.upsert_device(s, idevid_issuer="CN=m", idevid_fingerprint=s, manufacturer="m", at=T0)
                        devs.append(s)
                    p0, m0 = time.process_time(), time.thread_time()
                    for s in devs:
                        n += 1
                        kw: dict[str, Any] = dict(cert_serial=n, device_serial=s, spki_sha256=hashlib.sha256(str(n).encode()).digest(), der=b"\x30" * 500,
                                  not_before=T0, not_after=T0 + timedelta(days=1), at=T0,
                                  events=(NewEvent(at=T0, kind="credential.issued", device_serial=s, outcome="allow", check="registrar.issue", detail={"n": n}),))
                        if way == "superseding":
                            await store.record_issued_superseding(supersede=BY, **kw)
                        else:
                            await store.record_issued_certificate(**kw)
                            await store.list_certificates(s)
                    res[way].append(((time.process_time() - p0) * 1e6 / len(devs), (time.thread_time() - m0) * 1e6 / len(devs)))
            for way, v in res.items():
                print(way, "process", round(st.median(x[0] for x in v), 1), "main", round(st.median(x[1] for x in v), 1), [round(x[0]) for x in v])
            r = [b[0] / a[0] for a, b in zip(res["plain+read"], res["superseding"], strict=True)]
            rm = [b[1] / a[1] for a, b in zip(res["plain+read"], res["superseding"], strict=True)]
            print("ratio process", round(st.median(r), 3), round(min(r), 2), round(max(r), 2), "main", round(st.median(rm), 3), round(min(rm), 2), round(max(rm), 2), sum(x < 1 for x in rm), "/", len(rm))

if __name__ == "__main__":
    asyncio.run(main())
