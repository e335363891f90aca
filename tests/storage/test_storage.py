"""brski_storage on real SQLite files: migrations, constraints, the writer
thread, and tamper detection of the event chain (tampering through a raw
sqlite3 connection, as an attacker with file access would)."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from brski.errors import ConfigError, Conflict, NotFound, StorageError
from brski_storage import (
    MasaStore,
    RegistrarStore,
    open_masa_store,
    open_registrar_store,
)
from brski_storage import migrate as migrate_mod
from brski_storage.chain import event_hash
from brski_storage.migrate import Migration, apply_sqlite_migrations, split_sqlite_script
from brski_storage.sqlite import SqliteDatabase, sqlite_path_from_url
from brski_storage.sqlite_masa import SqliteMasaStore
from brski_storage.sqlite_registrar import SqliteRegistrarStore

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


def t(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def spki(n: int) -> bytes:
    return hashlib.sha256(f"key-{n}".encode()).digest()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "registrar.db"


@pytest.fixture
async def store(new_store_url: Callable[[str], str]) -> AsyncIterator[RegistrarStore]:
    # On SQLite the file is db_path (tmp_path / "registrar.db"), which the
    # sqlite_only tests open themselves.
    s = await open_registrar_store(new_store_url("registrar"))
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
async def masa(new_store_url: Callable[[str], str]) -> AsyncIterator[MasaStore]:
    s = await open_masa_store(new_store_url("masa"))
    try:
        yield s
    finally:
        await s.close()


async def add_device(store: RegistrarStore, serial: str, *, manufacturer: str = "acme") -> None:
    await store.upsert_device(
        serial,
        idevid_issuer="CN=Acme IDevID CA",
        idevid_fingerprint=hashlib.sha256(serial.encode()).hexdigest(),
        manufacturer=manufacturer,
        at=t(0),
    )


@contextmanager
def raw(path: Path) -> Iterator[sqlite3.Connection]:
    """A connection of our own on the file, as an attacker or an admin would use."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


# --- opening, URLs, migrations ---------------------------------------------------------


async def test_migrations_apply_once_and_are_recorded(db_path: Path) -> None:
    s = await open_registrar_store(str(db_path), migrated_at=t(5))
    assert isinstance(s, SqliteRegistrarStore)
    # Every shipped migration, in order (later issues add 0002, 0003, ...).
    shipped = [m.version for m in migrate_mod.load_migrations("sqlite", "registrar")]
    assert shipped[0] == 1 and shipped == sorted(shipped)
    assert s.database.applied_migrations == shipped
    await s.close()
    s = await open_registrar_store(f"sqlite:///{db_path}")
    assert isinstance(s, SqliteRegistrarStore)
    assert s.database.applied_migrations == []
    await s.close()
    with raw(db_path) as conn:
        rows = conn.execute("SELECT version, applied_at FROM schema_migrations").fetchall()
    assert rows == [(v, "2025-03-01T12:00:05.000000+00:00") for v in shipped]


@pytest.mark.sqlite_only
async def test_pragmas_wal_full_sync_foreign_keys(store: RegistrarStore, db_path: Path) -> None:
    assert isinstance(store, SqliteRegistrarStore)
    pragmas = await store.database.write(
        lambda c: tuple(
            c.execute(f"PRAGMA {p}").fetchone()[0]
            for p in ("journal_mode", "synchronous", "foreign_keys")
        )
    )
    assert pragmas == ("wal", 2, 1)  # synchronous 2 == FULL


async def test_persistence_across_reopen(db_path: Path) -> None:
    async with await open_registrar_store(str(db_path)) as s:
        await add_device(s, "P-1")
        await s.set_device_state("P-1", "approved", at=t(1), reason="operator")
        await s.reserve_certificate(
            cert_serial=0x1234, device_serial="P-1", spki_sha256=spki(1), at=t(2)
        )
        await s.append_event(
            at=t(3), kind="k", device_serial="P-1", outcome="allow", check="x.y", detail={"a": 1}
        )
    async with await open_registrar_store(str(db_path)) as s:
        device = await s.get_device("P-1")
        assert device is not None and device.state == "approved"
        assert device.first_seen == t(0) and device.updated_at == t(1)
        cert = await s.get_certificate("1234")
        assert cert is not None and cert.state == "reserved"
        # The service's event, after the state evidence of the three writes.
        events = await s.events()
        assert [(e.id, e.kind, e.check, dict(e.detail)) for e in events][3:] == [
            (4, "k", "x.y", {"a": 1})
        ]
        assert [e.kind for e in events[:3]] == ["state.recorded"] * 3
        assert (await s.verify_state()).ok
        assert (await s.verify_event_chain()).ok


