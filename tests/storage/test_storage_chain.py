"""brski_storage's event chain and writer, on both engines (the SQLite writer
thread itself on real files: ``sqlite_only``), and the MASA store's devices and
owners. Tampering with the chain is in test_storage_tamper.py; events riding
with a write in test_storage_events.py."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from brski.errors import Conflict, NotFound, StorageError
from brski_storage import (
    MasaStore,
    RegistrarStore,
    open_registrar_store,
)
from brski_storage.sqlite import SqliteDatabase
from brski_storage.sqlite_registrar import SqliteRegistrarStore
from tests.storage_helpers import add_device, fill_events, raw, spki, t

# --- event chain ---------------------------------------------------------------------------


async def test_event_chain_intact_and_queries(store: RegistrarStore) -> None:
    await fill_events(store)
    report = await store.verify_event_chain()
    assert report.ok and report.count == 10 and report.head_id == 10
    events = await store.events()
    assert report.head_hash == events[-1].hash
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(events))
    assert [e.id for e in await store.events(since_id=7)] == [8, 9, 10]
    assert [e.id for e in await store.events(device_serial="P-1", limit=2)] == [2, 5]
    with pytest.raises(ValueError):
        await store.append_event(
            at=t(0),
            kind="k",
            device_serial=None,
            outcome="maybe",  # type: ignore[arg-type]
            check=None,
            detail={},
        )
    with pytest.raises(TypeError):
        await store.append_event(
            at=t(0),
            kind="k",
            device_serial=None,
            outcome="info",
            check=None,
            detail={"x": object()},
        )
    assert (await store.verify_event_chain()).count == 10


async def test_200_concurrent_appends_all_land_in_one_chain(store: RegistrarStore) -> None:
    results = await asyncio.gather(
        *(
            store.append_event(
                at=t(i), kind="c", device_serial=None, outcome="info", check=None, detail={"n": i}
            )
            for i in range(200)
        )
    )
    assert sorted(e.id for e in results) == list(range(1, 201))
    assert sorted(e.detail["n"] for e in await store.events(limit=1000)) == list(range(200))
    report = await store.verify_event_chain()
    assert report.ok and report.count == 200


# --- the writer thread ---------------------------------------------------------------------


@pytest.mark.sqlite_only
async def test_writer_errors_reach_the_caller_as_storage_error(
    store: RegistrarStore, db_path: Path
) -> None:
    assert isinstance(store, SqliteRegistrarStore)
    await fill_events(store, 3)

    def half_then_fail(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO devices VALUES ('half', 'i', 'f', 'm', 's', 'a', 'b')")
        raise RuntimeError("boom")

    with pytest.raises(StorageError) as info:
        await store.database.write(half_then_fail)
    assert info.value.check == "storage.write-failed" and info.value.http_status == 503
    assert await store.get_device("half") is None  # rolled back

    # A failure inside SQLite itself, injected from outside the process.
    with raw(db_path) as conn:
        conn.execute(
            "CREATE TRIGGER fail_events BEFORE INSERT ON events "
            "BEGIN SELECT RAISE(ABORT, 'disk on fire'); END"
        )
    with pytest.raises(StorageError) as info:
        await store.append_event(
            at=t(9), kind="k", device_serial=None, outcome="info", check=None, detail={}
        )
    assert "disk on fire" in info.value.detail
    with raw(db_path) as conn:
        conn.execute("DROP TRIGGER fail_events")

    # The writer survived both failures and the chain is intact.
    await store.append_event(
        at=t(10), kind="k", device_serial=None, outcome="info", check=None, detail={}
    )
    report = await store.verify_event_chain()
    assert report.ok and report.count == 4


async def test_closed_store_refuses_work(new_store_url: Callable[[str], str]) -> None:
    s = await open_registrar_store(new_store_url("registrar"))
    await s.close()
    await s.close()
    with pytest.raises(StorageError) as info:
        await s.get_device("x")
    assert info.value.check == "storage.closed"
    with pytest.raises(StorageError):
        await add_device(s, "x")


async def test_queued_writes_finish_before_close(new_store_url: Callable[[str], str]) -> None:
    url = new_store_url("registrar")
    s = await open_registrar_store(url)
    pending = [asyncio.ensure_future(add_device(s, f"Q{i}")) for i in range(50)]
    await asyncio.sleep(0)  # let every task enqueue its write
    await s.close()
    await asyncio.gather(*pending)
    async with await open_registrar_store(url) as s2:
        assert (await s2.stats())["devices"] == 50


async def test_open_failure_is_a_storage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a dir")
    with pytest.raises(StorageError):
        await SqliteDatabase.open(blocker / "x.db", role="registrar")


# --- MASA --------------------------------------------------------------------------------------


async def test_masa_devices_and_owners(masa: MasaStore) -> None:
    d = await masa.add_manufactured_device("M-1", idevid_fingerprint="aa", at=t(0))
    assert await masa.add_manufactured_device("M-1", idevid_fingerprint="aa", at=t(5)) == d
    with pytest.raises(Conflict):
        await masa.add_manufactured_device("M-1", idevid_fingerprint="bb", at=t(5))
    await masa.add_manufactured_device("M-2", idevid_fingerprint="cc", at=t(0))
    assert await masa.count_devices() == 2
    assert await masa.get_manufactured_device("nope") is None

    owner = await masa.add_owner(
        "M-1", domain_ca_spki_sha256=spki(1), domain_ca_der=b"ca1", at=t(1)
    )
    assert owner.domain_ca_der == b"ca1" and owner.added_at == t(1)
    with pytest.raises(Conflict) as info:
        await masa.add_owner("M-1", domain_ca_spki_sha256=spki(1), domain_ca_der=b"ca1", at=t(2))
    assert info.value.check == "storage.duplicate-key"
    with pytest.raises(NotFound):
        await masa.add_owner("ghost", domain_ca_spki_sha256=spki(1), domain_ca_der=b"x", at=t(2))
    await masa.add_owner("M-2", domain_ca_spki_sha256=spki(1), domain_ca_der=b"ca1", at=t(2))
    await masa.add_owner("M-1", domain_ca_spki_sha256=spki(2), domain_ca_der=b"ca2", at=t(3))
    assert [o.domain_ca_der for o in await masa.owners("M-1")] == [b"ca1", b"ca2"]
    await masa.remove_owner("M-1", domain_ca_spki_sha256=spki(1))
    with pytest.raises(NotFound):
        await masa.remove_owner("M-1", domain_ca_spki_sha256=spki(1))
    assert [(o.serial, o.domain_ca_der) for o in await masa.list_owners()] == [
        ("M-1", b"ca2"),
        ("M-2", b"ca1"),
    ]
