"""Which commits wait for stable storage, on both engines (brski_storage.writer).

Every write is flushed before it is answered, except a group made only of
writes that said ``flush=False`` (the certificate reservation): that one is
committed (visible) without its own flush, and the next flushed commit makes
it durable with its own records. The flush itself is SQLite's (an fsync of
the WAL at a ``synchronous=FULL`` commit) or PostgreSQL's (``synchronous_commit``
on); it is invisible from Python, so these tests read back, inside the very
transaction a write runs in, the setting that governs its COMMIT.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from brski_storage import RegistrarStore, StateChange
from brski_storage.sqlite import Database
from brski_storage.sqlite_registrar import SqliteRegistrarStore
from tests.storage_helpers import add_device, spki, t

# SQLite's PRAGMA synchronous (2 FULL, 1 NORMAL), PostgreSQL's synchronous_commit.
FLUSHED = {2, "on"}
NOT_FLUSHED = {1, "off"}


def _setting(conn: sqlite3.Connection) -> Any:
    if getattr(conn, "dialect", "sqlite") == "postgresql":
        return conn.execute("SHOW synchronous_commit").fetchone()[0]
    return conn.execute("PRAGMA synchronous").fetchone()[0]


def _probe(conn: sqlite3.Connection) -> Any:
    return _setting(conn)


def _spy(db: Database) -> list[tuple[bool, Any]]:
    """Every write through ``db`` from now on records (flush asked, setting its
    transaction commits under), read after the write's own statements."""
    seen: list[tuple[bool, Any]] = []
    original: Callable[..., Awaitable[Any]] = db.write

    async def write(fn: Callable[[sqlite3.Connection], Any], *, flush: bool = True) -> Any:
        def run(conn: sqlite3.Connection) -> Any:
            result = fn(conn)
            seen.append((flush, _setting(conn)))
            return result

        return await original(run, flush=flush)

    db.write = write  # type: ignore[method-assign]
    return seen


async def test_a_write_is_flushed_unless_it_says_otherwise(store: RegistrarStore) -> None:
    assert isinstance(store, SqliteRegistrarStore)  # on PostgreSQL too: same store, other engine
    db = store.database
    commits, flushes = db.commits, db.flushes
    assert await db.write(_probe) in FLUSHED
    assert (db.commits - commits, db.flushes - flushes) == (1, 1)
    assert await db.write(_probe, flush=False) in NOT_FLUSHED
    assert (db.commits - commits, db.flushes - flushes) == (2, 1)
    # The next ordinary write is flushed again: the setting does not stick.
    assert await db.write(_probe) in FLUSHED
    assert (db.commits - commits, db.flushes - flushes) == (3, 2)


async def test_a_group_with_one_write_needing_its_flush_is_flushed(store: RegistrarStore) -> None:
    assert isinstance(store, SqliteRegistrarStore)
    db = store.database
    release = threading.Event()

    def blocking(conn: sqlite3.Connection) -> Any:
        release.wait(timeout=30)
        return _setting(conn)

    first = asyncio.ensure_future(db.write(blocking, flush=False))
    await asyncio.sleep(0.05)  # the writer holds ``first`` alone; the next two queue behind it
    unflushed = asyncio.ensure_future(db.write(_probe, flush=False))
    flushed = asyncio.ensure_future(db.write(_probe))
    await asyncio.sleep(0)
    flushes = db.flushes
    release.set()
    assert await first in NOT_FLUSHED
    # The two share one transaction and one COMMIT: the write that needs its
    # flush gets it, and its neighbour with it.
    assert await unflushed in FLUSHED
    assert await flushed in FLUSHED
    assert db.flushes - flushes == 1


async def test_a_certificate_is_answered_only_after_a_flushed_commit(store: RegistrarStore) -> None:
    """RFC 7030 4.2: the certificate a 200 to /simpleenroll carries must
    survive a crash once answered; the reservation before it need not (its
    loss leaves a signed certificate that never left the registrar), and the
    completion's flush covers it."""
    assert isinstance(store, SqliteRegistrarStore)
    await add_device(store, "P-1")
    seen = _spy(store.database)
    reserved = await store.reserve_certificate(cert_serial=0x51, device_serial="P-1", spki_sha256=spki(1), at=t(1))
    assert reserved.state == "reserved"
    assert seen == [(False, seen[0][1])] and seen[0][1] in NOT_FLUSHED
    done = await store.complete_certificate(
        0x51, der=b"\x30\x03\x02\x01\x01", not_before=t(1), not_after=t(100), at=t(2),
        then=StateChange(state="enrolled", reason="LDevID issued"),
    )
    assert done.state == "issued"
    assert seen[1][0] is True and seen[1][1] in FLUSHED
    renewal = await store.reserve_renewal(cert_serial=0x52, renews=0x51, spki_sha256=spki(1), at=t(3))
    assert renewal.state == "reserved" and seen[2][1] in NOT_FLUSHED


async def test_a_certificate_signed_first_is_recorded_in_one_flushed_commit(store: RegistrarStore) -> None:
    """The registrar's issuance (record_issued_certificate): the checks a
    reservation made, the row, its events and the state change in one write,
    answered only once flushed; no unflushed write before it."""
    assert isinstance(store, SqliteRegistrarStore)
    await add_device(store, "P-1")
    db = store.database
    seen = _spy(db)
    commits, flushes = db.commits, db.flushes
    done = await store.record_issued_certificate(
        cert_serial=0x61, device_serial="P-1", spki_sha256=spki(1), der=b"\x30\x03\x02\x01\x01",
        not_before=t(1), not_after=t(100), at=t(2), then=StateChange(state="enrolled", reason="LDevID issued"),
    )
    assert done.state == "issued"
    assert len(seen) == 1 and seen[0][0] is True and seen[0][1] in FLUSHED
    assert (db.commits - commits, db.flushes - flushes) == (1, 1)
    renewed = await store.record_issued_certificate(
        cert_serial=0x62, device_serial="P-1", spki_sha256=spki(1), renews=0x61, der=b"\x30\x03\x02\x01\x02",
        not_before=t(3), not_after=t(100), at=t(3), then=StateChange(state="enrolled", reason="LDevID renewed"),
    )
    assert renewed.state == "issued"
    assert len(seen) == 2 and seen[1][0] is True and seen[1][1] in FLUSHED
