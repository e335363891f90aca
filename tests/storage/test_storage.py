"""brski_storage through its interface, on both engines (``store``/``masa``:
constraints, devices, vouchers, certificates), and the SQLite engine itself on
real files (``db_path`` and ``sqlite_only``: migrations, pragmas, URLs). The
event chain and the writer are in test_storage_chain.py, tampering in
test_storage_tamper.py, PostgreSQL's own twins in test_postgres.py."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from brski.errors import ConfigError, Conflict, NotFound
from brski_storage import (
    RegistrarStore,
    StateChange,
    open_masa_store,
    open_registrar_store,
)
from brski_storage import migrate as migrate_mod
from brski_storage.migrate import Migration, apply_sqlite_migrations, split_sqlite_script
from brski_storage.sqlite import sqlite_path_from_url
from brski_storage.sqlite_registrar import SqliteRegistrarStore
from tests.storage_helpers import T0, add_device, raw, spki, t

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


async def test_persistence_across_reopen(new_store_url: Callable[[str], str]) -> None:
    url = new_store_url("registrar")
    async with await open_registrar_store(url) as s:
        await add_device(s, "P-1")
        await s.set_device_state("P-1", "approved", at=t(1), reason="operator")
        await s.reserve_certificate(
            cert_serial=0x1234, device_serial="P-1", spki_sha256=spki(1), at=t(2)
        )
        await s.append_event(
            at=t(3), kind="k", device_serial="P-1", outcome="allow", check="x.y", detail={"a": 1}
        )
    async with await open_registrar_store(url) as s:
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
    for then in (None, StateChange(state="voucher-obtained", reason="voucher from MASA")):
        with pytest.raises(NotFound) as info:
            await store.add_voucher(serial="ghost", voucher=b"v", media_type="application/voucher-cms+json",
                                    assertion="logged", nonce=None, expires_on=None, received_at=t(0), then=then)
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
