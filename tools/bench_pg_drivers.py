"""psycopg 3 or asyncpg for the PostgreSQL store: the registrar's write path, measured.

The write an onboarding's enrolment makes, as one transaction: lock the
event-chain head (``SELECT ... FOR UPDATE``), reserve the certificate row,
mark it issued, append the event with the next id, move the head, COMMIT.
Run ``--tasks`` of them concurrently until ``--count`` are done, on a
throw-away cluster (fsync on), with:

* asyncpg, its pool (one transaction per task, as an async store would do);
* psycopg 3, ``psycopg_pool.AsyncConnectionPool``, the same;
* the engine brski ships (``brski_storage.postgres``: psycopg 3, one writer
  thread, group commit), through the real store API
  (``reserve_certificate`` + ``complete_certificate`` with its event).

Reported per variant: transactions per second and the client's CPU per
transaction (this process's user+system time; the server's is the same SQL).
Needs ``pip install asyncpg psycopg-pool`` (measurement only; not runtime
dependencies). Usage: ``python tools/bench_pg_drivers.py [--count N] [--tasks T]``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from brski_cli.pgcluster import pg_cluster  # noqa: E402
from brski_storage import NewEvent, open_registrar_store  # noqa: E402
from brski_storage.chain import event_hash  # noqa: E402

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TS = T0.isoformat(timespec="microseconds")

_HEAD = "SELECT last_id, last_hash FROM event_chain_head FOR UPDATE"
_RESERVE = ("INSERT INTO certificates (cert_serial, device_serial, spki_sha256, state, reserved_at)"
            " VALUES ({p1}, 'DEV', {p2}, 'reserved', {p3})")
_ISSUE = ("UPDATE certificates SET state = 'issued', der = {p1}, not_before = {p2}, not_after = {p2},"
          " issued_at = {p2} WHERE cert_serial = {p3}")
_EVENT = ("INSERT INTO events (id, at, kind, device_serial, outcome, check_name, detail, prev_hash, hash)"
          " VALUES ({p1}, {p2}, 'credential.issued', 'DEV', 'allow', NULL, '{{}}', {p3}, {p4})")
_MOVE = "UPDATE event_chain_head SET last_id = {p1}, last_hash = {p2}"


def _sql(template: str, style: str) -> str:
    marks = {f"p{i}": (f"${i}" if style == "asyncpg" else "%s") for i in range(1, 5)}
    return template.format(**marks)


def _key(i: int) -> bytes:
    return hashlib.sha256(f"k{i}".encode()).digest()


def _digest(prev: bytes) -> bytes:
    return event_hash(prev, at=TS, kind="credential.issued", device_serial="DEV", outcome="allow", check=None,
                      detail={})


async def _drive(count: int, tasks: int, one: Callable[[int], Awaitable[None]]) -> tuple[float, float]:
    queue = iter(range(count))

    async def worker() -> None:
        for i in queue:
            await one(i)

    cpu0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(tasks)))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return count / wall, cpu * 1000 / count


async def _prepare(url: str) -> None:
    async with await open_registrar_store(url) as store:  # the schema, by the migrations
        await store.upsert_device("DEV", idevid_issuer="CN=ca", idevid_fingerprint="f", manufacturer="m", at=T0)


async def bench_asyncpg(url: str, count: int, tasks: int) -> tuple[float, float]:
    import asyncpg

    dsn, _, opts = url.partition("?")
    params = dict(p.split("=", 1) for p in opts.split("&"))
    from urllib.parse import unquote

    schema = unquote(params["options"]).split("=", 1)[1]
    pool = await asyncpg.create_pool(dsn=dsn, host=unquote(params["host"]), min_size=tasks, max_size=tasks,
                                     server_settings={"search_path": schema})
    assert pool is not None
    sql = {k: _sql(v, "asyncpg") for k, v in
           (("reserve", _RESERVE), ("issue", _ISSUE), ("event", _EVENT), ("move", _MOVE))}

    async def one(i: int) -> None:
        async with pool.acquire() as conn, conn.transaction():
            head = await conn.fetchrow(_HEAD)
            serial = format(10_000 + i, "x")
            await conn.execute(sql["reserve"], serial, _key(i), TS)
            await conn.execute(sql["issue"], b"\x30\x00", TS, serial)
            digest = _digest(bytes(head[1]))
            await conn.execute(sql["event"], head[0] + 1, TS, bytes(head[1]), digest)
            await conn.execute(sql["move"], head[0] + 1, digest)

    try:
        return await _drive(count, tasks, one)
    finally:
        await pool.close()


async def bench_psycopg_async(url: str, count: int, tasks: int) -> tuple[float, float]:
    from psycopg_pool import AsyncConnectionPool

    sql = {k: _sql(v, "psycopg") for k, v in
           (("reserve", _RESERVE), ("issue", _ISSUE), ("event", _EVENT), ("move", _MOVE))}
    async with AsyncConnectionPool(url, min_size=tasks, max_size=tasks, open=False) as pool:
        await pool.wait()

        async def one(i: int) -> None:
            async with pool.connection() as conn, conn.transaction():
                head = await (await conn.execute(_HEAD)).fetchone()
                assert head is not None
                serial = format(20_000 + i, "x")
                await conn.execute(sql["reserve"], (serial, _key(10**6 + i), TS))
                await conn.execute(sql["issue"], (b"\x30\x00", TS, TS, TS, serial))
                digest = _digest(bytes(head[1]))
                await conn.execute(sql["event"], (head[0] + 1, TS, bytes(head[1]), digest))
                await conn.execute(sql["move"], (head[0] + 1, digest))

        return await _drive(count, tasks, one)


async def bench_engine(url: str, count: int, tasks: int) -> tuple[float, float]:
    store = await open_registrar_store(url)

    async def one(i: int) -> None:
        serial = 30_000 + i
        await store.reserve_certificate(cert_serial=serial, device_serial="DEV", spki_sha256=_key(2 * 10**6 + i), at=T0)
        await store.complete_certificate(
            serial, der=b"\x30\x00", not_before=T0, not_after=T0, at=T0,
            events=[NewEvent(at=T0, kind="credential.issued", device_serial="DEV", outcome="allow", check=None,
                             detail={})])

    try:
        return await _drive(count, tasks, one)
    finally:
        await store.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--tasks", type=int, default=16)
    args = ap.parse_args()
    variants: dict[str, Callable[[str, int, int], Coroutine[Any, Any, tuple[float, float]]]] = {
        "asyncpg pool": bench_asyncpg,
        "psycopg 3 AsyncConnectionPool": bench_psycopg_async,
        "brski engine (psycopg 3, writer thread, group commit)": bench_engine,
    }
    results: dict[str, Any] = {}
    with pg_cluster(durable=True) as cluster:
        for name, fn in variants.items():
            url = cluster.new_schema("drv")
            asyncio.run(_prepare(url))
            rate, cpu = asyncio.run(fn(url, args.count, args.tasks))
            results[name] = (rate, cpu)
            print(f"{name:<56} {rate:8.0f} tx/s   client CPU {cpu:6.3f} ms/tx", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
