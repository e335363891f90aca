"""The event log every SQLite store shares: events validated and canonicalised
on the caller's side (:class:`PreparedEvent`), chained by hash inside the write
transaction that carries them (:func:`with_events`), and read, verified and
checkpointed through :class:`SqliteEventLog` (the hash chain's rules are in
:mod:`brski_storage.chain`, the state evidence in :mod:`brski_storage.evidence`).

The PostgreSQL engine runs the same code over its own connection adapter
(:mod:`brski_storage.postgres`).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any, TypeVar, cast

from brski_storage import evidence
from brski_storage.base import ChainReport, EventLog, EventRecord, NewEvent, WriteObserver
from brski_storage.chain import (
    GENESIS,
    StoredEvent,
    canonical_json,
    event_hash_of_text,
    verify_chain,
)
from brski_storage.sqlite import (
    Database,
    RowReader,
    WriterConnection,
    check_limit,
    from_ts,
    sqlite_now,
    to_ts,
)

__all__ = ["PreparedEvent", "SqliteEventLog", "with_events"]

T = TypeVar("T")

_OUTCOMES = frozenset({"allow", "refuse", "info"})

_EVENT_VALUES = "at, kind, device_serial, outcome, check_name, detail, prev_hash, hash"
_EVENT_COLUMNS = f"id, {_EVENT_VALUES}"

# A row exactly as stored (the chain walk), and as callers see it.
_stored_event = RowReader(StoredEvent, "events", _EVENT_COLUMNS, rename={"check_name": "check"})
_event_record = RowReader(
    EventRecord, "events", _EVENT_COLUMNS, rename={"check_name": "check"}, at=from_ts, detail=json.loads
)


class PreparedEvent:
    """An event validated and canonicalised on the caller's side, ready to be
    chained inside whichever write transaction carries it."""

    __slots__ = ("at", "check", "detail_text", "device_serial", "kind", "outcome")

    def __init__(self, event: NewEvent) -> None:
        if event.outcome not in _OUTCOMES:
            raise ValueError(f"event outcome must be allow, refuse or info, not {event.outcome!r}")
        if not event.kind:
            raise ValueError("event kind must not be empty")
        self.at = to_ts(event.at)  # the chain's one spelling of the time
        self.kind = event.kind
        self.device_serial = event.device_serial
        self.outcome: str = event.outcome
        self.check = event.check
        # Fails here, in the caller, if detail is not JSON.
        self.detail_text = canonical_json(dict(event.detail)).decode("utf-8")

    @classmethod
    def of_store(cls, *, at: str, kind: str, device_serial: str | None, detail: dict[str, Any]) -> PreparedEvent:
        """An event the store writes itself (state evidence): ``at`` already
        in the chain's spelling, outcome info, no check."""
        event = cls.__new__(cls)
        event.at, event.kind, event.device_serial, event.outcome, event.check = at, kind, device_serial, "info", None
        event.detail_text = canonical_json(detail).decode("utf-8")
        return event

    def digest(self, prev_hash: bytes) -> bytes:
        """:func:`brski_storage.chain.event_hash` of this event, from the detail
        already in canonical JSON."""
        return event_hash_of_text(prev_hash, at=self.at, kind=self.kind, device_serial=self.device_serial,
                                  outcome=self.outcome, check=self.check, detail_text=self.detail_text)

    def values(self, prev_hash: bytes, digest: bytes) -> tuple[Any, ...]:
        """The event's row after its ``id``, in ``_EVENT_VALUES`` order."""
        return (self.at, self.kind, self.device_serial, self.outcome, self.check, self.detail_text, prev_hash, digest)

    def record(self, event_id: int, prev_hash: bytes, digest: bytes) -> EventRecord:
        """The event as reading its row back would return it."""
        return _event_record.record((event_id, *self.values(prev_hash, digest)))

    def chain(self, conn: sqlite3.Connection) -> tuple[int, bytes, bytes]:
        """Chain onto the current head; must run inside the writer transaction.
        Returns (id, prev_hash, hash); :meth:`insert` when the record is wanted.

        On PostgreSQL the connection chains itself, onto the head row its
        transaction holds locked (brski_storage.postgres).
        """
        own = getattr(conn, "chain_event", None)
        if own is not None:
            return cast("tuple[int, bytes, bytes]", own(self))
        prev_hash = conn.chain_head if isinstance(conn, WriterConnection) else None
        if prev_hash is None:
            head = conn.execute("SELECT hash FROM events ORDER BY id DESC LIMIT 1").fetchone()
            prev_hash = GENESIS if head is None else head[0]
        digest = self.digest(prev_hash)
        cur = conn.execute(
            f"INSERT INTO events ({_EVENT_VALUES}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            self.values(prev_hash, digest),
        )
        assert cur.lastrowid is not None
        if isinstance(conn, WriterConnection):
            conn.chain_head = digest  # this transaction's head now (see WriterConnection)
        return cur.lastrowid, prev_hash, digest

    def insert(self, conn: sqlite3.Connection) -> EventRecord:
        """:meth:`chain`, and the event as stored."""
        return self.record(*self.chain(conn))


