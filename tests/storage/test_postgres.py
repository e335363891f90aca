"""What only a shared server makes possible: several processes writing one
PostgreSQL store at once, and a server that drops connections."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from brski.errors import ConfigError, StorageError
from brski_cli.pgcluster import PgCluster
from brski_storage import open_masa_store, open_registrar_store
from brski_storage.migrate import load_migrations
from brski_storage.sqlite_registrar import SqliteRegistrarStore
from tests.store_helpers import as_int, raw_execute, raw_rows

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]


def test_writers_in_four_processes_keep_one_chain_and_unique_serials(postgres: PgCluster) -> None:
    """Four processes migrate a fresh schema at once, then append events and
    race for the same certificate serials and keys: every event lands in one
    unforked chain and each serial/key is reserved exactly once."""
    url = postgres.new_schema("race")
    writers, count = 4, 60
    procs = [
        subprocess.Popen([sys.executable, "-m", "tests.storage.chain_writer", url, str(w), str(count)],
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for w in range(writers)
    ]
    outcomes = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        outcomes.append(json.loads(out))
    assert sum(o["won"] for o in outcomes) == count  # each serial/key exactly once
    assert sum(o["lost"] for o in outcomes) == count * (writers - 1)
    assert raw_rows(url, "SELECT count(*) FROM schema_migrations")[0][0] == len(
        raw_rows(url, "SELECT DISTINCT version FROM schema_migrations"))
    # No fork: every prev_hash is followed once, ids are gapless, the walk verifies.
    # (Besides the writers' events, each state-bearing write chains its state evidence.)
    n, distinct, first, last = map(as_int, raw_rows(url, "SELECT count(*), count(DISTINCT prev_hash), min(id), max(id) FROM events")[0])
    assert n == distinct == last and first == 1 and n >= writers * count + count

    async def verify() -> None:
        async with await open_registrar_store(url) as store:
            report = await store.verify_event_chain()
            assert report.ok and report.count == n, report
            assert (await store.stats())["certificates.issued"] == count

    import asyncio

    asyncio.run(verify())


def test_a_forked_chain_is_refused_by_the_database(postgres: PgCluster) -> None:
    """Even a writer that bypassed the head lock cannot fork the chain."""
    import asyncio

    url = postgres.new_schema("fork")

    async def setup() -> None:
        async with await open_registrar_store(url) as store:
            await store.append_event(at=T0, kind="a", device_serial=None, outcome="info", check=None, detail={})

    asyncio.run(setup())
    with pytest.raises(psycopg.errors.UniqueViolation):
        raw_execute(url, ["INSERT INTO events SELECT 2, at, kind, device_serial, outcome, check_name,"
                          " detail || ' ', prev_hash, sha256(hash) FROM events WHERE id = 1"])


async def test_writer_survives_a_dropped_connection(postgres: PgCluster) -> None:
    url = postgres.new_schema("drop")
    async with await open_registrar_store(url) as store:
        await store.append_event(at=T0, kind="a", device_serial=None, outcome="info", check=None, detail={})
        raw_execute(postgres.url(), [
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'brski-registrar' AND pid <> pg_backend_pid()"])
        try:  # the write that meets the dead connection may fail, and says so
            await store.append_event(at=T0, kind="b", device_serial=None, outcome="info", check=None, detail={})
        except StorageError:
            pass
        await store.append_event(at=T0, kind="c", device_serial=None, outcome="info", check=None, detail={})
        assert (await store.get_device("x")) is None  # readers reconnect too
        report = await store.verify_event_chain()
        assert report.ok and report.count in (2, 3)


async def test_roles_schema_version_and_reopen(postgres: PgCluster) -> None:
    url = postgres.new_schema("roles")
    async with await open_registrar_store(url, migrated_at=T0) as store:
        assert isinstance(store, SqliteRegistrarStore)
        assert store.database.applied_migrations == [m.version for m in load_migrations("postgresql", "registrar")]
        await store.upsert_device("P", idevid_issuer="i", idevid_fingerprint="f", manufacturer="m", at=T0)
    async with await open_registrar_store(url) as store:
        assert isinstance(store, SqliteRegistrarStore)
        assert store.database.applied_migrations == []
        assert (await store.get_device("P")) is not None
    with pytest.raises(ConfigError) as info:
        await open_masa_store(url)
    assert info.value.check == "storage.wrong-database"
    raw_execute(url, ["INSERT INTO schema_migrations VALUES (99, 'registrar', 'x')"])
    with pytest.raises(ConfigError) as info:
        await open_registrar_store(url)
    assert info.value.check == "storage.schema-too-new"
    # A schema holding someone else's tables is not taken over.
    other = postgres.new_schema("foreign")
    raw_execute(other, ["CREATE TABLE devices (x int)"])
    with pytest.raises(ConfigError) as info:
        await open_registrar_store(other)
    assert info.value.check == "storage.wrong-database"


async def test_the_writer_waits_for_every_commit_to_be_flushed(postgres: PgCluster) -> None:
    """The PostgreSQL half of test_every_commit_is_fsynced: whatever the server's
    default, the writer's session has synchronous_commit on, so COMMIT returns
    (and the caller is answered) only once the WAL is flushed. The flush is the
    server's and invisible from here; the setting that governs it is read back
    from the writer's own session. (The test cluster itself runs fsync=off for
    speed; that is the cluster's setting, not the engine's.)"""
    url = postgres.new_schema("durable")
    raw_execute(postgres.url(), ["ALTER DATABASE brski SET synchronous_commit = off"])
    try:
        async with await open_registrar_store(url) as store:
            assert isinstance(store, SqliteRegistrarStore)
            setting = await store.database.write(lambda c: c.execute("SHOW synchronous_commit").fetchone()[0])
            assert setting == "on"
    finally:
        raw_execute(postgres.url(), ["ALTER DATABASE brski RESET synchronous_commit"])


async def test_a_lone_write_that_fails_after_writing_leaves_no_trace(postgres: PgCluster) -> None:
    """A group of one write runs without a savepoint: when it fails after it
    wrote (here an event chained onto the locked head), the whole transaction
    and the head's move go, and the next write chains onto the last good event."""
    from brski_storage.records import NewEvent
    from brski_storage.sqlite_events import PreparedEvent

    url = postgres.new_schema("lone")
    async with await open_registrar_store(url) as store:
        await store.append_event(at=T0, kind="a", device_serial=None, outcome="info", check=None, detail={})

        def job(conn: Any) -> None:
            PreparedEvent(NewEvent(at=T0, kind="b.should-not-exist", device_serial=None, outcome="info",
                                   check=None, detail={})).chain(conn)
            raise ValueError("fails after its writes")

        with pytest.raises(StorageError):
            await store._db.write(job)  # type: ignore[attr-defined]
        await store.append_event(at=T0, kind="c", device_serial=None, outcome="info", check=None, detail={})
        assert [e.kind for e in await store.events()] == ["a", "c"]
        report = await store.verify_event_chain()
        assert report.ok and report.count == 2, report
