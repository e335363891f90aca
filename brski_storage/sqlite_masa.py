"""The MASA store on SQLite (see :mod:`brski_storage.sqlite` for the engine)."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from brski.errors import Conflict, NotFound
from brski_storage.base import (
    AuditEntry,
    DeviceImport,
    IssuedVoucher,
    ManufacturedDevice,
    MasaStore,
    MasaVoucherRecord,
    NewEvent,
    OwnerRecord,
)
from brski_storage.evidence import record_state
from brski_storage.sqlite import (
    RowReader,
    check_limit,
    from_ts,
    from_ts_opt,
    require_device,
    sqlite_now,
    to_ts,
    to_ts_opt,
)
from brski_storage.sqlite_events import PreparedEvent, SqliteEventLog

__all__ = ["SqliteMasaStore"]

_owners = RowReader(
    OwnerRecord, "owners", "id, serial, domain_ca_spki_sha256, domain_ca_der, added_at", added_at=from_ts
)
_audit_log = RowReader(
    AuditEntry, "audit_log", "id, serial, at, domain_id, nonce, assertion, truncated", at=from_ts
)
_vouchers = RowReader(
    MasaVoucherRecord,
    "vouchers",
    "id, serial, registrar_spki_sha256, domain_ca_spki_sha256, nonce, assertion, voucher,"
    " media_type, created_at, expires_on",
    created_at=from_ts,
    expires_on=from_ts_opt,
)
_devices = RowReader(ManufacturedDevice, "devices", "serial, idevid_fingerprint, created_at", created_at=from_ts)
# A first claim writes its owner in add_owner or with its voucher (issue_voucher_atomically).
_INSERT_OWNER = "INSERT INTO owners (serial, domain_ca_spki_sha256, domain_ca_der, added_at) VALUES (?, ?, ?, ?)"


def _get_device(conn: sqlite3.Connection, serial: str) -> ManufacturedDevice | None:
    return _devices.one(conn, "WHERE serial = ?", (serial,))


def _add_device(conn: sqlite3.Connection, serial: str, fingerprint: str, ts: str) -> bool:
    """Insert one device with its state evidence; False when already recorded
    with the same IDevID, ``Conflict`` (nothing written) with another one."""
    existing = _get_device(conn, serial)
    if existing is None:
        _insert_device(conn, serial, fingerprint, ts)
        return True
    if existing.idevid_fingerprint != fingerprint:
        raise Conflict(
            f"device {serial!r} was manufactured with a different IDevID",
            check="storage.idevid-mismatch",
        )
    return False


def _insert_device(conn: sqlite3.Connection, serial: str, fingerprint: str, ts: str) -> None:
    conn.execute(
        "INSERT INTO devices (serial, idevid_fingerprint, created_at) VALUES (?, ?, ?)",
        (serial, fingerprint, ts),
    )
    record_state(conn, "masa", [("device", serial)], at=ts, device_serial=serial)


def _known_fingerprints(conn: sqlite3.Connection, serials: Sequence[str]) -> dict[str, str]:
    """The IDevID fingerprints of those ``serials`` already recorded, in a few
    queries instead of one per serial (500 parameters each, under every
    SQLite's limit)."""
    known: dict[str, str] = {}
    for i in range(0, len(serials), 500):
        part = serials[i : i + 500]
        marks = ", ".join("?" * len(part))
        sql = f"SELECT serial, idevid_fingerprint FROM devices WHERE serial IN ({marks})"
        known.update((str(r[0]), str(r[1])) for r in conn.execute(sql, part))
    return known


def _insert_audit(
    conn: sqlite3.Connection,
    *,
    serial: str,
    at: str,
    domain_id: str,
    nonce: bytes | None,
    assertion: str,
    truncated: int,
) -> AuditEntry:
    rowid = conn.execute(
        "INSERT INTO audit_log (serial, at, domain_id, nonce, assertion, truncated)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (serial, at, domain_id, nonce, assertion, truncated),
    ).lastrowid
    assert rowid is not None
    # The row as written, not read back: the columns hold exactly these values
    # (record_state reads the row itself for the state evidence).
    return AuditEntry(
        id=rowid, serial=serial, at=from_ts(at), domain_id=domain_id, nonce=nonce, assertion=assertion,
        truncated=truncated,
    )


def _check_audit_fields(domain_id: str, truncated: int) -> None:
    if not domain_id:
        raise ValueError("domain_id must not be empty")
    if truncated < 0:
        raise ValueError("truncated must not be negative")


class SqliteMasaStore(SqliteEventLog, MasaStore):
    # --- manufactured devices --------------------------------------------------

    async def add_manufactured_device(
        self, serial: str, *, idevid_fingerprint: str, at: datetime
    ) -> ManufacturedDevice:
        ts = to_ts(at)

        def run(conn: sqlite3.Connection) -> ManufacturedDevice:
            _add_device(conn, serial, idevid_fingerprint, ts)
            device = _get_device(conn, serial)
            assert device is not None
            return device

        return await self._db.write(run)

    async def add_manufactured_devices(
        self, devices: Sequence[tuple[str, str]], *, at: datetime
    ) -> DeviceImport:
        ts = to_ts(at)
        pairs = list(devices)

        def run(conn: sqlite3.Connection) -> DeviceImport:
            known = _known_fingerprints(conn, [serial for serial, _ in pairs])
            added, conflicts = 0, []
            for serial, fingerprint in pairs:
                have = known.get(serial)
                if have is None:
                    _insert_device(conn, serial, fingerprint, ts)
                    known[serial] = fingerprint
                    added += 1
                elif have != fingerprint:
                    conflicts.append(serial)
            return DeviceImport(
                added=added, already_known=len(pairs) - added - len(conflicts), conflicts=tuple(conflicts)
            )

        return await self._db.write(run)

    async def get_manufactured_device(self, serial: str) -> ManufacturedDevice | None:
        # A primary-key lookup on every voucher request: inline (see read_now).
        return self._db.read_now(lambda conn: _get_device(conn, serial))

    async def count_devices(self) -> int:
        return await self._db.read(
            lambda conn: int(conn.execute("SELECT count(*) FROM devices").fetchone()[0])
        )

    async def list_manufactured_devices(
        self, *, after_serial: str | None = None, limit: int = 100
    ) -> list[ManufacturedDevice]:
        check_limit(limit)
        where, params = "WHERE serial > ? ORDER BY serial LIMIT ?", (after_serial or "", limit)
        return await self._db.read(lambda conn: _devices.all(conn, where, params))

    # --- owners ---------------------------------------------------------------------

    async def add_owner(
        self,
        serial: str,
        *,
        domain_ca_spki_sha256: bytes,
        domain_ca_der: bytes,
        at: datetime,
    ) -> OwnerRecord:
        if len(domain_ca_spki_sha256) != 32:
            raise ValueError("domain_ca_spki_sha256 must be a 32-byte SHA-256 digest")
        ts = to_ts(at)

        def run(conn: sqlite3.Connection) -> OwnerRecord:
            require_device(conn, serial)
            rowid = conn.execute(_INSERT_OWNER, (serial, domain_ca_spki_sha256, domain_ca_der, ts)).lastrowid
            assert rowid is not None
            record_state(conn, "masa", [("owner", rowid)], at=ts, device_serial=serial)
            return _owners.by_id(conn, rowid)

        return await self._db.write(run)

    async def remove_owner(
        self, serial: str, *, domain_ca_spki_sha256: bytes, at: datetime | None = None
    ) -> None:
        stamp = to_ts_opt(at)

        def run(conn: sqlite3.Connection) -> None:
            ids = [r[0] for r in conn.execute(
                "SELECT id FROM owners WHERE serial = ? AND domain_ca_spki_sha256 = ?",
                (serial, domain_ca_spki_sha256),
            )]
            if not ids:
                raise NotFound(
                    f"no such owner registered for {serial!r}", check="storage.unknown-owner"
                )
            conn.execute(
                "DELETE FROM owners WHERE serial = ? AND domain_ca_spki_sha256 = ?",
                (serial, domain_ca_spki_sha256),
            )
            rows = [("owner", i) for i in ids]
            record_state(conn, "masa", rows, at=stamp or sqlite_now(conn), device_serial=serial)

        await self._db.write(run)

    async def owners(self, serial: str) -> list[OwnerRecord]:
        # One device's few owners through UNIQUE (serial, ...), read on every
        # voucher request: inline (see read_now).
        return self._db.read_now(lambda conn: _owners.all(conn, "WHERE serial = ? ORDER BY id", (serial,)))

    async def list_owners(self) -> list[OwnerRecord]:
        return await self._db.read(lambda conn: _owners.all(conn, "ORDER BY serial, id"))

    # --- audit log ---------------------------------------------------------------------

    async def append_audit_entry(
        self,
        *,
        serial: str,
        at: datetime,
        domain_id: str,
        nonce: bytes | None,
        assertion: str,
        truncated: int = 0,
    ) -> AuditEntry:
        _check_audit_fields(domain_id, truncated)
        ts = to_ts(at)

        def run(conn: sqlite3.Connection) -> AuditEntry:
            require_device(conn, serial)
            entry = _insert_audit(
                conn,
                serial=serial,
                at=ts,
                domain_id=domain_id,
                nonce=nonce,
                assertion=assertion,
                truncated=truncated,
            )
            record_state(conn, "masa", [("audit", entry.id)], at=ts, device_serial=serial)
            return entry

        return await self._db.write(run)

    async def audit_entries(self, serial: str) -> list[AuditEntry]:
        # One device's entries (one per voucher issued) through audit_log_by_serial,
        # read on every audit-log request: inline (see read_now).
        return self._db.read_now(lambda conn: _audit_log.all(conn, "WHERE serial = ? ORDER BY id", (serial,)))

    # --- vouchers -------------------------------------------------------------------------

    async def vouchers(self, serial: str) -> list[MasaVoucherRecord]:
        return await self._db.read(lambda conn: _vouchers.all(conn, "WHERE serial = ? ORDER BY id", (serial,)))

    async def issue_voucher_atomically(
        self,
        *,
        serial: str,
        voucher: bytes,
        media_type: str,
        assertion: str,
        nonce: bytes | None,
        registrar_spki_sha256: bytes,
        domain_ca_spki_sha256: bytes,
        domain_id: str,
        created_at: datetime,
        expires_on: datetime | None,
        truncated: int = 0,
        event_kind: str = "voucher.issued",
        event_check: str | None = None,
        event_detail: Mapping[str, Any] | None = None,
        new_owner_der: bytes | None = None,
    ) -> IssuedVoucher:
        _check_audit_fields(domain_id, truncated)
        if new_owner_der is not None and len(domain_ca_spki_sha256) != 32:
            raise ValueError("domain_ca_spki_sha256 must be a 32-byte SHA-256 digest")
        created = to_ts(created_at)
        expires = to_ts_opt(expires_on)
        event = PreparedEvent(NewEvent(
            at=created_at,
            kind=event_kind,
            device_serial=serial,
            outcome="allow",
            check=event_check,
            detail=event_detail if event_detail is not None else {"assertion": assertion},
        ))

        def run(conn: sqlite3.Connection) -> IssuedVoucher:
            require_device(conn, serial)
            state: list[tuple[str, str | int]] = []
            if new_owner_der is not None:
                owner = conn.execute(_INSERT_OWNER, (serial, domain_ca_spki_sha256, new_owner_der, created)).lastrowid
                assert owner is not None
                state.append(("owner", owner))
            rowid = conn.execute(
                "INSERT INTO vouchers (serial, registrar_spki_sha256, domain_ca_spki_sha256,"
                " nonce, assertion, voucher, media_type, created_at, expires_on)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    serial,
                    registrar_spki_sha256,
                    domain_ca_spki_sha256,
                    nonce,
                    assertion,
                    voucher,
                    media_type,
                    created,
                    expires,
                ),
            ).lastrowid
            assert rowid is not None
            # As written (see _insert_audit): one SELECT fewer in the commit.
            stored = MasaVoucherRecord(
                id=rowid, serial=serial, registrar_spki_sha256=registrar_spki_sha256,
                domain_ca_spki_sha256=domain_ca_spki_sha256, nonce=nonce, assertion=assertion, voucher=voucher,
                media_type=media_type, created_at=from_ts(created), expires_on=from_ts_opt(expires),
            )
            entry = _insert_audit(
                conn,
                serial=serial,
                at=created,
                domain_id=domain_id,
                nonce=nonce,
                assertion=assertion,
                truncated=truncated,
            )
            state += [("voucher", stored.id), ("audit", entry.id)]
            record_state(conn, "masa", state, at=created, device_serial=serial)
            return IssuedVoucher(voucher=stored, audit_entry=entry, event=event.insert(conn))

        return await self._db.write(run)

    # --- counters -----------------------------------------------------------------------

    async def stats(self) -> dict[str, int]:
        def run(conn: sqlite3.Connection) -> dict[str, int]:
            return {
                table: int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
                for table in ("devices", "owners", "vouchers", "audit_log", "events")
            }

        return await self._db.read(run)