async def test_roles_cannot_open_each_others_database(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    async with await open_registrar_store(str(path)):
        pass
    with pytest.raises(ConfigError) as info:
        await open_masa_store(str(path))
    assert info.value.check == "storage.wrong-database"


async def test_schema_newer_than_software_is_refused(db_path: Path) -> None:
    async with await open_registrar_store(str(db_path)):
        pass
    with raw(db_path) as conn:
        conn.execute("INSERT INTO schema_migrations VALUES (99, '2030-01-01T00:00:00+00:00')")
    with pytest.raises(ConfigError) as info:
        await open_registrar_store(str(db_path))
    assert info.value.check == "storage.schema-too-new"


def test_failed_migration_rolls_back_entirely(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    migrations = [
        Migration(version=1, name="0001_a.sql", sql="CREATE TABLE one (x INTEGER);\n"),
        Migration(
            version=2,
            name="0002_b.sql",
            sql="CREATE TABLE two (x INTEGER);\nINSERT INTO nowhere VALUES (1);\n",
        ),
    ]
    monkeypatch.setattr(migrate_mod, "load_migrations", lambda dialect, role: migrations)
    conn = sqlite3.connect(tmp_path / "m.db", isolation_level=None)
    with pytest.raises(sqlite3.OperationalError):
        apply_sqlite_migrations(conn, role="registrar", applied_at="x")
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "one" in tables and "two" not in tables
    assert conn.execute("SELECT version FROM schema_migrations").fetchall() == [(1,)]
    conn.close()


def test_split_sqlite_script_handles_triggers_and_rejects_incomplete() -> None:
    script = (
        "-- header\nCREATE TABLE a (x TEXT DEFAULT ';');\n"
        "CREATE TRIGGER tr AFTER INSERT ON a BEGIN\n  UPDATE a SET x = 'y;';\nEND;\n-- trailer\n"
    )
    parts = split_sqlite_script(script)
    assert len(parts) == 2 and parts[1].startswith("CREATE TRIGGER")
    with pytest.raises(ConfigError):
        split_sqlite_script("CREATE TABLE b (x TEXT)\n")


def test_url_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert sqlite_path_from_url("sqlite:////var/x.db") == Path("/var/x.db")
    assert sqlite_path_from_url("sqlite:///data/x.db") == Path("data/x.db")
    assert sqlite_path_from_url("/var/x.db") == Path("/var/x.db")
    for bad in ("sqlite:///:memory:", "sqlite://host/x.db", "sqlite:x.db", ""):
        with pytest.raises(ConfigError):
            sqlite_path_from_url(bad)


async def test_relative_url_and_unsupported_backends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    async with await open_masa_store("sqlite:///sub/masa.db"):
        pass
    assert (tmp_path / "sub" / "masa.db").is_file()
    for url in ("mysql://h/db", "postgresql+asyncpg://u@h/db"):
        with pytest.raises(ConfigError) as info:
            await open_registrar_store(url)
        assert info.value.check == "storage.backend"


# --- devices --------------------------------------------------------------------------


async def test_device_lifecycle_and_transitions(store: RegistrarStore) -> None:
    await add_device(store, "P-1")
    again = await store.upsert_device(
        "P-1",
        idevid_issuer="CN=Acme IDevID CA",
        idevid_fingerprint=hashlib.sha256(b"P-1").hexdigest(),
        manufacturer="acme",
        at=t(50),
    )
    assert again.state == "discovered" and again.first_seen == t(0)
    with pytest.raises(Conflict) as info:
        await store.upsert_device(
            "P-1", idevid_issuer="CN=Other", idevid_fingerprint="00", manufacturer="acme", at=t(1)
        )
    assert info.value.check == "storage.idevid-mismatch"

    updated = await store.set_device_state("P-1", "approved", at=t(2), reason="op")
    assert updated.state == "approved" and updated.updated_at == t(2)
    with pytest.raises(Conflict) as info:
        await store.set_device_state("P-1", "enrolled", at=t(3), reason="x", expect="discovered")
    assert info.value.check == "storage.state-changed"
    await store.set_device_state("P-1", "enrolled", at=t(4), reason="ok", expect="approved")
    with pytest.raises(NotFound):
        await store.set_device_state("nope", "approved", at=t(5), reason="x")

    transitions = await store.device_transitions("P-1")
    assert [(x.from_state, x.to_state, x.at, x.reason) for x in transitions] == [
        (None, "discovered", t(0), "first seen"),
        ("discovered", "approved", t(2), "op"),
        ("approved", "enrolled", t(4), "ok"),
    ]
    stats = await store.stats()
    assert stats["devices"] == 1 and stats["devices.enrolled"] == 1


async def test_keyset_pagination_over_1000_devices(store: RegistrarStore) -> None:
    serials = [f"SN{i:05d}" for i in range(1000)]
    await asyncio.gather(
        *(
            add_device(store, s, manufacturer="acme" if i % 2 else "zeta")
            for i, s in enumerate(serials)
        )
    )
    for s in serials[:300]:
        await store.set_device_state(s, "approved", at=t(1), reason="batch")

    seen: list[str] = []
    after: str | None = None
    pages = 0
    while True:
        page = await store.list_devices(after_serial=after, limit=64)
        if not page:
            break
        pages += 1
        seen.extend(d.serial for d in page)
        after = page[-1].serial
    assert seen == sorted(serials) and pages == 16

    approved_acme: list[str] = []
    after = None
    while page := await store.list_devices(
        state="approved", manufacturer="acme", after_serial=after, limit=7
    ):
        approved_acme.extend(d.serial for d in page)
        after = page[-1].serial
    assert approved_acme == [s for i, s in enumerate(serials[:300]) if i % 2]
    assert (await store.stats())["devices.discovered"] == 700
    with pytest.raises(ValueError):
        await store.list_devices(limit=0)


# --- vouchers, status, audit logs ---------------------------------------------------------


async def test_voucher_records_status_and_audit_logs(store: RegistrarStore) -> None:
    with pytest.raises(NotFound) as info:
        await store.add_voucher_request(
            serial="ghost",
            nonce=b"n",
            pledge_request=b"p",
            registrar_request=None,
            media_type="application/voucher-cms+json",
            received_at=t(0),
        )
    assert info.value.check == "storage.unknown-device"
    await add_device(store, "P-1")
    rid = await store.add_voucher_request(
        serial="P-1",
        nonce=b"\x01\x02",
        pledge_request=b"pvr",
        registrar_request=b"rvr",
        media_type="application/voucher-cms+json",
        received_at=t(1),
    )
    assert [r.id for r in await store.voucher_requests("P-1")] == [rid]
    assert await store.latest_voucher("P-1") is None
    for i in range(3):
        await store.add_voucher(
            serial="P-1",
            voucher=f"v{i}".encode(),
            media_type="application/voucher-cms+json",
            assertion="logged",
            nonce=b"\x01\x02",
            expires_on=t(1000) if i == 2 else None,
            received_at=t(2 + i),
        )
    latest = await store.latest_voucher("P-1")
    assert latest is not None and latest.voucher == b"v2" and latest.expires_on == t(1000)

    await store.add_status_report(
        serial="P-1",
        kind="voucher",
        status=True,
        reason=None,
        body={"version": 1},
        received_at=t(9),
    )
    await store.add_status_report(
        serial="P-1", kind="enroll", status=False, reason="bad", body='{"x": 1}', received_at=t(10)
    )
    reports = await store.status_reports("P-1")
    assert [(r.kind, r.status, r.reason, r.body) for r in reports] == [
        ("voucher", True, None, '{"version":1}'),
        ("enroll", False, "bad", '{"x": 1}'),
    ]
    await store.add_audit_log(serial="P-1", fetched_at=t(11), body=b"{}")
    assert [a.body for a in await store.audit_logs("P-1")] == [b"{}"]


async def test_naive_timestamps_are_refused(store: RegistrarStore) -> None:
    with pytest.raises(ValueError):
        await store.upsert_device(
            "P",
            idevid_issuer="i",
            idevid_fingerprint="f",
            manufacturer="m",
            at=datetime(2025, 1, 1),
        )


async def test_timestamps_are_normalised_to_utc(store: RegistrarStore) -> None:
    plus2 = datetime(2025, 3, 1, 14, 0, 0, tzinfo=timezone(timedelta(hours=2)))
    record = await store.upsert_device(
        "P", idevid_issuer="i", idevid_fingerprint="f", manufacturer="m", at=plus2
    )
    assert record.first_seen == T0 and record.first_seen.utcoffset() == timedelta(0)


# --- certificates ------------------------------------------------------------------------------


async def test_certificate_reserve_complete_revoke(store: RegistrarStore) -> None:
    await add_device(store, "P-1")
    reserved = await store.reserve_certificate(
        cert_serial=0xABCDEF, device_serial="P-1", spki_sha256=spki(1), at=t(1)
    )
    assert (
        reserved.state == "reserved" and reserved.der is None and reserved.cert_serial == "abcdef"
    )
    assert await store.current_certificate("P-1") is None
    with pytest.raises(Conflict):
        await store.revoke_certificate("abcdef", reason="no", at=t(2))

    issued = await store.complete_certificate(
        "00ABCDEF", der=b"\x30\x03", not_before=t(0), not_after=t(86400), at=t(2)
    )
    assert issued.state == "issued" and issued.der == b"\x30\x03" and issued.issued_at == t(2)
    assert issued.not_after == t(86400)
    with pytest.raises(Conflict) as info:
        await store.complete_certificate(
            "abcdef", der=b"x", not_before=t(0), not_after=t(1), at=t(3)
        )
    assert info.value.check == "storage.certificate-state"
    with pytest.raises(NotFound):
        await store.complete_certificate(0x99, der=b"x", not_before=t(0), not_after=t(1), at=t(3))

    current = await store.current_certificate("P-1")
    assert current is not None and current.cert_serial == "abcdef"
    by_key = await store.certificate_by_spki(spki(1))
    assert by_key is not None and by_key.cert_serial == "abcdef"

    # A second, newer certificate for a new key becomes current.
    await store.reserve_certificate(
        cert_serial=7, device_serial="P-1", spki_sha256=spki(2), at=t(4)
    )
    await store.complete_certificate(7, der=b"d2", not_before=t(4), not_after=t(9), at=t(5))
    current = await store.current_certificate("P-1")
    assert current is not None and current.cert_serial == "7"

    revoked = await store.revoke_certificate(7, reason="keyCompromise", at=t(6))
    assert revoked.state == "revoked" and revoked.revoked_at == t(6)
    assert revoked.revocation_reason == "keyCompromise"
    with pytest.raises(Conflict):
        await store.revoke_certificate(7, reason="again", at=t(7))
    current = await store.current_certificate("P-1")
    assert current is not None and current.cert_serial == "abcdef"
    assert [c.cert_serial for c in await store.revoked_certificates()] == ["7"]
    assert [c.cert_serial for c in await store.list_certificates("P-1")] == ["abcdef", "7"]
    stats = await store.stats()
    assert (stats["certificates.issued"], stats["certificates.revoked"]) == (1, 1)


async def test_certificate_uniqueness(store: RegistrarStore) -> None:
    await add_device(store, "P-1")
    await add_device(store, "P-2")
    await store.reserve_certificate(
        cert_serial="0a", device_serial="P-1", spki_sha256=spki(1), at=t(0)
    )
    with pytest.raises(Conflict) as info:  # same key, fresh serial, other device
        await store.reserve_certificate(
            cert_serial=11, device_serial="P-2", spki_sha256=spki(1), at=t(1)
        )
    assert info.value.check == "storage.duplicate-key"
    with pytest.raises(Conflict) as info:  # same serial spelled differently, fresh key
        await store.reserve_certificate(
            cert_serial=10, device_serial="P-2", spki_sha256=spki(2), at=t(1)
        )
    assert info.value.check == "storage.duplicate-key"
    with pytest.raises(NotFound):
        await store.reserve_certificate(
            cert_serial=12, device_serial="ghost", spki_sha256=spki(3), at=t(1)
        )
    assert [c.cert_serial for c in await store.list_certificates("P-2")] == []
    for bad in ("zz", 0, -5):
        with pytest.raises(ValueError):
            await store.reserve_certificate(
                cert_serial=bad, device_serial="P-1", spki_sha256=spki(4), at=t(1)
            )


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
