"""The registrar store on SQLite (see :mod:`brski_storage.sqlite` for the engine).

Devices, voucher-requests, vouchers, status reports and MASA audit logs are
here; the rest of the interface comes from mixins, one per concern:
certificates (:mod:`brski_storage.sqlite_certificates`), admission
(:mod:`brski_storage.sqlite_admission`), revocation and CRLs
(:mod:`brski_storage.sqlite_lifecycle`), network access
(:mod:`brski_storage.sqlite_netaccess`) and the event log
(:mod:`brski_storage.sqlite_events`).
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from brski.errors import Conflict, NotFound
from brski_storage.base import (
    AuditLogRecord,
    CertificateRecord,
    DeviceRecord,
    NewAuditLog,
    NewDevice,
    NewEvent,
    RegistrarStore,
    StatusKind,
    StatusReportRecord,
    TransitionRecord,
    VoucherRecord,
    VoucherRequestRecord,
)
from brski_storage.certificates import EstFacts
from brski_storage.chain import canonical_json
from brski_storage.evidence import record_state
from brski_storage.records import INITIAL_DEVICE_STATE, StateChange
from brski_storage.sqlite import (
    RowReader,
    check_limit,
    from_ts,
    from_ts_opt,
    require_device,
    to_ts,
    to_ts_opt,
)
from brski_storage.sqlite_admission import SqliteAdmissionMixin, approval_row, approval_rows
from brski_storage.sqlite_certificates import (
    DEVICE_ROWS,
    KEY_NEWEST,
    SqliteCertificateMixin,
    certificate_rows,
    normalize_cert_serial,
)
from brski_storage.sqlite_events import SqliteEventLog, with_events
from brski_storage.sqlite_lifecycle import SqliteLifecycleMixin, newest_crl_number
from brski_storage.sqlite_netaccess import SqliteNetworkAccessMixin

__all__ = ["SqliteRegistrarStore"]

_DEVICE_COLUMNS = (
    "serial, idevid_issuer, idevid_fingerprint, manufacturer, state, first_seen, updated_at"
)


_devices = RowReader(DeviceRecord, "devices", _DEVICE_COLUMNS, first_seen=from_ts, updated_at=from_ts)
_transitions = RowReader(
    TransitionRecord, "device_transitions", "id, serial, from_state, to_state, at, reason", at=from_ts
)
_voucher_requests = RowReader(
    VoucherRequestRecord,
    "voucher_requests",
    "id, serial, nonce, pledge_request, registrar_request, media_type, received_at",
    received_at=from_ts,
)
_vouchers = RowReader(
    VoucherRecord,
    "vouchers",
    "id, serial, voucher, media_type, assertion, nonce, expires_on, received_at",
    expires_on=from_ts_opt,
    received_at=from_ts,
)
_status_reports = RowReader(
    StatusReportRecord,
    "status_reports",
    "id, serial, kind, status, reason, body, received_at",
    status=bool,
    received_at=from_ts,
)
_audit_logs = RowReader(AuditLogRecord, "audit_logs", "id, serial, fetched_at, body", fetched_at=from_ts)


def _get_device(conn: sqlite3.Connection, serial: str) -> DeviceRecord | None:
    return _devices.one(conn, "WHERE serial = ?", (serial,))


def _move_state(
    conn: sqlite3.Connection, serial: str, state: str, ts: str, reason: str, *, expect: str | None = None
) -> None:
    """The one way a device changes state: the row and its transition, together."""
    row = conn.execute("SELECT state FROM devices WHERE serial = ?", (serial,)).fetchone()
    if row is None:
        raise NotFound(f"unknown device {serial!r}", check="storage.unknown-device")
    if expect is not None and row[0] != expect:
        raise Conflict(
            f"device {serial!r} is {row[0]!r}, not {expect!r}",
            check="storage.state-changed",
        )
    conn.execute("UPDATE devices SET state = ?, updated_at = ? WHERE serial = ?", (state, ts, serial))
    conn.execute(
        "INSERT INTO device_transitions (serial, from_state, to_state, at, reason)"
        " VALUES (?, ?, ?, ?, ?)",
        (serial, row[0], state, ts, reason),
    )


def _change_state(
    conn: sqlite3.Connection, serial: str, state: str, ts: str, reason: str, *, expect: str | None = None
) -> DeviceRecord:
    """:func:`_move_state`, and the device as it is now."""
    _move_state(conn, serial, state, ts, reason, expect=expect)
    updated = _get_device(conn, serial)
    assert updated is not None
    return updated


_INSERT_AUDIT_LOG = "INSERT INTO audit_logs (serial, fetched_at, body) VALUES (?, ?, ?)"

# A device's most recent row of a table (by insertion order, through its (serial, id) index).
_LATEST = "WHERE serial = ? ORDER BY id DESC LIMIT 1"


def _evidence(conn: sqlite3.Connection, ts: str, device: str | None, *rows: tuple[str, str | int]) -> None:
    """The changed rows' facts, chained in this transaction (brski_storage.evidence)."""
    record_state(conn, "registrar", rows, at=ts, device_serial=device)