def with_events(fn: Callable[[sqlite3.Connection], T], events: Sequence[NewEvent]) -> Callable[[sqlite3.Connection], T]:
    """``fn``, then ``events`` chained in the same transaction (see NewEvent).

    The events are validated and canonicalised here, on the caller's side,
    so a bad event fails before anything reaches the writer.
    """
    if not events:
        return fn
    prepared = [PreparedEvent(e) for e in events]

    def run(conn: sqlite3.Connection) -> T:
        result = fn(conn)
        for event in prepared:
            event.chain(conn)
        return result

    return run


class SqliteEventLog(EventLog):
    """Event log and lifecycle shared by the SQLite registrar and MASA stores."""

    def __init__(self, db: Database) -> None:
        self._db = db

    @property
    def database(self) -> Database:
        return self._db

    async def close(self) -> None:
        await self._db.close()

    def observe_writes(self, observer: WriteObserver) -> None:
        self._db.observer = observer

    async def append(self, event: NewEvent) -> EventRecord:
        return await self._db.write(PreparedEvent(event).insert)

    async def events(
        self, *, since_id: int = 0, device_serial: str | None = None, limit: int = 1000
    ) -> list[EventRecord]:
        check_limit(limit)

        params: tuple[Any, ...]
        if device_serial is None:
            where, params = "WHERE id > ? ORDER BY id LIMIT ?", (since_id, limit)
        else:
            where = "WHERE device_serial = ? AND id > ? ORDER BY id LIMIT ?"
            params = (device_serial, since_id, limit)
        return await self._db.read(lambda conn: _event_record.all(conn, where, params))

    async def recent_events(
        self, *, before_id: int | None = None, device_serial: str | None = None, limit: int = 100
    ) -> list[EventRecord]:
        check_limit(limit)
        clauses: list[str] = ["id < ?"]
        params: list[Any] = [before_id if before_id is not None else 2**62]
        if device_serial is not None:
            clauses.append("device_serial = ?")  # events_by_device (device_serial, id)
            params.append(device_serial)
        where = f"WHERE {' AND '.join(clauses)} ORDER BY id DESC LIMIT ?"
        return await self._db.read(lambda conn: _event_record.all(conn, where, (*params, limit)))

    async def verify_event_chain(self) -> ChainReport:
        return await self._db.read(lambda conn: _walk_chain(conn, None))

    async def verify_event_chain_since_checkpoint(self) -> ChainReport:
        def run(conn: sqlite3.Connection) -> ChainReport:
            row = conn.execute(
                "SELECT id, prev_hash FROM events WHERE kind = ? ORDER BY id DESC LIMIT 1",
                (evidence.CHECKPOINT_EVENT,),
            ).fetchone()
            return _walk_chain(conn, None if row is None else (int(row[0]) - 1, bytes(row[1])))

        return await self._db.read(run)

    async def verify_state(self) -> evidence.StateReport:
        role = self._db.role
        return await self._db.read(lambda conn: evidence.verify_state(conn, role))

    async def checkpoint_state(self, *, at: datetime, expect_checkpoint: int | None) -> int | None:
        return await self._db.write(
            lambda conn: evidence.checkpoint_state(conn, at=at, expect_checkpoint=expect_checkpoint)
        )

    async def adopt_state_baseline(self, *, at: datetime | None, reason: str) -> int:
        role = self._db.role

        def run(conn: sqlite3.Connection) -> int:
            when = at if at is not None else from_ts(sqlite_now(conn))
            return evidence.adopt_baseline(conn, role, at=when, reason=reason)

        return await self._db.write(run)

    async def adopt_baseline_if_migrated(self) -> int | None:
        """A store that held rows before state evidence existed gets its
        baseline the first time it is opened after the migration (recorded,
        with the reason, and reported by every later verify)."""
        if not any(name.endswith("_state_evidence.sql") for name in self._db.applied_migration_names):
            return None
        role = self._db.role
        if not await self._db.read(lambda conn: evidence.has_evidenced_rows(conn, role)):
            return None
        migrated = self._db.migrated_at
        return await self.adopt_state_baseline(
            at=None if migrated is None else from_ts(migrated),
            reason="store created before state evidence: rows adopted as found when the"
            " state_evidence migration was applied",
        )


def _walk_chain(conn: sqlite3.Connection, start: tuple[int, bytes] | None) -> ChainReport:
    """verify_chain over the events after ``start`` (id, prev_hash), or all."""
    after = 0 if start is None else start[0]

    def rows() -> Iterator[StoredEvent]:
        for r in conn.execute(f"SELECT {_EVENT_COLUMNS} FROM events WHERE id > ? ORDER BY id", (after,)):
            yield _stored_event.record(r)

    def locate(digest: bytes) -> int | None:
        hit = conn.execute("SELECT id FROM events WHERE hash = ?", (digest,)).fetchone()
        return None if hit is None else int(hit[0])

    return verify_chain(rows(), locate=locate, last_issued_id=_last_issued_event_id(conn), start=start)


def _last_issued_event_id(conn: sqlite3.Connection) -> int | None:
    """The highest event id ever issued: sqlite_sequence here, the chain head
    row on PostgreSQL (a rolled-back sequence value would not do)."""
    own = getattr(conn, "last_issued_event_id", None)
    if own is not None:
        return cast("int | None", own())
    seq = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
    return None if seq is None else int(seq[0])
