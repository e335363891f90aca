"""Group commit in the SQLite writer (added for the fleet benchmark).

Writes queued together share one transaction and one fsync, yet each keeps
the contract of :meth:`SqliteDatabase.write`: its own atomicity, its own
error, and an answer only after the durable COMMIT.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from brski.errors import Conflict, StorageError
from brski_storage.sqlite import SqliteDatabase


def _execute(sql: str, params: tuple[object, ...]) -> Callable[[sqlite3.Connection], sqlite3.Cursor]:
    """One write running ``sql`` with ``params`` (each queued write binds its own)."""
    return lambda c: c.execute(sql, params)


async def _db(tmp_path: Path) -> SqliteDatabase:
    db = await SqliteDatabase.open(tmp_path / "g.db", role="masa")
    await db.write(lambda c: c.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER)"))
    return db


async def test_one_failing_write_in_a_group_rolls_back_only_itself(tmp_path: Path) -> None:
    db = await _db(tmp_path)
    try:

        def insert(k: str, *, then_fail: bool = False) -> Callable[[sqlite3.Connection], str]:
            def run(c: sqlite3.Connection) -> str:
                c.execute("INSERT INTO t VALUES (?, 1)", (k,))
                if then_fail:
                    raise ValueError("boom after a write")
                return k

            return run

        jobs = [db.write(insert(f"k{i}", then_fail=(i == 3))) for i in range(10)]
        jobs.append(db.write(insert("k5")))  # duplicate key
        results = await asyncio.gather(*jobs, return_exceptions=True)
        assert isinstance(results[3], StorageError)
        assert isinstance(results[10], Conflict)
        assert [r for i, r in enumerate(results) if i not in (3, 10)] == [f"k{i}" for i in range(10) if i != 3]
        rows = await db.read(lambda c: sorted(r[0] for r in c.execute("SELECT k FROM t")))
        assert rows == sorted(f"k{i}" for i in range(10) if i != 3)
    finally:
        await db.close()


async def test_writes_queued_during_a_commit_share_the_next_one(tmp_path: Path) -> None:
    """The point of group commit: 51 writes queued together cost one or two COMMITs
    (one fsync each), not 51. The first write holds the writer thread until all are
    queued, so whether the writer took it alone or with the others, the other 50
    share one transaction whatever the timing."""
    db = await _db(tmp_path)
    try:
        release = threading.Event()

        def blocking(c: sqlite3.Connection) -> None:
            release.wait(timeout=30)
            c.execute("INSERT INTO t VALUES ('first', 0)")

        before = db.commits
        first = asyncio.ensure_future(db.write(blocking))
        rest = [
            asyncio.ensure_future(db.write(_execute("INSERT INTO t VALUES (?, ?)", (f"g{i}", i))))
            for i in range(50)
        ]
        await asyncio.sleep(0)  # every write is now queued
        release.set()
        await asyncio.gather(first, *rest)
        assert db.commits - before <= 2
        assert await db.read(lambda c: c.execute("SELECT count(*) FROM t").fetchone()[0]) == 51
    finally:
        await db.close()


async def test_every_commit_is_fsynced(tmp_path: Path) -> None:
    """WAL with synchronous=FULL: SQLite fsyncs the WAL at every COMMIT (with NORMAL it
    would not, and the last answered writes could vanish on power loss). The fsync
    itself is SQLite's and invisible from Python; the setting that governs it is
    read back from the writer's own connection."""
    db = await _db(tmp_path)
    try:
        sync, mode = await db.write(
            lambda c: (c.execute("PRAGMA synchronous").fetchone()[0], c.execute("PRAGMA journal_mode").fetchone()[0])
        )
        assert (sync, str(mode).lower()) == (2, "wal")  # 2 is FULL
    finally:
        await db.close()


async def test_answered_writes_are_durable_for_a_new_connection(tmp_path: Path) -> None:
    db = await _db(tmp_path)
    try:
        await asyncio.gather(*(db.write(_execute("INSERT INTO t VALUES (?, ?)", (f"d{i}", i))) for i in range(200)))
        # A fresh connection, not the store's, sees every answered write.
        con = sqlite3.connect(tmp_path / "g.db")
        try:
            assert con.execute("SELECT count(*) FROM t").fetchone()[0] == 200
        finally:
            con.close()
    finally:
        await db.close()


async def test_a_later_write_in_the_group_sees_an_earlier_one(tmp_path: Path) -> None:
    db = await _db(tmp_path)
    try:
        first = db.write(lambda c: c.execute("INSERT INTO t VALUES ('a', 1)"))
        second = db.write(lambda c: c.execute("UPDATE t SET v = v + 1 WHERE k = 'a'").rowcount)
        _, updated = await asyncio.gather(first, second)
        assert updated == 1
        assert await db.read(lambda c: c.execute("SELECT v FROM t WHERE k = 'a'").fetchone()[0]) == 2
    finally:
        await db.close()


@pytest.mark.parametrize("n", [1, 130])
async def test_close_lets_queued_writes_finish(tmp_path: Path, n: int) -> None:
    db = await _db(tmp_path)
    pending = [asyncio.ensure_future(db.write(_execute("INSERT INTO t VALUES (?, 0)", (f"c{i}",)))) for i in range(n)]
    await asyncio.sleep(0)
    await db.close()
    await asyncio.gather(*pending)
    con = sqlite3.connect(tmp_path / "g.db")
    try:
        assert con.execute("SELECT count(*) FROM t").fetchone()[0] == n
    finally:
        con.close()