# est_facts on PostgreSQL in two statements (one per device, one over its
# certificate rows) instead of one per fact: the same rows through the same
# indexes, two round trips inside the snapshot's transaction instead of up to
# seven (client CPU per enrolment's read 0.66-0.80x, tools/bench_est_reads.py).
# On SQLite the simple statements, each a point read or an index range, cost
# less than these joins (the joined form measured 1.12-1.25x there).
def _columns(alias: str, columns: str) -> str:
    return ", ".join(f"{alias}.{c.strip()}" for c in columns.split(","))


_A = len(_DEVICE_COLUMNS.split(","))  # where the approval's columns start in the device facts row
_L = _A + len(approval_rows.columns.split(","))  # the audit log's
_N = _L + len(_audit_logs.columns.split(","))  # the CRL number's (when asked)


@functools.cache
def _device_facts_sql(*, gate: bool, crl_number: bool) -> str:
    """The device row, with the EST gate's rows (its approval; its newest
    audit log through the (serial, id) index) and the newest CRL number."""
    parts = [_columns("d", _DEVICE_COLUMNS)]
    joins = ["LEFT JOIN devices d ON d.serial = q.serial"]
    if gate:
        parts += [_columns("a", approval_rows.columns), _columns("l", _audit_logs.columns)]
        joins += [
            "LEFT JOIN device_approvals a ON a.serial = q.serial",
            "LEFT JOIN audit_logs l ON l.id = (SELECT max(id) FROM audit_logs WHERE serial = q.serial)",
        ]
    if crl_number:
        parts.append("(SELECT max(number) FROM crls)")
    return f"SELECT {', '.join(parts)} FROM (SELECT CAST(? AS TEXT) AS serial) q {' '.join(joins)}"


@functools.cache
def _certificate_facts_sql(*, device: bool, key: bool) -> str | None:
    """Part 0: the device's certificates in reservation order; part 1: the
    newest row for a key (renewals share one), whichever device holds it."""
    cols = f"id, {certificate_rows.columns}"
    arms = []
    if device:
        arms.append(f"SELECT 0 AS part, {cols} FROM certificates WHERE device_serial = ?")
    if key:
        arms.append(
            f"SELECT 1 AS part, {cols} FROM"
            f" (SELECT {cols} FROM certificates WHERE spki_sha256 = ? ORDER BY id DESC LIMIT 1) k"
        )
    return f"{' UNION ALL '.join(arms)} ORDER BY part, id" if arms else None


