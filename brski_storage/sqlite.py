"""SQLite engine: one writer thread, a few reader threads, WAL, full fsync.

Why one writer thread: SQLite allows one writer at a time anyway; funnelling
every write through a single connection on a single thread (fed by a queue,
each job answered through an asyncio future) turns lock contention and
``SQLITE_BUSY`` retries into plain FIFO ordering, keeps the event loop free
while SQLite fsyncs, and makes read-modify-write sequences such as "read the
chain head, hash, insert" serial by construction.

Why several readers: WAL lets readers run concurrently with the writer, each
on a consistent snapshot, so reads go to a small dedicated thread pool whose
threads each own one read-only connection.

Durability: WAL with ``synchronous=FULL``. With ``NORMAL``, WAL is still
corruption-free, but a commit only reaches stable storage at the next
checkpoint, so a power cut can forget the last transactions. The registrar is
a CA and the MASA keeps the audit log RFC 8995 relies on: forgetting an
issued certificate serial or an audit entry after having answered the peer
is not acceptable, so every commit is fsynced before its future resolves.

Group commit: an onboarding makes about fifteen small writes, and with one
fsync each the writer thread spends its time waiting for the disk, not
working (the benchmark measured about 35 onboardings/s, writer-bound). The
writer therefore takes every job queued while the previous commit was being
fsynced and runs them as one transaction, each job in its own SAVEPOINT (so
one job's failure rolls back only that job; a group of one job needs none),
with one COMMIT and one fsync.
Every caller is still answered only after that durable COMMIT, except a
group made only of writes that asked for no flush of their own
(``write(fn, flush=False)``, see :mod:`brski_storage.writer`): that one
commits with ``synchronous=NORMAL``, and the next FULL commit's fsync of the
WAL makes it durable with its own frames.

The event log every store shares (the hash chain, events riding with a write)
is :mod:`brski_storage.sqlite_events`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import keyword
import sqlite3
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar, cast

from brski.errors import BrskiError, ConfigError, Conflict, NotFound, StorageError
from brski_storage.base import WriteObserver
from brski_storage.chain import event_time_text
from brski_storage.migrate import apply_sqlite_migrations
from brski_storage.writer import GroupCommitWriter, Job, JobOutcome

__all__ = [
    "Database",
    "RowReader",
    "SqliteDatabase",
    "WriterConnection",
    "check_limit",
    "from_ts",
    "from_ts_opt",
    "require_device",
    "sqlite_now",
    "sqlite_path_from_url",
    "to_ts",
    "to_ts_opt",
    "translate_error",
]

T = TypeVar("T")
R = TypeVar("R")

BUSY_TIMEOUT_MS = 5000


# --- value conversions ----------------------------------------------------------


def to_ts(value: datetime) -> str:
    """Aware datetime -> fixed-width ISO 8601 UTC text (text order = time order)."""
    return event_time_text(value)  # the one spelling the event chain hashes


def to_ts_opt(value: datetime | None) -> str | None:
    return None if value is None else to_ts(value)


def from_ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


def from_ts_opt(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def sqlite_now(conn: sqlite3.Connection) -> str:
    """The current time as the stores spell it, from SQLite's clock (this
    package never reads Python's), for writes whose caller gave no time."""
    if getattr(conn, "dialect", "sqlite") == "postgresql":  # the same text from PostgreSQL's clock
        sql = """SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US') || '+00:00'"""
        return str(conn.execute(sql).fetchone()[0])
    return str(conn.execute("SELECT strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now')").fetchone()[0])


def sqlite_path_from_url(url: str) -> Path:
    """``sqlite:///rel.db``, ``sqlite:////abs.db`` or a bare path -> Path.

    Follows the common URL convention: whatever follows ``sqlite:///`` is
    the path, so an absolute path shows four slashes.
    """
    if url.startswith("sqlite:///"):
        raw = url[len("sqlite:///") :]
    elif "://" in url or url.startswith("sqlite:"):
        raise ConfigError(
            f"unsupported SQLite URL {url!r}; use sqlite:///path.db", check="storage.url"
        )
    else:
        raw = url
    if raw in ("", ":memory:") or raw.startswith("file:"):
        raise ConfigError(
            "the store needs a database file (readers and the writer share it)",
            check="storage.url",
        )
    return Path(raw)


