"""SQLite side of :class:`brski_storage.netaccess.NetworkAccessStore` (migration 0004).

A mixin for :class:`brski_storage.sqlite_registrar.SqliteRegistrarStore`; it
relies on the host class for ``self._db``.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime

from brski_storage.netaccess import DeviceProfile, NetworkAccessStore, NetworkSession
from brski_storage.sqlite import Database, RowReader, from_ts, from_ts_opt, require_device, to_ts

__all__ = ["SqliteNetworkAccessMixin"]

_sessions = RowReader(
    NetworkSession,
    "network_sessions",
    "id, device_serial, cert_serial, authenticator, das_address, port, mac, session_id, since, ended_at, end_reason",
    since=from_ts,
    ended_at=from_ts_opt,
)
_profiles = RowReader(
    DeviceProfile,
    "device_network_profiles",
    "serial, device_class, mud_url, source, updated_at",
    updated_at=from_ts,
)


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
            return _sessions.by_id(conn, cur.lastrowid)

        return await self._db.write(run)

    async def end_network_session(self, session_id: int, *, at: datetime, reason: str) -> NetworkSession | None:
        ts = to_ts(at)

        def run(conn: sqlite3.Connection) -> NetworkSession | None:
            cur = conn.execute(
                "UPDATE network_sessions SET ended_at = ?, end_reason = ? WHERE id = ? AND ended_at IS NULL",
                (ts, reason, session_id),
            )
            return _sessions.by_id(conn, session_id) if cur.rowcount else None

        return await self._db.write(run)

    async def find_network_session(self, *, authenticator: str, mac: str) -> NetworkSession | None:
        where = "WHERE authenticator = ? AND mac = ? AND ended_at IS NULL"
        return await self._db.read(lambda conn: _sessions.one(conn, where, (authenticator, mac)))

    async def network_sessions(self, *, device_serial: str | None = None, open_only: bool = True) -> list[NetworkSession]:
        where, params = [], []
        if device_serial is not None:
            where.append("device_serial = ?")
            params.append(device_serial)
        if open_only:
            where.append("ended_at IS NULL")
        clause = f"WHERE {' AND '.join(where)} ORDER BY id" if where else "ORDER BY id"
        return await self._db.read(lambda conn: _sessions.all(conn, clause, params))

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
        return await self._db.read(lambda conn: _profiles.one(conn, "WHERE serial = ?", (serial,)))