def _facts_joined(
    conn: sqlite3.Connection, client: CertificateRecord | None, serial: str, spki: bytes | None,
    *, gate: bool, certificates: bool, crl_number: bool,
) -> EstFacts:
    """est_facts on PostgreSQL: two statements (the device facts, the
    certificate rows) instead of one per fact."""
    row = conn.execute(_device_facts_sql(gate=gate, crl_number=crl_number), (serial,)).fetchone()
    certs_sql = _certificate_facts_sql(device=certificates, key=spki is not None)
    approval = audit_log = number = None
    if gate:
        approval = None if row[_A] is None else approval_rows.record(row[_A:_L])
        audit_log = None if row[_L] is None else _audit_logs.record(row[_L:_N])
    if crl_number:
        number = None if row[-1] is None else int(row[-1])
    owned: list[CertificateRecord] = []
    key_certificate = None
    if certs_sql is not None:
        params = (*((serial,) if certificates else ()), *(() if spki is None else (spki,)))
        for cert in conn.execute(certs_sql, params):
            if cert[0] == 0:
                owned.append(certificate_rows.record(cert[2:]))
            else:
                key_certificate = certificate_rows.record(cert[2:])
    return EstFacts(
        client_certificate=client,
        device=None if row[0] is None else _devices.record(row[:_A]),
        approval=approval,
        audit_log=audit_log,
        certificates=tuple(owned),
        key_certificate=key_certificate,
        crl_number=number,
    )


