"""SQLite side of the registrar's admission policy (migration 0002): the
operator approval queue and first-use manufacturer pins.

A mixin for :class:`brski_storage.sqlite_registrar.SqliteRegistrarStore`; it
relies on the host class for ``self._db``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime

from brski.errors import Conflict
from brski_storage.base import (
    ApprovalDecision,
    ApprovalRecord,
    DeviceRecord,
    ManufacturerPin,
    NewDevice,
    NewEvent,
    NewVoucherRequest,
    PinnedManufacturer,
    StateChange,
)
from brski_storage.evidence import record_state
from brski_storage.sqlite import Database, RowReader, from_ts, from_ts_opt, require_device, to_ts
from brski_storage.sqlite_events import with_events

__all__ = ["SqliteAdmissionMixin", "approval_row", "approval_rows", "insert_pin", "queue_approval"]

_approvals = RowReader(
    ApprovalRecord,
    "device_approvals",
    "serial, decision, requested_at, decided_at, decided_by, reason",
    requested_at=from_ts_opt,
    decided_at=from_ts_opt,
)
_pins = RowReader(
    PinnedManufacturer,
    "pinned_manufacturers",
    "issuer, cert_der, spki_sha256, policy_name, first_serial, pinned_at",
    pinned_at=from_ts,
)


#: Approval rows as the stores read them (also for ``est_facts``).
approval_rows = _approvals


def approval_row(conn: sqlite3.Connection, serial: str) -> ApprovalRecord | None:
    return _approvals.one(conn, "WHERE serial = ?", (serial,))


def _get_pin(conn: sqlite3.Connection, issuer: str) -> PinnedManufacturer | None:
    return _pins.one(conn, "WHERE issuer = ?", (issuer,))


def queue_approval(conn: sqlite3.Connection, serial: str, ts: str) -> ApprovalRecord:
    """Queue ``serial`` as 'pending' unless a row exists (an operator's decision stays)."""
    conn.execute(
        "INSERT INTO device_approvals (serial, decision, requested_at) VALUES (?, 'pending', ?)"
        # Table-qualified: PostgreSQL calls a bare name ambiguous between the row and ``excluded``.
        " ON CONFLICT (serial) DO UPDATE SET requested_at = coalesce(device_approvals.requested_at,"
        " excluded.requested_at)",
        (serial, ts),
    )
    record_state(conn, "registrar", [("approval", serial)], at=ts, device_serial=serial)
    record = approval_row(conn, serial)
    assert record is not None
    return record


def insert_pin(conn: sqlite3.Connection, pin: ManufacturerPin, *, first_serial: str, ts: str) -> PinnedManufacturer:
    """Pin ``pin.issuer`` unless already pinned (first writer wins); the pin that holds."""
    cur = conn.execute(
        f"INSERT INTO pinned_manufacturers ({_pins.columns}) VALUES (?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (issuer) DO NOTHING",
        (pin.issuer, pin.cert_der, pin.spki_sha256, pin.policy_name, first_serial, ts),
    )
    if cur.rowcount:
        record_state(conn, "registrar", [("pin", pin.issuer)], at=ts, device_serial=first_serial)
    held = _get_pin(conn, pin.issuer)
    assert held is not None
    return held


class SqliteAdmissionMixin:
    _db: Database

    async def get_approval(self, serial: str) -> ApprovalRecord | None:
        return self._db.read_now(lambda conn: approval_row(conn, serial))

    async def request_approval(self, serial: str, *, at: datetime) -> ApprovalRecord:
        ts = to_ts(at)

        def run(conn: sqlite3.Connection) -> ApprovalRecord:
            return queue_approval(conn, serial, ts)

        return await self._db.write(run)

    async def decide_approval(
        self, serial: str, *, decision: ApprovalDecision, at: datetime, by: str, reason: str | None = None
    ) -> ApprovalRecord:
        if decision not in ("approved", "rejected"):
            raise ValueError("an operator decides 'approved' or 'rejected'")
        ts = to_ts(at)

        def run(conn: sqlite3.Connection) -> ApprovalRecord:
            conn.execute(
                "INSERT INTO device_approvals (serial, decision, decided_at, decided_by, reason)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (serial) DO UPDATE SET decision = excluded.decision,"
                " decided_at = excluded.decided_at, decided_by = excluded.decided_by, reason = excluded.reason",
                (serial, decision, ts, by, reason),
            )
            record_state(conn, "registrar", [("approval", serial)], at=ts, device_serial=serial)
            record = approval_row(conn, serial)
            assert record is not None
            return record

        return await self._db.write(run)

    async def list_approvals(self, *, decision: ApprovalDecision | None = None) -> list[ApprovalRecord]:
        params: tuple[str, ...] = ()
        where = "ORDER BY serial"
        if decision is not None:
            where, params = "WHERE decision = ? ORDER BY serial", (decision,)
        return await self._db.read(lambda conn: _approvals.all(conn, where, params))

    async def get_pinned_manufacturer(self, issuer: str) -> PinnedManufacturer | None:
        return self._db.read_now(lambda conn: _get_pin(conn, issuer))  # by primary key: inline

    async def pin_manufacturer(
        self, *, issuer: str, cert_der: bytes, spki_sha256: bytes, policy_name: str, first_serial: str, at: datetime
    ) -> PinnedManufacturer:
        ts = to_ts(at)

        def run(conn: sqlite3.Connection) -> PinnedManufacturer:
            return insert_pin(
                conn,
                ManufacturerPin(issuer=issuer, cert_der=cert_der, spki_sha256=spki_sha256, policy_name=policy_name),
                first_serial=first_serial,
                ts=ts,
            )

        return await self._db.write(run)

    @staticmethod
    def _apply(conn: sqlite3.Connection, serial: str, change: StateChange, ts: str) -> None:
        raise NotImplementedError  # the host store's one way to change a device's state

    @staticmethod
    def _insert_device(conn: sqlite3.Connection, serial: str, device: NewDevice, ts: str) -> DeviceRecord | None:
        raise NotImplementedError  # the host store's one way to record a new device

    async def commit_voucher_decision(
        self,
        serial: str,
        *,
        at: datetime,
        device: NewDevice | None = None,
        changes: Sequence[StateChange] = (),
        pin: ManufacturerPin | None = None,
        queue_for_approval: bool = False,
        voucher_request: NewVoucherRequest | None = None,
        events: Sequence[NewEvent] = (),
    ) -> None:
        ts = to_ts(at)

        def run(conn: sqlite3.Connection) -> None:
            created = False
            if device is not None:
                created = self._insert_device(conn, serial, device, ts) is None
            else:
                require_device(conn, serial)
            for change in changes:
                self._apply(conn, serial, change, ts)
            if changes or created:  # the row's facts once, after every change this transaction makes
                record_state(conn, "registrar", [("device", serial)], at=ts, device_serial=serial)
            if pin is not None and insert_pin(conn, pin, first_serial=serial, ts=ts).cert_der != pin.cert_der:
                raise Conflict(f"issuer {pin.issuer!r} is pinned to another certificate", check="storage.pin-held")
            if queue_for_approval:
                queue_approval(conn, serial, ts)
            if voucher_request is not None:
                vr = voucher_request
                conn.execute(
                    "INSERT INTO voucher_requests (serial, nonce, pledge_request, registrar_request,"
                    " media_type, received_at) VALUES (?, ?, ?, ?, ?, ?)",
                    (serial, vr.nonce, vr.pledge_request, vr.registrar_request, vr.media_type, ts),
                )

        await self._db.write(with_events(run, events))
