"""SQLite side of :class:`brski_storage.lifecycle.LifecycleStore`.

A mixin for :class:`brski_storage.sqlite_registrar.SqliteRegistrarStore`; it
relies on the host class for ``self._db`` and ``get_certificate``.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import TYPE_CHECKING

from brski_storage.evidence import record_state
from brski_storage.lifecycle import CrlRecord, LifecycleStore
from brski_storage.sqlite import Database, RowReader, from_ts, to_ts
from brski_storage.sqlite_certificates import normalize_cert_serial, renewed_device

if TYPE_CHECKING:
    from brski_storage.base import CertificateRecord

__all__ = ["SqliteLifecycleMixin", "newest_crl_number"]


_crls = RowReader(
    CrlRecord,
    "crls",
    "number, this_update, next_update, revoked_count, der",
    this_update=from_ts,
    next_update=from_ts,
)


def newest_crl_number(conn: sqlite3.Connection) -> int | None:
    """The last entry of the CRLs' primary key (no DER read), None before the first CRL."""
    row = conn.execute("SELECT max(number) FROM crls").fetchone()
    return int(row[0]) if row is not None and row[0] is not None else None


class SqliteLifecycleMixin(LifecycleStore):
    _db: Database

    async def get_certificate(self, cert_serial: int | str) -> CertificateRecord | None:
        raise NotImplementedError  # provided by the host store

    async def reserve_renewal(
        self, *, cert_serial: int | str, renews: int | str, spki_sha256: bytes, at: datetime
    ) -> CertificateRecord:
        serial, previous = normalize_cert_serial(cert_serial), normalize_cert_serial(renews)
        ts = to_ts(at)

        def run(conn: sqlite3.Connection) -> None:
            device = renewed_device(conn, previous)
            conn.execute(
                "INSERT INTO certificates (cert_serial, device_serial, spki_sha256, renews,"
                " state, reserved_at) VALUES (?, ?, ?, ?, 'reserved', ?)",
                (serial, device, spki_sha256, previous, ts),
            )
            record_state(conn, "registrar", [("certificate", serial)], at=ts, device_serial=device)

        await self._db.write(run, flush=False)  # a reservation: see reserve_certificate
        record = await self.get_certificate(serial)
        assert record is not None
        return record

    async def revoked_count(self) -> int:
        def run(conn: sqlite3.Connection) -> int:
            return int(
                conn.execute("SELECT count(*) FROM certificates WHERE state = 'revoked'").fetchone()[0]
            )

        return await self._db.read(run)

    async def add_crl(
        self,
        *,
        number: int,
        this_update: datetime,
        next_update: datetime,
        revoked_count: int,
        der: bytes,
    ) -> CrlRecord:
        params = (number, to_ts(this_update), to_ts(next_update), revoked_count, der)

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(f"INSERT INTO crls ({_crls.columns}) VALUES (?, ?, ?, ?, ?)", params)

        await self._db.write(run)
        return CrlRecord(
            number=number,
            this_update=this_update,
            next_update=next_update,
            revoked_count=revoked_count,
            der=der,
        )

    async def latest_crl(self) -> CrlRecord | None:
        return await self._db.read(lambda conn: _crls.one(conn, "ORDER BY number DESC LIMIT 1"))

    async def latest_crl_number(self) -> int | None:
        # Inline (read_now): the last entry of the primary key, no DER read; asked
        # on every request that checks a certificate against the published CRL.
        return self._db.read_now(newest_crl_number)
