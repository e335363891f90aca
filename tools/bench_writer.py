"""The store writer thread's CPU per onboarding, alone and attributed by part.

``PYTHONPATH=TREE python tools/bench_writer.py [--role registrar|masa|both]
[--onboardings 400] [--concurrency 1,6] [--rounds 3] [--attribute]``

Runs the write calls one onboarding makes (the registrar's: those of
``tools/bench_store.py``, reads included; the MASA's: the voucher's
transaction ``issue_voucher_atomically`` with its first owner, and the
audit-log request's ``auditlog.served`` event, with the device-record read
between them) against a real SQLite file (WAL, ``synchronous=FULL``), one
onboarding per worker at a time, ``--concurrency`` workers.

``--lockstep`` makes the writes of the workers wait for each other and
queues them together, so that every group commit holds exactly one write of
each worker: the COMMITs per onboarding are then the same in every run
(jobs / concurrency), where free-running workers form groups by timing, which
the load of the machine moves, and the writer's CPU with them.

``--unflushed-enroll-status`` is a what-if: the registrar's enroll-status
report written with ``flush=False``, to measure what that report's own flush
costs (the store flushes it; see docs/performance.md).

Without ``--attribute`` it prints, per concurrency, the medians over rounds of
the writer thread's CPU, the main thread's and the process's per onboarding
(Linux per-thread CPU clocks), and write jobs, COMMITs and flushed COMMITs per
onboarding. With ``--attribute`` the writer connection times every statement
it runs by kind (BEGIN, SAVEPOINT, RELEASE, COMMIT, the chain head read, the
event INSERT, the state-evidence facts read, the rest by verb) and the Python
parts around them (each job's body by store method, the evidence event's
encoding, the event hash): CPU of the writer thread, per onboarding, in
microseconds. The timers cost CPU themselves (printed: calls per onboarding and
the cost of one); attribution runs are for shares, the plain runs for totals.
Nothing here asserts a timing; it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import hashlib
import importlib.util
import os
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

T0 = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)

_spec = importlib.util.spec_from_file_location("bench_store", Path(__file__).with_name("bench_store.py"))
assert _spec is not None and _spec.loader is not None
bench_store = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_store)


def _task_cpu(tid: int) -> float:
    return time.clock_gettime(((~tid) << 3) | 6)  # Linux per-thread CPU clock of ``tid``


# --- attribution ------------------------------------------------------------------------

PARTS: collections.Counter[str] = collections.Counter()  # part -> ns of writer CPU
CALLS = [0]  # timer pairs taken
_now = time.thread_time_ns


def _sql_kind(sql: str) -> str:
    head = sql.lstrip()[:24].upper()
    for word in ("BEGIN", "COMMIT", "SAVEPOINT", "RELEASE", "ROLLBACK", "PRAGMA"):
        if head.startswith(word):
            return f"txn {word}"
    if head.startswith("SELECT HASH FROM EVENTS"):
        return "chain: head read"
    if head.startswith("INSERT INTO EVENTS"):
        return "chain: event INSERT"
    if head.startswith("SELECT '"):
        return "evidence: facts read"
    return "sql " + head.split()[0]


def _timed_connection(base: type[sqlite3.Connection]) -> type[sqlite3.Connection]:
    def execute(self: sqlite3.Connection, sql: str, params: Any = ()) -> sqlite3.Cursor:
        t = _now()
        try:
            return base.execute(self, sql, params)
        finally:
            PARTS[_sql_kind(sql)] += _now() - t
            CALLS[0] += 1

    return type("TimedConnection", (base,), {"execute": execute})


def _wrap(owner: Any, name: str, part: str) -> None:
    fn = getattr(owner, name)

    def timed(*a: Any, **kw: Any) -> Any:
        t = _now()
        try:
            return fn(*a, **kw)
        finally:
            PARTS[part] += _now() - t
            CALLS[0] += 1

    setattr(owner, name, timed)


def install_writer_connect(*, timed: bool, pragmas: list[str]) -> None:
    """The writer's connection timed (see _timed_connection) and/or given
    extra ``pragmas`` (experiments: the engine's own are set after these)."""
    real_connect: Any = sqlite3.connect

    def connect(*a: Any, **kw: Any) -> Any:
        if not threading.current_thread().name.startswith("brski-sqlite-writer"):
            return real_connect(*a, **kw)
        if timed:
            kw["factory"] = _timed_connection(kw.get("factory", sqlite3.Connection))
        conn = real_connect(*a, **kw)
        for pragma in pragmas:
            conn.execute(f"PRAGMA {pragma}")
        return conn

    setattr(sqlite3, "connect", connect)  # noqa: B010 (the engine calls sqlite3.connect)


def install_attribution() -> None:
    import brski_storage.sqlite_events as events
    from brski_storage import chain

    # Inclusive times of Python parts (their statements are counted above too).
    _wrap(events.PreparedEvent, "digest", "chain: event hash (incl.)")
    _wrap(events.PreparedEvent, "chain", "chain: whole (incl. head read, hash, INSERT)")
    _wrap(chain, "canonical_json", "canonical_json (incl.)")
    import brski_storage.evidence as evidence

    _wrap(evidence, "record_state", "evidence: record_state (incl. facts, encode, chain)")
    _wrap(evidence, "row_facts", "evidence: row_facts (incl.)")


def _label(fn: Any, caller: str) -> Any:
    def job(conn: Any) -> Any:
        t = _now()
        try:
            return fn(conn)
        finally:
            PARTS[f"job body: {caller}"] += _now() - t
            CALLS[0] += 1

    return job


# --- the onboardings ----------------------------------------------------------------------


async def registrar_onboarding(store: Any, feats: Any, i: int) -> None:
    await bench_store.onboard(store, feats, i)


def _masa_serial(i: int) -> str:
    return f"M-{os.getpid()}-{i:07d}"


async def masa_onboarding(store: Any, feats: Any, i: int) -> None:
    serial = _masa_serial(i)
    now = T0 + timedelta(microseconds=i)
    domain_der = os.urandom(560)
    domain = hashlib.sha256(domain_der).digest()
    did = "x" * 43
    # /requestvoucher: the device record (inline read), then the voucher's transaction.
    await store.get_manufactured_device(serial)
    await store.owners(serial)
    await store.issue_voucher_atomically(
        serial=serial, voucher=os.urandom(3000), media_type="application/voucher-cms+json", assertion="logged",
        nonce=os.urandom(16), registrar_spki_sha256=hashlib.sha256(b"ra").digest(), domain_ca_spki_sha256=domain,
        domain_id=did, created_at=now, expires_on=None, new_owner_der=domain_der, event_kind="voucher.issued",
        event_check="masa.first-claim",
        event_detail={"assertion": "logged", "domain_id": did, "registrar": "CN=registrar,O=domain",
                      "nonceless": False},
    )
    # /requestauditlog: the entries (inline read), then the served event.
    entries = await store.audit_entries(serial)
    await store.append_event(at=now, kind="auditlog.served", device_serial=serial, outcome="allow",
                             check="masa.auditlog.claimed", detail={"domain_id": did, "entries": len(entries)})


async def one_round(role: str, url: str, *, onboardings: int, concurrency: int, start: int,
                    lockstep: bool = False, unflushed_enroll_status: bool = False) -> dict[str, float]:
    from brski_storage import open_masa_store, open_registrar_store

    if role == "registrar":
        store: Any = await open_registrar_store(url)
        feats: Any = bench_store.Features(store)
        step = registrar_onboarding
    else:
        store = await open_masa_store(url)
        feats = None
        step = masa_onboarding
        await store.add_manufactured_devices(
            [(_masa_serial(i), hashlib.sha256(str(i).encode()).hexdigest())
             for i in range(start - 1, start + onboardings)], at=T0)
    try:
        db: Any = store.database
        writer_tid: int = db._writer.native_id
        main_tid = threading.get_native_id()
        jobs = 0
        original = db.write
        # --lockstep: the writes of the workers wait for each other and are
        # queued together, so every group holds one write of each worker.
        pending: list[tuple[Any, dict[str, Any], asyncio.Future[Any]]] = []
        active = [0]

        def release() -> None:
            batch = pending[:]
            pending.clear()
            for fn, kw, fut in batch:
                task = asyncio.ensure_future(original(fn, **kw))
                task.add_done_callback(lambda t, f=fut: f.set_exception(e) if (e := t.exception()) else f.set_result(t.result()))

        async def counted(fn: Any, *a: Any, **kw: Any) -> Any:
            nonlocal jobs
            jobs += 1
            caller = sys._getframe(1)
            job = _label(fn, caller.f_code.co_name)
            if unflushed_enroll_status and caller.f_locals.get("kind") == "enroll":
                kw = {**kw, "flush": False}  # what-if only: the store flushes it
            if not active[0]:
                return await original(job, *a, **kw)
            fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            pending.append((job, kw, fut))
            if len(pending) >= active[0]:
                release()
            return await fut

        db.write = counted
        await step(store, feats, start - 1)  # warm-up
        PARTS.clear()
        CALLS[0] = 0
        c0, f0, j0 = db.commits, getattr(db, "flushes", db.commits), jobs
        p0, m0, t0 = time.process_time(), _task_cpu(main_tid), _task_cpu(writer_tid)
        todo = iter(range(start, start + onboardings))

        async def worker() -> None:
            try:
                for i in todo:
                    await step(store, feats, i)
            finally:
                if lockstep:
                    active[0] -= 1
                    if pending and len(pending) >= active[0]:
                        release()

        if lockstep:
            active[0] = concurrency
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        p1, m1, t1 = time.process_time(), _task_cpu(main_tid), _task_cpu(writer_tid)
        n = onboardings
        out = {
            "writer_us": (t1 - t0) * 1e6 / n,
            "main_us": (m1 - m0) * 1e6 / n,
            "process_us": (p1 - p0) * 1e6 / n,
            "jobs": (jobs - j0) / n,
            "commits": (db.commits - c0) / n,
            "flushed": (getattr(db, "flushes", db.commits) - f0) / n,
        }
        for part, ns in PARTS.items():
            out["part " + part] = ns / 1000 / n
        out["timer pairs"] = CALLS[0] / n
        return out
    finally:
        await store.close()


def _timer_cost_ns() -> float:
    n = 200_000
    t = time.thread_time_ns()
    for _ in range(n):
        _now()
    return (time.thread_time_ns() - t) / n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--role", choices=("registrar", "masa", "both"), default="both")
    ap.add_argument("--onboardings", type=int, default=400)
    ap.add_argument("--concurrency", default="1,6")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--attribute", action="store_true")
    ap.add_argument("--lockstep", action="store_true",
                    help="groups of exactly one write per worker (commits per onboarding fixed)")
    ap.add_argument("--unflushed-enroll-status", action="store_true",
                    help="what-if: the enroll-status report written with flush=False (what its flush costs)")
    ap.add_argument("--pragma", action="append", default=[], help="extra writer PRAGMA, e.g. wal_autocheckpoint=4000")
    args = ap.parse_args()
    if args.attribute or args.pragma:
        install_writer_connect(timed=args.attribute, pragmas=args.pragma)
    if args.attribute:
        install_attribution()
    import brski_storage

    print(f"tree: {Path(brski_storage.__file__).parent.parent}")
    if args.attribute:
        print(f"one timer read: {_timer_cost_ns():.0f} ns (a timed part costs two)")
    roles = ("registrar", "masa") if args.role == "both" else (args.role,)
    with tempfile.TemporaryDirectory(prefix="bench-writer-") as tmp:
        for role in roles:
            for conc in (int(c) for c in args.concurrency.split(",")):
                rounds = []
                for r in range(args.rounds):
                    url = f"sqlite:///{tmp}/{role}-{conc}-{r}.db"
                    rounds.append(asyncio.run(one_round(role, url, onboardings=args.onboardings,
                                                        concurrency=conc, start=1 + r * 10 * args.onboardings,
                                                        lockstep=args.lockstep,
                                                        unflushed_enroll_status=args.unflushed_enroll_status)))
                keys = sorted({k for x in rounds for k in x}, key=lambda k: (k.startswith("part"), k))
                print(f"{role}, concurrency {conc}, medians of {args.rounds} rounds of {args.onboardings}:")
                for k in keys:
                    vals = [x.get(k, 0.0) for x in rounds]
                    print(f"  {k:58s} {statistics.median(vals):9.2f}  [{min(vals):.2f}-{max(vals):.2f}]")
                sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
