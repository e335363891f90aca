"""The registrar's storage cost per onboarding, alone: the store calls of one
onboarding (voucher request, voucher status + audit log, simpleenroll, enroll
status), in the services' order, with payloads of the real sizes, run against
a real store (SQLite file or a throw-away durable PostgreSQL cluster).

``PYTHONPATH=TREE python tools/bench_store.py [--database sqlite|postgresql]
[--onboardings 400] [--concurrency 1,8] [--rounds 3] [--enroll-only]``

``--enroll-only``: every device is taken through the voucher calls first,
untimed; then only the simpleenroll calls are timed (per enrolment).

Prints, per concurrency, the medians over rounds of: process CPU, main-thread
CPU and writer-thread CPU per onboarding (per-thread CPU clocks), write jobs,
COMMITs and flushed COMMITs per onboarding (the writer's counters: a tree
without ``flushes`` flushes every COMMIT), and on PostgreSQL the server's WAL
flushes (``pg_stat_wal.wal_sync``). Run it under ``strace -f -c -e
trace=fsync,fdatasync`` to count SQLite's fsyncs. The calls follow the tree it
imports: a tree whose ``commit_voucher_decision`` takes ``device=`` gets the
folded device record, and so on, so the same file measures both sides of an
A/B. Nothing here asserts a timing; it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import importlib
import inspect
import json
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from brski_storage import NewVoucherRequest, RegistrarStore, StateChange, open_registrar_store
from brski_storage.records import NewEvent

T0 = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)
ISSUER = "CN=brski dev IDevID CA,O=brski dev manufacturer"
MFR = "CN=brski dev manufacturer root,O=brski dev manufacturer"


def _has(fn: Callable[..., Any], name: str) -> bool:
    return name in inspect.signature(fn).parameters


def _ev(now: datetime, kind: str, serial: str, outcome: Any, check: str, **detail: Any) -> NewEvent:
    return NewEvent(at=now, kind=kind, device_serial=serial, outcome=outcome, check=check, detail=detail)


def _task_cpu(tid: int) -> float:
    """CPU seconds of thread ``tid`` of this process, to the nanosecond: Linux's
    per-thread CPU clock (MAKE_THREAD_CPUCLOCK(tid, CPUCLOCK_SCHED))."""
    return time.clock_gettime(((~tid) << 3) | 6)


class Features:
    def __init__(self, store: RegistrarStore) -> None:
        self.fold_device = _has(store.commit_voucher_decision, "device")
        self.status_with_audit = _has(store.add_status_report, "audit_log")
        # Sign first, then one transaction (record_issued_certificate), or reserve + complete.
        self.one_write_issue = hasattr(store, "record_issued_certificate")


def _serial(i: int) -> str:
    return f"B-{os.getpid()}-{i:07d}"


async def onboard(store: Any, feats: Features, i: int) -> None:
    await before_enrol(store, feats, i)
    await enrol(store, feats, i)
    await enroll_status(store, i)


async def before_enrol(store: Any, feats: Features, i: int) -> None:
    # Any: the calls follow the tree measured (see Features), not one interface.
    serial = _serial(i)
    now = T0 + timedelta(microseconds=i)
    fp = hashlib.sha256(serial.encode()).hexdigest()
    pledge_vr, registrar_vr = os.urandom(2900), os.urandom(4100)
    # --- voucher request (RFC 8995 5.2-5.6) ---
    decision_events = [
        _ev(now, "admission.decided", serial, "allow", "registrar.manufacturer-trusted", manufacturer=MFR,
            manufacturer_policy="anchor", manufacturer_name="dev", first_use_pinned=False),
        _ev(now, "voucher.requested", serial, "info", "registrar.voucher-request", masa="https://masa.example:8444",
            media_type="application/voucher-cms+json"),
    ]
    vr = NewVoucherRequest(nonce=os.urandom(16), pledge_request=pledge_vr, registrar_request=registrar_vr,
                           media_type="application/voucher-cms+json")
    if feats.fold_device:
        NewDevice = importlib.import_module("brski_storage.records").NewDevice  # not in every tree

        await store.get_device(serial)
        await store.get_approval(serial)
        await store.commit_voucher_decision(
            serial, at=now, device=NewDevice(idevid_issuer=ISSUER, idevid_fingerprint=fp, manufacturer=MFR),
            voucher_request=vr, events=decision_events)
    else:
        await store.upsert_device(serial, idevid_issuer=ISSUER, idevid_fingerprint=fp, manufacturer=MFR, at=now)
        await store.get_approval(serial)
        await store.commit_voucher_decision(serial, at=now, voucher_request=vr, events=decision_events)
    await store.add_voucher(
        serial=serial, voucher=os.urandom(3000), media_type="application/voucher-cms+json", assertion="logged",
        nonce=vr.nonce, expires_on=None, received_at=now,
        then=StateChange(state="voucher-obtained", reason="voucher from MASA"),
        events=(_ev(now, "voucher.obtained", serial, "allow", "registrar.voucher", assertion="logged",
                    masa="https://masa.example:8444"),))
    # --- voucher status + audit log (RFC 8995 5.7, 5.8) ---
    await store.get_device(serial)
    status_event = _ev(now, "telemetry.voucher-status", serial, "info", "registrar.voucher-status",
                       status=True, reason=None)
    audit_body = json.dumps({"version": "1", "events": [{"date": now.isoformat(), "domainID": "x" * 27,
                                                         "nonce": None, "assertion": "logged",
                                                         "truncated": 0}]}).encode()
    reviewed = _ev(now, "auditlog.reviewed", serial, "allow", "registrar.audit.own-domain", entries=1,
                   detail="only this registrar's domain")
    status = dict(serial=serial, kind="voucher", status=True, reason=None,
                  body='{"version":"1","status":true}', received_at=now)
    if feats.status_with_audit:
        NewAuditLog = importlib.import_module("brski_storage.records").NewAuditLog

        await store.latest_voucher_request(serial)
        await store.add_status_report(**status, events=(status_event,),
                                      audit_log=NewAuditLog(fetched_at=now, body=audit_body, events=(reviewed,)))
    else:
        await store.add_status_report(**status, events=(status_event,))
        await store.latest_voucher_request(serial)
        await store.get_device(serial)
        await store.add_audit_log(serial=serial, fetched_at=now, body=audit_body, events=(reviewed,))


async def enrol(store: Any, feats: Features, i: int) -> None:
    serial = _serial(i)
    now = T0 + timedelta(microseconds=i)
    # --- simpleenroll (RFC 7030 4.2.1) ---
    await store.get_device(serial)
    await store.get_approval(serial)
    await store.latest_audit_log(serial)
    await store.list_certificates(serial)
    spki = hashlib.sha256(b"key" + serial.encode()).digest()
    await store.latest_certificate_for_key(spki)
    cert_serial = hashlib.sha256(b"cert" + serial.encode()).hexdigest()[:32]
    issued = dict(der=os.urandom(720), not_before=now, not_after=now + timedelta(days=365), at=now,
                  then=StateChange(state="enrolled", reason="LDevID issued"),
                  events=(_ev(now, "credential.issued", serial, "allow", "registrar.issue", cert_serial=cert_serial,
                              subject=f"serialNumber={serial}", not_after=(now + timedelta(days=365)).isoformat(),
                              renews=None, spki_sha256=spki.hex(), profile="default"),))
    if feats.one_write_issue:
        await store.record_issued_certificate(cert_serial=cert_serial, device_serial=serial, spki_sha256=spki,
                                              **issued)
    else:
        await store.reserve_certificate(cert_serial=cert_serial, device_serial=serial, spki_sha256=spki, at=now)
        await store.complete_certificate(cert_serial, **issued)
    await store.list_certificates(serial)


async def enroll_status(store: Any, i: int) -> None:
    serial = _serial(i)
    now = T0 + timedelta(microseconds=i)
    cert_serial = hashlib.sha256(b"cert" + serial.encode()).hexdigest()[:32]
    # --- enroll status (RFC 8995 5.9.4) ---
    await store.get_certificate(cert_serial)
    await store.add_status_report(
        serial=serial, kind="enroll", status=True, reason=None, body='{"version":"1","status":true}',
        received_at=now, events=(_ev(now, "telemetry.enroll-status", serial, "info", "registrar.enroll-status",
                                     status=True, reason=None),))


async def _wal_syncs(url: str) -> int | None:
    if not url.startswith("postgresql"):
        return None
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT wal_sync FROM pg_stat_wal").fetchone()
    return None if row is None else int(row[0])


async def one_round(url: str, *, onboardings: int, concurrency: int, start: int,
                    enroll_only: bool = False) -> dict[str, float]:
    store: Any = await open_registrar_store(url)
    try:
        db: Any = store.database
        feats = Features(store)
        writer_tid: int = db._writer.native_id
        main_tid = threading.get_native_id()
        jobs = 0
        original = db.write

        async def counted(fn: Any, *a: Any, **kw: Any) -> Any:
            nonlocal jobs
            jobs += 1
            return await original(fn, *a, **kw)

        db.write = counted
        await onboard(store, feats, start - 1)  # warm-up: statement caches, pages
        step = onboard
        if enroll_only:  # only the simpleenroll calls timed; each device vouched for beforehand
            for i in range(start, start + onboardings):
                await before_enrol(store, feats, i)
            step = enrol
        c0, f0, j0 = db.commits, getattr(db, "flushes", db.commits), jobs
        w0 = await _wal_syncs(url)
        p0, m0, t0 = time.process_time(), _task_cpu(main_tid), _task_cpu(writer_tid)
        queue = iter(range(start, start + onboardings))

        async def worker() -> None:
            for i in queue:
                await step(store, feats, i)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        p1, m1, t1 = time.process_time(), _task_cpu(main_tid), _task_cpu(writer_tid)
        w1 = await _wal_syncs(url)
        n = onboardings
        out = {
            "process_ms": (p1 - p0) * 1000 / n,
            "main_ms": (m1 - m0) * 1000 / n,
            "writer_ms": (t1 - t0) * 1000 / n,
            "jobs": (jobs - j0) / n,
            "commits": (db.commits - c0) / n,
            "flushed_commits": (getattr(db, "flushes", db.commits) - f0) / n,
        }
        if w0 is not None and w1 is not None:
            out["pg_wal_syncs"] = (w1 - w0) / n
        return out
    finally:
        await store.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    ap.add_argument("--onboardings", type=int, default=400)
    ap.add_argument("--concurrency", default="1,8")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--enroll-only", action="store_true", help="time only the simpleenroll calls (per enrolment)")
    args = ap.parse_args()
    import brski_storage

    print(f"tree: {Path(brski_storage.__file__).parent.parent}")
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        if args.database == "postgresql":
            from brski_cli.pgcluster import pg_cluster

            cm: Any = pg_cluster(durable=True)
        else:
            import contextlib

            cm = contextlib.nullcontext()
        with cm as cluster:
            for conc in (int(c) for c in args.concurrency.split(",")):
                rounds = []
                for r in range(args.rounds):
                    url = (cluster.new_schema("registrar") if cluster is not None
                           else f"sqlite:///{tmp}/r{conc}-{r}.db")
                    rounds.append(asyncio.run(one_round(url, onboardings=args.onboardings, concurrency=conc,
                                                        start=1 + r * 10 * args.onboardings,
                                                        enroll_only=args.enroll_only)))
                med = {k: statistics.median(x[k] for x in rounds) for k in rounds[0]}
                spread = {k: (min(x[k] for x in rounds), max(x[k] for x in rounds)) for k in rounds[0]}
                print(f"concurrency {conc}: " + ", ".join(
                    f"{k} {v:.3f} [{spread[k][0]:.3f}-{spread[k][1]:.3f}]" for k, v in med.items()), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
