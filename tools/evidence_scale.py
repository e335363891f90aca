"""How much state evidence costs on a big registrar store (docs/evidence.md).

Creates a registrar store, bulk-loads N devices with one issued certificate
each straight into SQLite (as tools/bench.py preloads), adopts them as a
recorded baseline, then makes ``--changes`` real state changes through the
store, and times: the baseline, ``verify_state`` (checkpoint + replay), the
full ``audit verify`` (chain walk + state), the start-up check (chain from
the checkpoint + state + the new checkpoint) and the start-up after it.

    .venv/bin/python tools/evidence_scale.py --devices 1000000 --dir /tmp/evscale
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from brski_storage import open_registrar_store
from brski_web.evidence import audit_report, check_store_evidence


def preload(db: Path, count: int, now: datetime) -> None:
    ts = now.isoformat(timespec="microseconds")
    until = (now + timedelta(days=365)).isoformat(timespec="microseconds")
    con = sqlite3.connect(db)
    con.execute("PRAGMA synchronous=OFF")  # a bulk preload, not a durability test
    batch = 50_000
    with con:
        for start in range(0, count, batch):
            ids = range(start, min(count, start + batch))
            con.executemany(
                "INSERT INTO devices (serial, idevid_issuer, idevid_fingerprint, manufacturer, state, first_seen,"
                " updated_at) VALUES (?, 'CN=preloaded IDevID CA', ?, 'CN=preloaded root', 'enrolled', ?, ?)",
                ((f"PRE-{i:08d}", f"{i:064x}", ts, ts) for i in ids),
            )
            con.executemany(
                "INSERT INTO certificates (cert_serial, device_serial, spki_sha256, state, der, not_before, not_after,"
                " reserved_at, issued_at) VALUES (?, ?, ?, 'issued', x'3000', ?, ?, ?, ?)",
                ((format(i + 1, "x"), f"PRE-{i:08d}", hashlib.sha256(i.to_bytes(8, "big")).digest(), ts, until, ts, ts)
                 for i in ids),
            )
    con.close()


async def measure(db: Path, devices: int, changes: int, *, reuse: bool) -> dict[str, Any]:
    now = datetime.now(UTC)
    out: dict[str, Any] = {"devices": devices, "certificates": devices}
    if not reuse:
        store = await open_registrar_store(str(db))
        await store.close()
        t = time.perf_counter()
        preload(db, devices, now)
        out["preload_s"] = time.perf_counter() - t
    else:  # a store left by an earlier run: undo its edit, re-adopt below
        con = sqlite3.connect(db)
        with con:
            con.execute("UPDATE certificates SET state = 'issued', revoked_at = NULL, revocation_reason = NULL")
            con.execute("UPDATE devices SET state = 'enrolled'")
        con.close()
    store = await open_registrar_store(str(db))
    try:
        t = time.perf_counter()
        await store.adopt_state_baseline(at=now, reason=f"scale measurement: {devices} preloaded devices")
        out["baseline_s"] = time.perf_counter() - t
        for i in range(changes):  # real writes, each with its state evidence
            await store.set_device_state(f"PRE-{i:08d}", "decommissioned", at=now, reason="scale")
        t = time.perf_counter()
        state = await store.verify_state()
        out["verify_state_s"] = time.perf_counter() - t
        out["events_replayed"] = state.events_replayed
        assert state.ok, state.lines()[:5]
        t = time.perf_counter()
        audit = await audit_report(store)
        out["audit_verify_s"] = time.perf_counter() - t
        out["events"] = audit.chain.count
        assert audit.ok
        t = time.perf_counter()
        await check_store_evidence(store, role="registrar", now=now, allow_inconsistent=False)
        out["startup_check_s"] = time.perf_counter() - t
        t = time.perf_counter()
        await check_store_evidence(store, role="registrar", now=now, allow_inconsistent=False)
        out["startup_check_after_checkpoint_s"] = time.perf_counter() - t
        # one edited row in a million is still named
        con = sqlite3.connect(db)
        with con:
            con.execute("UPDATE certificates SET state = 'revoked', revoked_at = ?, revocation_reason = 'x'"
                        " WHERE cert_serial = 'f4240'", (now.isoformat(timespec="microseconds"),))
        con.close()
        t = time.perf_counter()
        edited = await store.verify_state()
        out["verify_state_with_edit_s"] = time.perf_counter() - t
        out["named"] = edited.lines()
    finally:
        await store.close()
    out["db_mb"] = round(db.stat().st_size / 1e6)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", type=int, default=1_000_000)
    ap.add_argument("--changes", type=int, default=1000)
    ap.add_argument("--dir", type=Path, required=True)
    ap.add_argument("--reuse", action="store_true", help="measure again on the store an earlier run left")
    args = ap.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    db = args.dir / "registrar.db"
    if not args.reuse:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
    result = asyncio.run(measure(db, args.devices, args.changes, reuse=args.reuse))
    print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in result.items()}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