def translate_error(exc: BaseException) -> BrskiError:
    """Turn whatever a write raised into the error the caller should see."""
    if isinstance(exc, BrskiError):
        return exc
    if isinstance(exc, sqlite3.IntegrityError):
        message = str(exc)
        if message.startswith("UNIQUE constraint failed"):
            err: BrskiError = Conflict(
                "a record with this key already exists", check="storage.duplicate-key"
            )
        elif message.startswith("FOREIGN KEY constraint failed"):
            err = Conflict(
                "the record refers to one that does not exist", check="storage.foreign-key"
            )
        else:
            err = StorageError(
                f"write refused by a constraint: {message}", check="storage.constraint"
            )
    else:
        err = StorageError(
            f"durable write failed: {type(exc).__name__}: {exc}", check="storage.write-failed"
        )
    err.__cause__ = exc
    return err


# --- the engine -----------------------------------------------------------------


class WriterConnection(sqlite3.Connection):
    """The writer thread's connection: it also remembers the event chain's head.

    ``chain_head`` is the hash of the last event this transaction chained,
    or None when the head must be read from the table
    (:meth:`brski_storage.sqlite_events.PreparedEvent.chain`). Inside a write
    transaction nobody else can append (BEGIN IMMEDIATE holds SQLite's one
    write lock until COMMIT or ROLLBACK), so after its first event a
    transaction knows the head without reading it back: one SELECT fewer per
    event. :meth:`SqliteDatabase._run_group` clears it at every BEGIN (another
    process may have written between two transactions) and puts back the
    value a job started with when that job is rolled back to its savepoint.
    """

    chain_head: bytes | None = None


