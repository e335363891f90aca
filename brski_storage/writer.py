"""The writer thread both engines share: a job queue, group commit, answers.

Each engine (:class:`brski_storage.sqlite.SqliteDatabase`,
:class:`brski_storage.postgres.PgDatabase`) owns one write connection on one
thread. Callers queue a job (a function of the connection) and await its
future; the thread takes every job queued while the previous commit was being
flushed (up to :data:`MAX_GROUP`) and hands the batch to the engine's
``_run_group``, which runs it as one transaction with a savepoint per job
(SQLite: only when the group holds more than one) and one durable COMMIT.
Answers go back to each caller's event loop in one wake-up per loop.

A job may say it needs no flush of its own (``write(fn, flush=False)``): its
commit must be visible to later writes and reads, but losing it in a crash
before the next flushed commit harms nothing (the certificate reservation: a
serial and key taken before signing; if the reservation is lost, the signed
certificate never left the registrar). A group made only of such jobs
commits without waiting for stable storage; any other group flushes, and a
flush makes every earlier commit durable too (SQLite's WAL and PostgreSQL's
WAL are both one append-only log: the flush of a later commit covers every
record before it). Every job that needs its flush is still answered only
after it.
"""

from __future__ import annotations

import abc
import asyncio
import concurrent.futures
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from brski.errors import BrskiError, StorageError
from brski_storage.base import WriteObserver

__all__ = ["MAX_GROUP", "GroupCommitWriter", "Job", "JobOutcome"]

T = TypeVar("T")
C = TypeVar("C")

#: Most writes one group commit carries: bounds how long the first of them
#: waits for the last (each write is a few statements on indexed tables).
MAX_GROUP = 64

#: (fn, the caller's loop, its future, whether the job needs its commit flushed)
Job = tuple[Callable[[Any], Any], asyncio.AbstractEventLoop, "asyncio.Future[Any]", bool]
JobOutcome = tuple[Job, Any, BaseException | None]


def _settle(fut: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    # Runs on the event loop. The caller may have been cancelled meanwhile;
    # the write happened regardless, there is just nobody left to tell.
    if fut.cancelled():
        return
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(result)


def _settle_all(items: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for fut, result, error in items:
        _settle(fut, result, error)


class GroupCommitWriter(abc.ABC, Generic[C]):
    """The writer half of an engine; ``C`` is its connection type."""

    path: Any

    def __init__(self, *, thread_name: str) -> None:
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._writer_main, name=thread_name, daemon=True)
        self._ready: concurrent.futures.Future[list[int]] = concurrent.futures.Future()
        self._closed = False
        self.applied_migrations: list[int] = []
        self.commits = 0  # COMMITs the writer has made
        self.flushes = 0  # of which waited for stable storage (all but groups of flush=False jobs)
        self.observer: WriteObserver | None = None  # metrics: latency, writes in flight

    # what an engine provides

    @abc.abstractmethod
    def _open_writer(self) -> C:
        """Connect, configure and migrate; sets ``applied_migrations``."""

    @abc.abstractmethod
    def _run_group(self, conn: C, batch: list[Job]) -> None:
        """Run ``batch`` in one transaction and :meth:`_answer` every job;
        flushed at COMMIT unless every job said ``flush=False``."""

    def _usable(self, conn: C | None, batch: list[Job]) -> C | None:
        """The connection to run ``batch`` on (reconnect here if the engine
        can); None after answering the batch with the reason it cannot run."""
        return conn

    def _close_writer(self, conn: C) -> None:
        close = getattr(conn, "close", None)
        if close is not None:
            close()

    # the thread

    def _writer_main(self) -> None:
        try:
            conn: C | None = self._open_writer()
        except BrskiError as exc:
            self._ready.set_exception(exc)
            return
        except BaseException as exc:
            err = StorageError(f"cannot open {self.path}: {exc}", check="storage.open")
            err.__cause__ = exc
            self._ready.set_exception(err)
            return
        self._ready.set_result(self.applied_migrations)
        try:
            stop = False
            while not stop:
                job = self._jobs.get()
                if job is None:
                    break
                batch = [job]
                # Group commit: whatever queued up while the last commit was
                # flushed shares the next transaction and its single flush.
                while len(batch) < MAX_GROUP:
                    try:
                        more = self._jobs.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        stop = True
                        break
                    batch.append(more)
                conn = self._usable(conn, batch)
                if conn is not None:
                    self._run_group(conn, batch)
        finally:
            if conn is not None:
                self._close_writer(conn)

    @staticmethod
    def _answer(outcomes: list[JobOutcome]) -> None:
        """One wake-up per event loop for the whole group, not one per job."""
        by_loop: dict[
            asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any, BaseException | None]]
        ] = {}
        for (_, loop, fut, _), result, error in outcomes:
            by_loop.setdefault(loop, []).append((fut, result, error))
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle_all, items)
            except RuntimeError:
                pass  # the caller's loop is gone

    # the caller's side

    async def _start_writer(self) -> list[int]:
        """Start the thread; the migrations it applied once it is ready."""
        self._writer.start()
        try:
            return await asyncio.wrap_future(self._ready)
        except BaseException:
            await asyncio.to_thread(self._writer.join)
            raise

    async def _stop_writer(self) -> None:
        """Let queued writes finish, then end the thread."""
        self._jobs.put(None)
        await asyncio.to_thread(self._writer.join)

    async def write(self, fn: Callable[[Any], T], *, flush: bool = True) -> T:
        """Run ``fn`` in one transaction on the writer thread; await its commit.

        ``fn`` must not manage the transaction itself. Anything it raises
        rolls its part back and reaches the caller as a BrskiError
        (StorageError unless ``fn`` raised a BrskiError itself or a
        uniqueness rule fired).

        ``flush=False``: the caller needs the commit visible, not durable
        (see the module docstring); the answer may come before the flush.
        """
        if self._closed:
            raise StorageError("the store is closed", check="storage.closed")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        obs = self.observer
        if obs is None:
            self._jobs.put((fn, loop, fut, flush))
            return await fut
        obs.write_started()
        started = time.perf_counter()
        try:
            self._jobs.put((fn, loop, fut, flush))
            return await fut
        finally:
            obs.write_finished(time.perf_counter() - started)
