"""PostgreSQL engine: the stores' SQL, run against a server shared by many processes.

One implementation of each store: the registrar and MASA stores
(:mod:`brski_storage.sqlite_registrar`, :mod:`brski_storage.sqlite_masa`)
write their SQL once, in the subset both engines understand (``?``
placeholders, ``ON CONFLICT``, no engine functions), as synchronous
functions of a DB-API connection. This engine runs those same functions
on a psycopg 3 connection through :class:`PgConnection`, which maps ``?`` to
``%s`` and supplies ``lastrowid`` through ``RETURNING id``. So a store method
added for SQLite works on PostgreSQL as soon as its tables exist in the
``migrations/postgresql`` files.

Writes: one writer thread per process, exactly as on SQLite, with group
commit (the jobs queued while the last COMMIT was being flushed share the
next transaction, each in its own SAVEPOINT). Every write transaction
starts with ``SELECT ... FROM event_chain_head FOR UPDATE``: that row lock
serialises write transactions of *all* processes sharing the schema, so the
read-check-write sequences of the stores (state transitions with
``expect``, "insert unless present") and the event chain behave exactly as
under SQLite's single writer, and no two processes can ever chain onto the
same head (no forked chain; ``UNIQUE (prev_hash)`` would refuse one
anyway). Group commit amortises both the lock and the WAL flush; what runs
in parallel across worker processes is everything else (TLS, signing,
parsing), which is where an onboarding spends its CPU.

Reads: a small thread pool, one connection per thread, each read one
REPEATABLE READ READ ONLY transaction (one snapshot, as SQLite's readers
get); :meth:`PgDatabase.read_now` runs point lookups inline on a
per-thread autocommit connection (one round trip on a Unix socket, cheaper
than a thread hand-off).

Durability: every COMMIT waits for the WAL flush (``synchronous_commit`` is
forced ``on`` for the writer's sessions), so a caller is only answered
once its write survives a crash, as on SQLite with ``synchronous=FULL``;
except a group made only of writes that asked for no flush of their own
(``write(fn, flush=False)``, :mod:`brski_storage.writer`), which commits
with ``SET LOCAL synchronous_commit = off``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast

import psycopg
from psycopg import errors as pg_errors

from brski.errors import BrskiError, ConfigError, Conflict, StorageError
from brski_storage.postgres_migrate import apply_postgres_migrations
from brski_storage.writer import GroupCommitWriter, Job, JobOutcome

if TYPE_CHECKING:
    import sqlite3
    from datetime import datetime

    from brski_storage.sqlite_events import PreparedEvent

__all__ = ["PgConnection", "PgDatabase", "is_postgres_url", "redact_url", "translate_pg_error"]

T = TypeVar("T")

CONNECT_TIMEOUT_S = 10

_INSERT = re.compile(r"^\s*INSERT\s+INTO\s+(\w+)", re.IGNORECASE)


def is_postgres_url(url: str) -> bool:
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    return scheme in ("postgresql", "postgres")


def redact_url(url: str) -> str:
    """The URL without its password, for logs and error messages."""
    return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", url)


def translate_pg_error(exc: BaseException) -> BrskiError:
    """The error a caller should see for whatever a write raised (as on SQLite)."""
    if isinstance(exc, BrskiError):
        return exc
    err: BrskiError
    if isinstance(exc, pg_errors.UniqueViolation):
        err = Conflict("a record with this key already exists", check="storage.duplicate-key")
    elif isinstance(exc, pg_errors.ForeignKeyViolation):
        err = Conflict("the record refers to one that does not exist", check="storage.foreign-key")
    elif isinstance(exc, psycopg.IntegrityError):
        err = StorageError(f"write refused by a constraint: {exc}", check="storage.constraint")
    elif isinstance(exc, psycopg.DataError):
        # e.g. a NUL character in text: PostgreSQL refuses what SQLite stores.
        err = StorageError(f"write refused by the database: {exc}", check="storage.constraint")
    else:
        err = StorageError(
            f"durable write failed: {type(exc).__name__}: {exc}", check="storage.write-failed"
        )
    err.__cause__ = exc
    return err


class _Cursor:
    """The slice of ``sqlite3.Cursor`` the stores use."""

    __slots__ = ("_cur", "lastrowid", "rowcount")

    def __init__(self, cur: psycopg.Cursor[tuple[Any, ...]], lastrowid: int | None) -> None:
        self._cur = cur
        self.lastrowid = lastrowid
        self.rowcount = cur.rowcount

    def fetchone(self) -> tuple[Any, ...] | None:
        return self._cur.fetchone()

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self._cur.fetchall()

    def fetchmany(self, size: int = 1) -> list[tuple[Any, ...]]:
        return self._cur.fetchmany(size)

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return iter(self._cur)


class PgConnection:
    """A psycopg connection shaped like the ``sqlite3.Connection`` the stores expect.

    ``id_tables`` names the tables with an ``id`` column: an INSERT into one
    of them gets ``RETURNING id`` so ``lastrowid`` works. Inside a write
    transaction ``head`` is the locked chain head (see :meth:`chain_event`).
    """

    dialect = "postgresql"

    def __init__(
        self,
        raw: psycopg.Connection[tuple[Any, ...]],
        *,
        id_tables: frozenset[str],
        head: tuple[int, bytes] | None = None,
    ) -> None:
        self.raw = raw
        self._id_tables = id_tables
        self._sql: dict[str, tuple[str, bool]] = {}
        self.head = head

    def _translate(self, sql: str) -> tuple[str, bool]:
        hit = self._sql.get(sql)
        if hit is None:
            text = sql.replace("%", "%%").replace("?", "%s")
            match = _INSERT.match(text)
            returning = (
                match is not None
                and match.group(1).lower() in self._id_tables
                and "returning" not in text.lower()
            )
            if returning:
                text += " RETURNING id"
            hit = self._sql[sql] = (text, returning)
        return hit

    def execute(self, sql: str, params: Sequence[Any] = ()) -> _Cursor:
        text, returning = self._translate(sql)
        cur = self.raw.execute(cast("Any", text), list(params) if params else None)
        lastrowid: int | None = None
        if returning:
            row = cur.fetchone()
            lastrowid = None if row is None else int(row[0])
        return _Cursor(cur, lastrowid)

    # the event chain (see brski_storage.sqlite_events.PreparedEvent.chain)

    def chain_event(self, event: PreparedEvent) -> tuple[int, bytes, bytes]:
        """Chain ``event`` onto the head this transaction holds locked: (id, prev_hash, hash)."""
        if self.head is None:
            raise StorageError("events are appended inside a write only", check="storage.write-failed")
        last_id, prev_hash = self.head
        digest = event.digest(prev_hash)
        new_id = last_id + 1
        self.raw.execute(
            "INSERT INTO events (id, at, kind, device_serial, outcome, check_name, detail,"
            " prev_hash, hash) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (new_id, *event.values(prev_hash, digest)),
        )
        self.head = (new_id, digest)
        return new_id, prev_hash, digest

    def last_issued_event_id(self) -> int | None:
        row = self.raw.execute("SELECT last_id FROM event_chain_head").fetchone()
        return None if row is None or not row[0] else int(row[0])


class PgDatabase(GroupCommitWriter["psycopg.Connection[tuple[Any, ...]]"]):
    """One PostgreSQL schema: a writer thread with group commit, a reader pool,
    inline point reads. Same surface as :class:`brski_storage.sqlite.SqliteDatabase`."""

    def __init__(self, url: str, *, role: str, readers: int = 4) -> None:
        super().__init__(thread_name=f"brski-pg-writer-{role}")
        self.url = url
        self.role = role
        self.path = redact_url(url)
        self._migrated_at: str | None = None
        self._readers = concurrent.futures.ThreadPoolExecutor(
            max_workers=readers, thread_name_prefix=f"brski-pg-reader-{role}"
        )
        self._local = threading.local()
        self._conns: list[psycopg.Connection[tuple[Any, ...]]] = []
        self._conns_lock = threading.Lock()
        self.id_tables: frozenset[str] = frozenset()

    @property
    def migrated_at(self) -> str | None:
        return self._migrated_at

    @property
    def applied_migration_names(self) -> list[str]:
        """File names of the migrations this open applied."""
        from brski_storage.migrate import load_migrations

        done = set(self.applied_migrations)
        return [m.name for m in load_migrations("postgresql", self.role) if m.version in done]

    @classmethod
    async def open(
        cls, url: str, *, role: str, migrated_at: datetime | None = None, readers: int = 4
    ) -> PgDatabase:
        from brski_storage.sqlite import to_ts_opt

        db = cls(url, role=role, readers=readers)
        db._migrated_at = to_ts_opt(migrated_at)
        try:
            db.applied_migrations = await db._start_writer()
        except BaseException:
            db._readers.shutdown(wait=False)
            raise
        return db

    # connections

    def _connect(self, *, writer: bool = False) -> psycopg.Connection[tuple[Any, ...]]:
        try:
            conn = psycopg.connect(
                self.url,
                autocommit=True,
                connect_timeout=CONNECT_TIMEOUT_S,
                application_name=f"brski-{self.role}",
            )
        except psycopg.Error as exc:
            raise StorageError(
                f"cannot connect to {self.path}: {exc}", check="storage.open"
            ) from exc
        if writer:
            # A COMMIT returns only once it is flushed, whatever the server default.
            conn.execute("SET synchronous_commit = on")
            # A writer stuck mid-transaction (a stopped process, a network
            # partition) must not hold the chain head, and so every other
            # process's writes, for ever: the server ends its session.
            conn.execute("SET idle_in_transaction_session_timeout = '60s'")
            conn.execute("SET lock_timeout = '30s'")
        with self._conns_lock:
            self._conns.append(conn)
        return conn

    def _drop(self, conn: psycopg.Connection[tuple[Any, ...]]) -> None:
        with self._conns_lock:
            if conn in self._conns:
                self._conns.remove(conn)
        try:
            conn.close()
        except psycopg.Error:
            pass

    def _load_id_tables(self, conn: psycopg.Connection[tuple[Any, ...]]) -> frozenset[str]:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND column_name = 'id'"
            " AND table_name <> 'events'"
        ).fetchall()
        return frozenset(str(r[0]) for r in rows)

    # writer side

    def _open_writer(self) -> psycopg.Connection[tuple[Any, ...]]:
        conn = self._connect(writer=True)
        self.applied_migrations = apply_postgres_migrations(
            conn, role=self.role, applied_at=self._migrated_at
        )
        self.id_tables = self._load_id_tables(conn)
        return conn

    def _usable(
        self, conn: psycopg.Connection[tuple[Any, ...]] | None, batch: list[Job]
    ) -> psycopg.Connection[tuple[Any, ...]] | None:
        """A broken writer connection (server restart, network) is replaced;
        if that fails too, this batch gets the error and the next one retries."""
        if conn is not None and not (conn.broken or conn.closed):
            return conn
        if conn is not None:
            self._drop(conn)
        try:
            return self._connect(writer=True)
        except StorageError as exc:
            self._answer([(j, None, exc) for j in batch])
            return None

    def _close_writer(self, conn: psycopg.Connection[tuple[Any, ...]]) -> None:
        self._drop(conn)

    def _run_group(self, conn: psycopg.Connection[tuple[Any, ...]], batch: list[Job]) -> None:
        """``batch`` in one transaction, one SAVEPOINT per job (none for a
        group of one), one COMMIT.

        The transaction starts by locking the chain head: from here to
        COMMIT no other process writes this schema.
        """
        outcomes: list[JobOutcome] = []
        committed: list[int] = []
        flush = any(job[3] for job in batch)
        try:
            conn.execute("BEGIN")
            if not flush:
                # Only writes that need no flush of their own (brski_storage.writer):
                # this COMMIT returns once visible; the next synchronous
                # commit's WAL flush (it flushes up to its own record, so
                # past this one) makes it durable.
                conn.execute("SET LOCAL synchronous_commit = off")
            row = conn.execute(
                "SELECT last_id, last_hash FROM event_chain_head FOR UPDATE"
            ).fetchone()
            if row is None:
                raise StorageError("the event chain head row is missing", check="storage.chain-head")
        except BaseException as exc:
            self._abort(conn)
            err = translate_pg_error(exc)
            self._answer([(job, None, err) for job in batch])
            return
        start_head = (int(row[0]), bytes(row[1]))
        adapter = PgConnection(conn, id_tables=self.id_tables, head=start_head)
        if len(batch) == 1:
            # A group of one needs no savepoint (two round trips fewer): its
            # failure rolls the whole transaction back, which is its own work,
            # chain head lock included.
            job = batch[0]
            try:
                outcomes.append((job, job[0](adapter), None))
                committed.append(0)
            except BaseException as exc:
                self._abort(conn)
                self._answer([(job, None, translate_pg_error(exc))])
                return
            batch = []  # nothing more to run; commit below
        for job in batch:
            saved = adapter.head
            try:
                conn.execute("SAVEPOINT job")
                result = job[0](adapter)
                conn.execute("RELEASE SAVEPOINT job")
            except BaseException as exc:
                adapter.head = saved
                try:
                    conn.execute("ROLLBACK TO SAVEPOINT job")
                    conn.execute("RELEASE SAVEPOINT job")
                except psycopg.Error:
                    # The connection or the transaction is gone: so are the
                    # jobs of this group that had succeeded.
                    lost = StorageError(
                        f"transaction aborted by a failing write: {exc}",
                        check="storage.write-failed",
                    )
                    for i in committed:
                        outcomes[i] = (outcomes[i][0], None, lost)
                    committed.clear()
                    outcomes.append((job, None, translate_pg_error(exc)))
                    for rest in batch[len(outcomes):]:
                        outcomes.append((rest, None, lost))
                    self._abort(conn)
                    self._answer(outcomes)
                    return
                outcomes.append((job, None, translate_pg_error(exc)))
                continue
            committed.append(len(outcomes))
            outcomes.append((job, result, None))
        try:
            if adapter.head != start_head:
                assert adapter.head is not None
                conn.execute(
                    "UPDATE event_chain_head SET last_id = %s, last_hash = %s", adapter.head
                )
            conn.execute("COMMIT")
            self.commits += 1
            self.flushes += flush
        except BaseException as exc:
            self._abort(conn)
            err = translate_pg_error(exc)
            for i in committed:
                outcomes[i] = (outcomes[i][0], None, err)
        self._answer(outcomes)

    @staticmethod
    def _abort(conn: psycopg.Connection[tuple[Any, ...]]) -> None:
        if conn.broken or conn.closed:
            return
        try:
            conn.execute("ROLLBACK")
        except psycopg.Error:
            pass

    # reader side

    def _thread_conn(self) -> psycopg.Connection[tuple[Any, ...]]:
        conn = cast("psycopg.Connection[tuple[Any, ...]] | None", getattr(self._local, "conn", None))
        if conn is not None and (conn.broken or conn.closed):
            self._drop(conn)
            conn = None
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
        return conn

    def _read_sync(self, fn: Callable[[sqlite3.Connection], T], *, snapshot: bool) -> T:
        if self._closed:
            raise StorageError("the store is closed", check="storage.closed")
        for attempt in (1, 2):
            conn = self._thread_conn()
            adapter = PgConnection(conn, id_tables=self.id_tables)
            try:
                if not snapshot:
                    return fn(cast("sqlite3.Connection", adapter))
                # One statement opens the snapshot's transaction (not BEGIN,
                # then SET TRANSACTION: a round trip fewer per read).
                conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                try:
                    result = fn(cast("sqlite3.Connection", adapter))
                except BaseException:
                    self._abort(conn)
                    raise
                conn.execute("COMMIT")
                return result
            except psycopg.Error as exc:
                # A reader whose backend went away (a server restart, an
                # administrator) is found broken only when used: a read changes
                # nothing, so it is tried once more on a new connection.
                if attempt == 1 and (conn.broken or conn.closed):
                    continue
                raise StorageError(f"read failed: {exc}", check="storage.read-failed") from exc
        raise AssertionError("unreachable")

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in one read-only snapshot on a reader thread."""
        if self._closed:
            raise StorageError("the store is closed", check="storage.closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._readers, lambda: self._read_sync(fn, snapshot=True)
        )

    def read_now(self, fn: Callable[[sqlite3.Connection], T], *, snapshot: bool = False) -> T:
        """Run a point lookup right here (see ``SqliteDatabase.read_now``):
        in autocommit, one statement one snapshot; with ``snapshot``, every
        statement of ``fn`` in one REPEATABLE READ READ ONLY transaction."""
        return self._read_sync(fn, snapshot=snapshot)

    async def close(self) -> None:
        """Let queued writes finish, then close every connection. Idempotent."""
        if self._closed:
            return
        self._closed = True
        await self._stop_writer()
        await asyncio.to_thread(self._readers.shutdown, True)
        with self._conns_lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            try:
                conn.close()
            except psycopg.Error:
                pass


def check_url(url: str) -> str:
    if not is_postgres_url(url):
        raise ConfigError(f"not a PostgreSQL URL: {redact_url(url)}", check="storage.url")
    return url