class SqliteDatabase(GroupCommitWriter[sqlite3.Connection]):
    """One database file: a writer thread owning the only write connection
    (brski_storage.writer), and a reader pool. Create it with :meth:`open`."""

    def __init__(self, path: Path, *, role: str, readers: int = 4) -> None:
        super().__init__(thread_name=f"brski-sqlite-writer-{role}")
        self.path = path
        self.role = role
        self._migrated_at: str | None = None
        self._readers = concurrent.futures.ThreadPoolExecutor(
            max_workers=readers, thread_name_prefix=f"brski-sqlite-reader-{role}"
        )
        self._local = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._reader_lock = threading.Lock()
        self._flushing = True  # the writer connection's synchronous is FULL (else NORMAL)

    @property
    def migrated_at(self) -> str | None:
        return self._migrated_at

    @property
    def applied_migration_names(self) -> list[str]:
        """File names of the migrations this open applied."""
        from brski_storage.migrate import load_migrations

        done = set(self.applied_migrations)
        return [m.name for m in load_migrations("sqlite", self.role) if m.version in done]

    @classmethod
    async def open(
        cls, path: Path, *, role: str, migrated_at: datetime | None = None, readers: int = 4
    ) -> SqliteDatabase:
        """Open (creating if needed), configure and migrate the database."""
        db = cls(path, role=role, readers=readers)
        db._migrated_at = to_ts_opt(migrated_at)
        try:
            db.applied_migrations = await db._start_writer()
        except BaseException:
            db._readers.shutdown(wait=False)
            raise
        return db

    # writer side

    def _open_writer(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, factory=WriterConnection)
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise ConfigError(
                    f"{self.path}: SQLite refused WAL mode (got {mode}); "
                    "is it on a network filesystem?",
                    check="storage.wal",
                )
            conn.execute("PRAGMA synchronous=FULL")
            # The savepoint journal (the pages a job changed, as they were
            # before it, kept until ROLLBACK TO or the end of the transaction)
            # in memory: on disk SQLite spilled it to a temporary file past
            # 64 KiB, two write calls per page, about 60 per onboarding under
            # group commit. Nothing durable is in it: a crash loses the open
            # transaction either way, and the WAL alone holds what committed.
            conn.execute("PRAGMA temp_store=MEMORY")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS:d}")
            self.applied_migrations = apply_sqlite_migrations(
                conn, role=self.role, applied_at=self._migrated_at
            )
        except BaseException:
            conn.close()
            raise
        return conn

    def _run_group(self, conn: sqlite3.Connection, batch: list[Job]) -> None:
        """Run ``batch`` in one transaction, each job inside its own savepoint
        when the group holds more than one.

        A job that raises is rolled back to its savepoint and gets its own
        error; the others are unaffected, exactly as if each had had its own
        transaction. A group of one job needs no savepoint: its failure rolls
        the whole transaction back, which is exactly that job's work (two
        statements fewer per transaction, measured in docs/performance.md).
        Nobody is answered before the one COMMIT (and its fsync) returns; if
        that COMMIT fails, every job that had succeeded gets the error, since
        none of them is durable.
        """
        outcomes: list[JobOutcome] = []
        committed: list[int] = []  # indexes of outcomes waiting for the COMMIT
        flush = any(job[3] for job in batch)
        head = conn if isinstance(conn, WriterConnection) else None
        try:
            if flush != self._flushing:
                # Outside a transaction only (SQLite ignores it inside one).
                # NORMAL in WAL mode: the COMMIT is atomic and visible, and
                # reaches stable storage with the next FULL commit's fsync of
                # the WAL (which covers every earlier frame) or checkpoint.
                conn.execute("PRAGMA synchronous=FULL" if flush else "PRAGMA synchronous=NORMAL")
                self._flushing = flush
            conn.execute("BEGIN IMMEDIATE")
        except BaseException as exc:
            err = translate_error(exc)
            self._answer([(job, None, err) for job in batch])
            return
        if head is not None:
            head.chain_head = None  # read afresh: another connection may have appended since
        if len(batch) == 1:
            job = batch[0]
            try:
                outcomes.append((job, job[0](conn), None))
                committed.append(0)
            except BaseException as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                self._answer([(job, None, translate_error(exc))])
                return
        else:
            self._run_jobs(conn, batch, outcomes, committed)
        try:
            conn.execute("COMMIT")
            self.commits += 1
            self.flushes += flush
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            err = translate_error(exc)
            for i in committed:
                outcomes[i] = (outcomes[i][0], None, err)
        self._answer(outcomes)

    @staticmethod
    def _run_jobs(conn: sqlite3.Connection, batch: list[Job], outcomes: list[JobOutcome], committed: list[int]) -> None:
        """Each job of a group in its own savepoint (see :meth:`_run_group`)."""
        head = conn if isinstance(conn, WriterConnection) else None
        for job in batch:
            fn = job[0]
            saved = None if head is None else head.chain_head
            conn.execute("SAVEPOINT job")
            try:
                result = fn(conn)
                conn.execute("RELEASE job")
            except BaseException as exc:
                if head is not None:
                    head.chain_head = saved  # the job's events are rolled back with it
                if conn.in_transaction:
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                else:
                    # SQLite rolled the whole transaction back (e.g. disk
                    # full): the earlier jobs of the group are gone too.
                    lost = StorageError(
                        f"transaction aborted by a failing write: {exc}",
                        check="storage.write-failed",
                    )
                    for i in committed:
                        outcomes[i] = (outcomes[i][0], None, lost)
                    committed.clear()
                    conn.execute("BEGIN IMMEDIATE")
                    if head is not None:
                        head.chain_head = None
                outcomes.append((job, None, translate_error(exc)))
                continue
            committed.append(len(outcomes))
            outcomes.append((job, result, None))

    # reader side

    def _reader_conn(self) -> sqlite3.Connection:
        conn = cast("sqlite3.Connection | None", getattr(self._local, "conn", None))
        if conn is None:
            uri = self.path.resolve().as_uri() + "?mode=ro"
            conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS:d}")
            conn.execute("PRAGMA query_only=ON")
            self._local.conn = conn
            with self._reader_lock:
                self._reader_conns.append(conn)
        return conn

    def _read_sync(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._reader_conn()
        # One read transaction per call: a multi-statement read sees one snapshot.
        conn.execute("BEGIN")
        try:
            return fn(conn)
        finally:
            conn.execute("COMMIT")

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on a read-only connection in the reader pool."""
        if self._closed:
            raise StorageError("the store is closed", check="storage.closed")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._readers, self._read_sync, fn)
        except sqlite3.Error as exc:
            raise StorageError(f"read failed: {exc}", check="storage.read-failed") from exc

    def read_now(self, fn: Callable[[sqlite3.Connection], T], *, snapshot: bool = False) -> T:
        """Run ``fn`` right here, on the caller's thread, on its own read-only
        connection, in one read transaction (one snapshot, whatever
        ``snapshot`` says: the engines' common signature, see
        :class:`Database`).

        Only for point lookups by primary key or a unique index, or one
        device's few rows through an index (tens of microseconds): under load, handing such a read to the reader pool
        cost more than the read (thread hand-off, future, loop wake-up, GIL
        ping-pong: about 10% of the registrar's CPU in the benchmark profile).
        Anything that scans stays on :meth:`read`.
        """
        if self._closed:
            raise StorageError("the store is closed", check="storage.closed")
        try:
            return self._read_sync(fn)
        except sqlite3.Error as exc:
            raise StorageError(f"read failed: {exc}", check="storage.read-failed") from exc

    async def close(self) -> None:
        """Let queued writes finish, then close every connection. Idempotent."""
        if self._closed:
            return
        self._closed = True
        await self._stop_writer()
        await asyncio.to_thread(self._readers.shutdown, True)
        with self._reader_lock:
            for conn in self._reader_conns:
                conn.close()
            self._reader_conns.clear()


class Database(Protocol):
    """What the stores need from an engine: :class:`SqliteDatabase`, or
    :class:`brski_storage.postgres.PgDatabase`, which runs the same store
    functions on PostgreSQL (they are written in SQL both engines accept)."""

    path: Any
    role: str
    applied_migrations: list[int]
    observer: WriteObserver | None
    commits: int
    flushes: int

    @property
    def migrated_at(self) -> str | None: ...

    @property
    def applied_migration_names(self) -> list[str]: ...

    async def write(self, fn: Callable[[sqlite3.Connection], T], *, flush: bool = True) -> T: ...

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...

    def read_now(self, fn: Callable[[sqlite3.Connection], T], *, snapshot: bool = False) -> T:
        """A point read on the caller's thread; ``snapshot``: ``fn``'s
        statements see one snapshot (always so on SQLite; on PostgreSQL a
        read-only REPEATABLE READ transaction instead of autocommit)."""

    async def close(self) -> None: ...


# --- query helpers the stores share ----------------------------------------------------


def check_limit(limit: int) -> None:
    if not 1 <= limit <= 100_000:
        raise ValueError(f"limit must be between 1 and 100000, got {limit}")


def require_device(conn: sqlite3.Connection, serial: str) -> None:
    """NotFound unless ``devices`` has ``serial``: checked before writes that
    reference a device so the caller gets a named 404, not a foreign-key error."""
    if conn.execute("SELECT 1 FROM devices WHERE serial = ?", (serial,)).fetchone() is None:
        raise NotFound(f"unknown device {serial!r}", check="storage.unknown-device")


class RowReader(Generic[R]):
    """A record type as the stores read it from a table: the SELECT list and
    the row -> record mapping declared together, so the two cannot drift apart.

    ``columns`` is the SELECT list (``"id, serial, at"``); each column fills
    the record field of the same name, or the one ``rename`` gives it, through
    the converter passed under the field's name (``at=from_ts``), else as is.

    The mapping is compiled once into the keyword call a hand-written mapper
    would make (``make(id=row[0], serial=row[1], at=at(row[2]))``, as
    namedtuple and dataclasses build their methods): a generic loop over the
    fields measured about 2 us more per row, which the event-chain walk pays
    on every event.
    """

    __slots__ = ("_select", "columns", "record", "table")

    def __init__(
        self,
        make: Callable[..., R],
        table: str,
        columns: str,
        /,
        *,
        rename: Mapping[str, str] | None = None,
        **convert: Callable[[Any], Any],
    ) -> None:
        names = [(rename or {}).get(c.strip(), c.strip()) for c in columns.split(",")]
        if not all(n.isidentifier() and not keyword.iskeyword(n) for n in names) or len(set(names)) != len(names):
            raise ValueError(f"columns must name distinct fields: {columns!r}")
        unknown = set(convert) - set(names)
        if unknown:
            raise ValueError(f"converters for fields not read: {sorted(unknown)}")
        self.table = table
        self.columns = columns
        self._select = f"SELECT {columns} FROM {table}"
        # Names are identifiers (checked above) and converters are passed by
        # reference, never as text: the compiled source is only field names.
        args = ", ".join(
            f"{name}=row[{i}]" if name not in convert else f"{name}=c{i}(row[{i}])"
            for i, name in enumerate(names)
        )
        scope = {f"c{i}": convert[name] for i, name in enumerate(names) if name in convert}
        #: One row (in ``columns`` order) -> its record.
        self.record: Callable[[Sequence[Any]], R] = eval(f"lambda row: make({args})", {"make": make, **scope})

    def one(self, conn: sqlite3.Connection, where: str, params: Sequence[Any] = ()) -> R | None:
        """The first row of ``SELECT columns FROM table <where>``, or None."""
        row = conn.execute(f"{self._select} {where}", params).fetchone()
        return None if row is None else self.record(row)

    def by_id(self, conn: sqlite3.Connection, rowid: int | None) -> R:
        """The row whose ``id`` is ``rowid``: one this transaction has just written."""
        record = self.one(conn, "WHERE id = ?", (rowid,))
        assert record is not None
        return record

    def all(self, conn: sqlite3.Connection, where: str = "", params: Sequence[Any] = ()) -> list[R]:
        """Every row of ``SELECT columns FROM table <where>``."""
        return [self.record(r) for r in conn.execute(f"{self._select} {where}", params)]
