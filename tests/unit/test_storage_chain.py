"""brski_storage on real SQLite files (and PostgreSQL): tamper detection of the
event chain (through a raw sqlite3 connection, as an attacker with file access
would), the writer thread, and the MASA store (events riding with a write:
test_storage_events.py)."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from pathlib import Path

import pytest

from brski.errors import Conflict, NotFound, StorageError
from brski_storage import (
    MasaStore,
    RegistrarStore,
    open_registrar_store,
)
from brski_storage.chain import event_hash
from brski_storage.sqlite import SqliteDatabase
from brski_storage.sqlite_masa import SqliteMasaStore
from brski_storage.sqlite_registrar import SqliteRegistrarStore
from tests.storage_helpers import add_device, raw, spki, t

# --- event chain ---------------------------------------------------------------------------


async def fill_events(store: RegistrarStore, n: int = 10) -> None:
    for i in range(n):
        await store.append_event(
            at=t(i),
            kind="voucher.request",
            device_serial=f"P-{i % 3}",
            outcome="allow" if i % 2 else "refuse",
            check=None if i % 4 else "policy.allowlist",
            detail={"i": i, "note": "ünïcode"},
        )


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


@pytest.mark.sqlite_only
async def test_chain_detects_edited_row(store: RegistrarStore, db_path: Path) -> None:
    await fill_events(store)
    with raw(db_path) as conn:
        conn.execute("""UPDATE events SET detail = '{"i":99,"note":"x"}' WHERE id = 5""")
    report = await store.verify_event_chain()
    assert (report.ok, report.problem, report.first_bad_id, report.count) == (False, "edited", 5, 4)


@pytest.mark.sqlite_only
async def test_chain_detects_edit_with_recomputed_hash(
    store: RegistrarStore, db_path: Path
) -> None:
    await fill_events(store)
    with raw(db_path) as conn:
        at, kind, dev, _outcome, check, prev = conn.execute(
            "SELECT at, kind, device_serial, outcome, check_name, prev_hash FROM events WHERE id = 5"
        ).fetchone()
        forged = event_hash(
            prev, at=at, kind=kind, device_serial=dev, outcome="allow", check=check, detail={"i": 4}
        )
        conn.execute(
            "UPDATE events SET outcome = 'allow', detail = '{\"i\":4}', hash = ? WHERE id = 5",
            (forged,),
        )
    report = await store.verify_event_chain()
    assert (report.ok, report.problem, report.first_bad_id) == (False, "edited", 5)


@pytest.mark.sqlite_only
async def test_chain_detects_deleted_row(store: RegistrarStore, db_path: Path) -> None:
    await fill_events(store)
    with raw(db_path) as conn:
        conn.execute("DELETE FROM events WHERE id = 5")
    report = await store.verify_event_chain()
    assert (report.ok, report.problem, report.first_bad_id) == (False, "removed", 5)


@pytest.mark.sqlite_only
async def test_chain_detects_truncated_tail(store: RegistrarStore, db_path: Path) -> None:
    await fill_events(store)
    with raw(db_path) as conn:
        conn.execute("DELETE FROM events WHERE id >= 9")
    report = await store.verify_event_chain()
    assert (report.ok, report.problem, report.first_bad_id) == (False, "removed", 9)


@pytest.mark.sqlite_only
async def test_chain_detects_swapped_rows(store: RegistrarStore, db_path: Path) -> None:
    await fill_events(store)
    with raw(db_path) as conn:
        conn.execute("BEGIN")
        conn.execute("UPDATE events SET id = -1 WHERE id = 5")
        conn.execute("UPDATE events SET id = 5 WHERE id = 6")
        conn.execute("UPDATE events SET id = 6 WHERE id = -1")
        conn.execute("COMMIT")
    report = await store.verify_event_chain()
    assert (report.ok, report.problem, report.first_bad_id) == (False, "reordered", 5)


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


async def test_closed_store_refuses_work(db_path: Path) -> None:
    s = await open_registrar_store(str(db_path))
    await s.close()
    await s.close()
    with pytest.raises(StorageError) as info:
        await s.get_device("x")
    assert info.value.check == "storage.closed"
    with pytest.raises(StorageError):
        await add_device(s, "x")


async def test_queued_writes_finish_before_close(db_path: Path) -> None:
    s = await open_registrar_store(str(db_path))
    pending = [asyncio.ensure_future(add_device(s, f"Q{i}")) for i in range(50)]
    await asyncio.sleep(0)  # let every task enqueue its write
    await s.close()
    await asyncio.gather(*pending)
    async with await open_registrar_store(str(db_path)) as s2:
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


@pytest.mark.sqlite_only
async def test_masa_issue_voucher_atomically(masa: MasaStore, tmp_path: Path) -> None:
    await masa.add_manufactured_device("M-1", idevid_fingerprint="aa", at=t(0))
    issued = await masa.issue_voucher_atomically(
        serial="M-1",
        voucher=b"cms",
        media_type="application/voucher-cms+json",
        assertion="logged",
        nonce=b"nonce",
        registrar_spki_sha256=spki(7),
        domain_ca_spki_sha256=spki(1),
        domain_id="ZG9tYWlu",
        created_at=t(10),
        expires_on=t(20),
    )
    assert issued.voucher.voucher == b"cms" and issued.voucher.expires_on == t(20)
    assert issued.audit_entry.domain_id == "ZG9tYWlu" and issued.audit_entry.at == t(10)
    assert issued.event.device_serial == "M-1" and issued.event.kind == "voucher.issued"
    assert await masa.registrar_claimed("M-1", "ZG9tYWlu")
    assert not await masa.registrar_claimed("M-1", "b3RoZXI=")
    assert [e.nonce for e in await masa.audit_entries("M-1")] == [b"nonce"]

    # If any of the three writes fails, none is committed.
    with raw(tmp_path / "masa.db") as conn:
        conn.execute(
            "CREATE TRIGGER fail_events BEFORE INSERT ON events "
            "BEGIN SELECT RAISE(ABORT, 'no'); END"
        )
    with pytest.raises(StorageError):
        await masa.issue_voucher_atomically(
            serial="M-1",
            voucher=b"cms2",
            media_type="application/voucher-cms+json",
            assertion="logged",
            nonce=None,
            registrar_spki_sha256=spki(8),
            domain_ca_spki_sha256=spki(2),
            domain_id="b3RoZXI=",
            created_at=t(11),
            expires_on=None,
        )
    assert len(await masa.vouchers("M-1")) == 1
    assert not await masa.registrar_claimed("M-1", "b3RoZXI=")
    with pytest.raises(NotFound):
        await masa.issue_voucher_atomically(
            serial="ghost",
            voucher=b"v",
            media_type="m",
            assertion="logged",
            nonce=None,
            registrar_spki_sha256=spki(8),
            domain_ca_spki_sha256=spki(2),
            domain_id="eA==",
            created_at=t(12),
            expires_on=None,
        )
    stats = await masa.stats()
    # the device's state evidence, the voucher's, and the service event
    assert (stats["vouchers"], stats["audit_log"], stats["events"]) == (1, 1, 3)


@pytest.mark.sqlite_only
async def test_masa_audit_entries_and_shared_event_chain(masa: MasaStore, tmp_path: Path) -> None:
    assert isinstance(masa, SqliteMasaStore)
    await masa.add_manufactured_device("M-1", idevid_fingerprint="aa", at=t(0))
    entry = await masa.append_audit_entry(
        serial="M-1", at=t(1), domain_id="ZA==", nonce=None, assertion="verified", truncated=2
    )
    assert entry.truncated == 2 and entry.nonce is None
    for i in range(5):
        await masa.append_event(
            at=t(i), kind="k", device_serial="M-1", outcome="info", check=None, detail={"i": i}
        )
    assert (await masa.verify_event_chain()).ok
    with raw(tmp_path / "masa.db") as conn:
        conn.execute("UPDATE events SET kind = 'forged' WHERE id = 3")
    report = await masa.verify_event_chain()
    assert (report.problem, report.first_bad_id) == ("edited", 3)