class SqliteRegistrarStore(
    SqliteCertificateMixin,
    SqliteNetworkAccessMixin,
    SqliteAdmissionMixin,
    SqliteLifecycleMixin,
    SqliteEventLog,
    RegistrarStore,
):
    @staticmethod
    def _apply(conn: sqlite3.Connection, serial: str, change: StateChange, ts: str) -> None:
        _move_state(conn, serial, change.state, ts, change.reason, expect=change.expect)

    # --- devices -----------------------------------------------------------

    @staticmethod
    def _insert_device(conn: sqlite3.Connection, serial: str, device: NewDevice, ts: str) -> DeviceRecord | None:
        """``serial``'s row: the one stored (which must hold ``device``'s
        IDevID), else a new one, state 'discovered' with its 'first seen'
        transition. None when it was inserted: the caller records its evidence
        once, after whatever else its transaction changes on the row."""
        existing = _get_device(conn, serial)
        if existing is not None:
            device.check_same(existing)
            return existing
        conn.execute(
            f"INSERT INTO devices ({_DEVICE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                serial,
                device.idevid_issuer,
                device.idevid_fingerprint,
                device.manufacturer,
                INITIAL_DEVICE_STATE,
                ts,
                ts,
            ),
        )
        conn.execute(
            "INSERT INTO device_transitions (serial, from_state, to_state, at, reason)"
            " VALUES (?, NULL, ?, ?, 'first seen')",
            (serial, INITIAL_DEVICE_STATE, ts),
        )
        return None

    async def upsert_device(
        self,
        serial: str,
        *,
        idevid_issuer: str,
        idevid_fingerprint: str,
        manufacturer: str,
        at: datetime,
    ) -> DeviceRecord:
        ts = to_ts(at)
        device = NewDevice(idevid_issuer=idevid_issuer, idevid_fingerprint=idevid_fingerprint, manufacturer=manufacturer)

        def run(conn: sqlite3.Connection) -> DeviceRecord:
            existing = self._insert_device(conn, serial, device, ts)
            if existing is not None:
                return existing
            _evidence(conn, ts, serial, ("device", serial))
            record = _get_device(conn, serial)
            assert record is not None
            return record

        return await self._db.write(run)

    async def get_device(self, serial: str) -> DeviceRecord | None:
        # Point lookups by key, made several times per onboarding: inline (see read_now).
        return self._db.read_now(lambda conn: _get_device(conn, serial))

    async def set_device_state(
        self,
        serial: str,
        state: str,
        *,
        at: datetime,
        reason: str,
        expect: str | None = None,
        events: Sequence[NewEvent] = (),
    ) -> DeviceRecord:
        if not state:
            raise ValueError("device state must not be empty")
        ts = to_ts(at)

        def run(conn: sqlite3.Connection) -> DeviceRecord:
            updated = _change_state(conn, serial, state, ts, reason, expect=expect)
            _evidence(conn, ts, serial, ("device", serial))
            return updated

        return await self._db.write(with_events(run, events))

    async def list_devices(
        self,
        *,
        state: str | None = None,
        manufacturer: str | None = None,
        after_serial: str | None = None,
        limit: int = 100,
    ) -> list[DeviceRecord]:
        check_limit(limit)
        clauses: list[str] = []
        params: list[Any] = []
        if state is not None:
            clauses.append("state = ?")
            params.append(state)
        if manufacturer is not None:
            clauses.append("manufacturer = ?")
            params.append(manufacturer)
        if after_serial is not None:
            clauses.append("serial > ?")
            params.append(after_serial)
        where = f"WHERE {' AND '.join(clauses)} ORDER BY serial LIMIT ?" if clauses else "ORDER BY serial LIMIT ?"
        params.append(limit)
        return await self._db.read(lambda conn: _devices.all(conn, where, params))

    async def device_transitions(self, serial: str) -> list[TransitionRecord]:
        return await self._db.read(
            lambda conn: _transitions.all(conn, "WHERE serial = ? ORDER BY id", (serial,))
        )

    # --- voucher requests and vouchers ---------------------------------------

    async def add_voucher_request(
        self,
        *,
        serial: str,
        nonce: bytes | None,
        pledge_request: bytes,
        registrar_request: bytes | None,
        media_type: str,
        received_at: datetime,
        events: Sequence[NewEvent] = (),
    ) -> int:
        params = (serial, nonce, pledge_request, registrar_request, media_type, to_ts(received_at))
        return await self._insert_for_device(
            serial,
            "INSERT INTO voucher_requests (serial, nonce, pledge_request, registrar_request,"
            " media_type, received_at) VALUES (?, ?, ?, ?, ?, ?)",
            params,
            events,
        )

    async def voucher_requests(self, serial: str) -> list[VoucherRequestRecord]:
        return await self._db.read(
            lambda conn: _voucher_requests.all(conn, "WHERE serial = ? ORDER BY id", (serial,))
        )

    async def add_voucher(
        self,
        *,
        serial: str,
        voucher: bytes,
        media_type: str,
        assertion: str,
        nonce: bytes | None,
        expires_on: datetime | None,
        received_at: datetime,
        events: Sequence[NewEvent] = (),
        then: StateChange | None = None,
    ) -> int:
        ts = to_ts(received_at)
        params = (serial, voucher, media_type, assertion, nonce, to_ts_opt(expires_on), ts)

        def run(conn: sqlite3.Connection) -> int:
            if then is not None:  # its read of the device's state is the device check too
                _move_state(conn, serial, then.state, ts, then.reason, expect=then.expect)
            else:
                require_device(conn, serial)
            rowid = conn.execute(
                "INSERT INTO vouchers (serial, voucher, media_type, assertion, nonce, expires_on,"
                " received_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                params,
            ).lastrowid
            assert rowid is not None
            _evidence(conn, ts, serial, ("voucher", rowid), ("device", serial))
            return rowid

        return await self._db.write(with_events(run, events))

    async def latest_voucher_request(self, serial: str) -> VoucherRequestRecord | None:
        # One row through the (serial, id) index: inline (see read_now).
        return self._db.read_now(lambda conn: _voucher_requests.one(conn, _LATEST, (serial,)))

    async def latest_voucher(self, serial: str) -> VoucherRecord | None:
        return self._db.read_now(lambda conn: _vouchers.one(conn, _LATEST, (serial,)))

    # --- status telemetry ------------------------------------------------------

    async def add_status_report(
        self,
        *,
        serial: str,
        kind: StatusKind,
        status: bool,
        reason: str | None,
        body: str | Mapping[str, Any],
        received_at: datetime,
        events: Sequence[NewEvent] = (),
        audit_log: NewAuditLog | None = None,
    ) -> int:
        if kind not in ("voucher", "enroll"):
            raise ValueError(f"status report kind must be voucher or enroll, not {kind!r}")
        if audit_log is not None and kind != "voucher":
            raise ValueError("an audit log is stored with a voucher status report only")
        text = body if isinstance(body, str) else canonical_json(dict(body)).decode("utf-8")
        params = (serial, kind, 1 if status else 0, reason, text, to_ts(received_at))
        audit = None if audit_log is None else (serial, to_ts(audit_log.fetched_at), audit_log.body)

        def run(conn: sqlite3.Connection) -> int:
            require_device(conn, serial)
            rowid = conn.execute(
                "INSERT INTO status_reports (serial, kind, status, reason, body, received_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                params,
            ).lastrowid
            assert rowid is not None
            if audit is not None:
                conn.execute(_INSERT_AUDIT_LOG, audit)
            return rowid

        return await self._db.write(
            with_events(run, (*events, *(audit_log.events if audit_log is not None else ())))
        )

    async def status_reports(self, serial: str) -> list[StatusReportRecord]:
        return await self._db.read(
            lambda conn: _status_reports.all(conn, "WHERE serial = ? ORDER BY id", (serial,))
        )

    # --- MASA audit logs ------------------------------------------------------------

    async def add_audit_log(
        self, *, serial: str, fetched_at: datetime, body: bytes, events: Sequence[NewEvent] = ()
    ) -> int:
        return await self._insert_for_device(serial, _INSERT_AUDIT_LOG, (serial, to_ts(fetched_at), body), events)

    async def audit_logs(self, serial: str) -> list[AuditLogRecord]:
        return await self._db.read(
            lambda conn: _audit_logs.all(conn, "WHERE serial = ? ORDER BY id", (serial,))
        )

    async def latest_audit_log(self, serial: str) -> AuditLogRecord | None:
        return self._db.read_now(lambda conn: _audit_logs.one(conn, _LATEST, (serial,)))

    # --- what an EST request reads ---------------------------------------------------

    async def est_facts(
        self,
        *,
        device_serial: str | None = None,
        cert_serial: int | str | None = None,
        spki_sha256: bytes | None = None,
        gate: bool = False,
        certificates: bool = False,
        crl_number: bool = False,
    ) -> EstFacts:
        if (device_serial is None) == (cert_serial is None):
            raise ValueError("est_facts reads a device by its serial or by a certificate serial, one of them")
        client_serial = None if cert_serial is None else normalize_cert_serial(cert_serial)

        def run(conn: sqlite3.Connection) -> EstFacts:
            client = None
            serial = device_serial
            if client_serial is not None:
                client = certificate_rows.one(conn, "WHERE cert_serial = ?", (client_serial,))
                if client is None:
                    return EstFacts()
                serial = client.device_serial
            assert serial is not None
            if getattr(conn, "dialect", "sqlite") == "postgresql":
                return _facts_joined(conn, client, serial, spki_sha256,
                                     gate=gate, certificates=certificates, crl_number=crl_number)
            return EstFacts(
                client_certificate=client,
                device=_get_device(conn, serial),
                approval=approval_row(conn, serial) if gate else None,
                audit_log=_audit_logs.one(conn, _LATEST, (serial,)) if gate else None,
                certificates=tuple(certificate_rows.all(conn, DEVICE_ROWS, (serial,))) if certificates else (),
                key_certificate=(
                    None if spki_sha256 is None else certificate_rows.one(conn, KEY_NEWEST, (spki_sha256,))
                ),
                crl_number=newest_crl_number(conn) if crl_number else None,
            )

        # Point reads and one device's few rows through their indexes, once
        # per EST request: inline, one transaction (see read_now).
        return self._db.read_now(run, snapshot=True)

    # --- counters ------------------------------------------------------------------

    async def stats(self) -> dict[str, int]:
        def run(conn: sqlite3.Connection) -> dict[str, int]:
            out: dict[str, int] = {}
            total = 0
            for state, n in conn.execute("SELECT state, count(*) FROM devices GROUP BY state"):
                out[f"devices.{state}"] = n
                total += n
            out["devices"] = total
            for state in ("reserved", "issued", "revoked"):
                out[f"certificates.{state}"] = 0
            for state, n in conn.execute("SELECT state, count(*) FROM certificates GROUP BY state"):
                out[f"certificates.{state}"] = n
            for table in ("voucher_requests", "vouchers", "status_reports", "audit_logs", "events"):
                out[table] = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            return out

        return await self._db.read(run)

    # --- helpers ---------------------------------------------------------------------

    async def _insert_for_device(
        self, serial: str, sql: str, params: tuple[Any, ...], events: Sequence[NewEvent] = ()
    ) -> int:
        def run(conn: sqlite3.Connection) -> int:
            require_device(conn, serial)
            rowid = conn.execute(sql, params).lastrowid
            assert rowid is not None
            return rowid

        return await self._db.write(with_events(run, events))
