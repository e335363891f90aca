"""SQLite side of :class:`brski_storage.netaccess.NetworkAccessStore` (migration 0004).

A mixin for :class:`brski_storage.sqlite_registrar.SqliteRegistrarStore`; it
relies on the host class for ``self._db``.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import Any

from brski_storage.netaccess import DeviceProfile, NetworkAccessStore, NetworkSession
from brski_storage.sqlite import Database, from_ts, from_ts_opt, require_device, to_ts

__all__ = ["SqliteNetworkAccessMixin"]

_COLUMNS = (
    "id, device_serial, cert_serial, authenticator, das_address, port, mac, session_id, since, ended_at, end_reason"
)


def _session(row: tuple[Any, ...]) -> NetworkSession:
    return NetworkSession(
        id=row[0], device_serial=row[1], cert_serial=row[2], authenticator=row[3], das_address=row[4],
        port=row[5], mac=row[6], session_id=row[7], since=from_ts(row[8]), ended_at=from_ts_opt(row[9]),
        end_reason=row[10],
    )


def _by_id(conn: sqlite3.Connection, sid: int) -> NetworkSession | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM network_sessions WHERE id = ?", (sid,)).fetchone()
    return None if row is None else _session(row)


class SqliteNetworkAccessMixin(NetworkAccessStore):
    _db: Database

    async def open_network_session(
        self,
        *,
        device_serial: str,
        cert_serial: str,
        authenticator: str,
        das_address: str | None,
        port: str | None,
        mac: str,
        session_id: str | None,
        at: datetime,
    ) -> NetworkSession:
        ts = to_ts(at)

        def run(conn: sqlite3.Connection) -> NetworkSession:
            require_device(conn, device_serial)
            conn.execute(
                "UPDATE network_sessions SET ended_at = ?, end_reason = 'replaced'"
                " WHERE authenticator = ? AND mac = ? AND ended_at IS NULL",
                (ts, authenticator, mac),
            )
            cur = conn.execute(
                "INSERT INTO network_sessions (device_serial, cert_serial, authenticator, das_address, port, mac,"
                " session_id, since) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (device_serial, cert_serial, authenticator, das_address, port, mac, session_id, ts),
            )
            record = _by_id(conn, int(cur.lastrowid or 0))
            assert record is not None
            return record

        return await self._db.write(run)

    async def end_network_session(self, session_id: int, *, at: datetime, reason: str) -> NetworkSession | None:
        ts = to_ts(at)

        def run(conn: sqlite3.Connection) -> NetworkSession | None:
            cur = conn.execute(
                "UPDATE network_sessions SET ended_at = ?, end_reason = ? WHERE id = ? AND ended_at IS NULL",
                (ts, reason, session_id),
            )
            return _by_id(conn, session_id) if cur.rowcount else None

        return await self._db.write(run)

    async def find_network_session(self, *, authenticator: str, mac: str) -> NetworkSession | None:
        def run(conn: sqlite3.Connection) -> NetworkSession | None:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM network_sessions WHERE authenticator = ? AND mac = ? AND ended_at IS NULL",
                (authenticator, mac),
            ).fetchone()
            return None if row is None else _session(row)

        return await self._db.read(run)

    async def network_sessions(self, *, device_serial: str | None = None, open_only: bool = True) -> list[NetworkSession]:
        where, params = [], []
        if device_serial is not None:
            where.append("device_serial = ?")
            params.append(device_serial)
        if open_only:
            where.append("ended_at IS NULL")
        sql = f"SELECT {_COLUMNS} FROM network_sessions"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id"
        return await self._db.read(lambda conn: [_session(r) for r in conn.execute(sql, params)])

    async def set_device_profile(
        self, serial: str, *, device_class: str, mud_url: str | None, source: str, at: datetime
    ) -> DeviceProfile:
        ts = to_ts(at)

        def run(conn: sqlite3.Connection) -> DeviceProfile:
            require_device(conn, serial)
            conn.execute(
                "INSERT INTO device_network_profiles (serial, device_class, mud_url, source, updated_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (serial) DO UPDATE SET device_class = excluded.device_class,"
                " mud_url = excluded.mud_url, source = excluded.source, updated_at = excluded.updated_at",
                (serial, device_class, mud_url, source, ts),
            )
            return DeviceProfile(serial=serial, device_class=device_class, mud_url=mud_url, source=source, updated_at=at)

        return await self._db.write(run)

    async def get_device_profile(self, serial: str) -> DeviceProfile | None:
        def run(conn: sqlite3.Connection) -> DeviceProfile | None:
            row = conn.execute(
                "SELECT serial, device_class, mud_url, source, updated_at FROM device_network_profiles WHERE serial = ?",
                (serial,),
            ).fetchone()
            if row is None:
                return None
            return DeviceProfile(serial=row[0], device_class=row[1], mud_url=row[2], source=row[3], updated_at=from_ts(row[4]))

        return await self._db.read(run)
