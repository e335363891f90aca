"""The SQLite writer's transactions and the event chain's head.

A group of one write runs without a savepoint (its failure rolls back the
whole transaction, which is its own work); the writer connection remembers
the chain's head inside a transaction instead of reading it back for every
event (:class:`brski_storage.sqlite.WriterConnection`). Neither may change
what is stored: these tests hold the chain and the rows to what one
transaction per write would give.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from brski.errors import StorageError
from brski_storage.records import NewEvent
from brski_storage.sqlite import SqliteDatabase
from brski_storage.sqlite_events import PreparedEvent, SqliteEventLog

T0 = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)


def _event(name: str) -> PreparedEvent:
    return PreparedEvent(NewEvent(at=T0, kind="test", device_serial=None, outcome="info", check=None,
                                  detail={"name": name}))


def _job(name: str, *, fail: bool = False) -> Callable[[sqlite3.Connection], bytes]:
    """A write: a row, an event chained after it, then (``fail``) an error."""

    def run(conn: sqlite3.Connection) -> bytes:
        conn.execute("INSERT INTO t VALUES (?)", (name,))
        _, _, digest = _event(name).chain(conn)
        if fail:
            raise ValueError(f"{name} fails after its writes")
        return digest

    return run


async def _db(tmp_path: Path) -> SqliteDatabase:
    db = await SqliteDatabase.open(tmp_path / "w.db", role="masa")
    await db.write(lambda c: c.execute("CREATE TABLE t (k TEXT PRIMARY KEY)"))
    return db


async def _state(db: SqliteDatabase) -> tuple[list[str], list[tuple[str, bytes, bytes]]]:
    def read(c: sqlite3.Connection) -> tuple[list[str], list[tuple[str, bytes, bytes]]]:
        rows = [r[0] for r in c.execute("SELECT k FROM t ORDER BY k")]
        events = [(r[0], r[1], r[2]) for r in c.execute("SELECT detail, prev_hash, hash FROM events ORDER BY id")]
        return rows, events

    return await db.read(read)


async def test_a_lone_failing_write_leaves_nothing_and_the_next_one_chains_on(tmp_path: Path) -> None:
    db = await _db(tmp_path)
    try:
        first = await db.write(_job("a"))
        with pytest.raises(StorageError):
            await db.write(_job("b", fail=True))  # alone in its group: no savepoint
        third = await db.write(_job("c"))
        rows, events = await _state(db)
        assert rows == ["a", "c"]
        assert [e[0] for e in events] == ['{"name":"a"}', '{"name":"c"}']
        assert events[1][1] == first and events[1][2] == third
        assert (await SqliteEventLog(db).verify_event_chain()).ok
    finally:
        await db.close()


async def test_a_failing_write_in_a_group_gives_its_place_in_the_chain_back(tmp_path: Path) -> None:
    db = await _db(tmp_path)
    try:
        release = threading.Event()

        def blocking(conn: sqlite3.Connection) -> None:
            release.wait(timeout=30)

        held = asyncio.ensure_future(db.write(blocking))
        await asyncio.sleep(0.05)  # the writer holds ``held``; the three below queue into one group
        before = db.commits
        jobs = [asyncio.ensure_future(db.write(_job(n, fail=n == "b"))) for n in ("a", "b", "c")]
        await asyncio.sleep(0)
        release.set()
        await held
        a, b, c = await asyncio.gather(*jobs, return_exceptions=True)
        assert isinstance(b, StorageError) and isinstance(a, bytes) and isinstance(c, bytes)
        assert db.commits - before == 2  # held's, then the three in one: the savepoints did the work
        rows, events = await _state(db)
        assert rows == ["a", "c"]
        # c links to a, not to b's event that was rolled back with b.
        assert [e[0] for e in events] == ['{"name":"a"}', '{"name":"c"}']
        assert events[1][1] == a and events[1][2] == c
        assert (await SqliteEventLog(db).verify_event_chain()).ok
    finally:
        await db.close()


async def test_each_transaction_reads_the_head_afresh(tmp_path: Path) -> None:
    """An event another connection chained between two of the writer's
    transactions (another process on the same file) is the next one's parent."""
    db = await _db(tmp_path)
    try:
        await db.write(_job("a"))
        other = sqlite3.connect(tmp_path / "w.db", isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            _, _, outside = _event("outside").chain(other)
            other.execute("COMMIT")
        finally:
            other.close()
        await db.write(_job("b"))
        _, events = await _state(db)
        assert [e[0] for e in events] == ['{"name":"a"}', '{"name":"outside"}', '{"name":"b"}']
        assert events[2][1] == outside
        assert (await SqliteEventLog(db).verify_event_chain()).ok
    finally:
        await db.close()


async def test_the_savepoint_journal_stays_in_memory(tmp_path: Path) -> None:
    """temp_store=MEMORY on the writer (2): SQLite's savepoint journal spilled
    to a temporary file past 64 KiB, two write calls per page changed."""
    db = await _db(tmp_path)
    try:
        assert await db.write(lambda c: c.execute("PRAGMA temp_store").fetchone()[0]) == 2
    finally:
        await db.close()
