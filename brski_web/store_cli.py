"""``brski registrar|masa migrate`` and ``... store copy --to postgresql://...``.

``migrate`` brings the configured store (or ``--database``) to this
software's schema version and says which migrations it applied; servers do
the same when they open the store, so running it first is optional, but it
lets an operator migrate before a rolling restart, with a DBA watching.

``store copy`` moves a SQLite store into an empty PostgreSQL one
(:mod:`brski_storage.copy`), then verifies the event chain on the target
and compares row counts with the source. Stop the server that writes the
SQLite file first: the copy takes one snapshot and writes made after it are
not copied. Exit 0 only if the target verifies and every count matches.

The role CLIs call :func:`add_store_commands` with their store opener, so
this module needs neither role.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable

from brski.errors import ConfigError
from brski_storage import backend_of
from brski_storage.base import EventLog
from brski_storage.postgres import redact_url

__all__ = ["add_store_commands"]

Opener = Callable[[str], Awaitable[EventLog]]


def add_store_commands(
    cmds: argparse._SubParsersAction[argparse.ArgumentParser],
    *,
    role: str,
    common: Callable[[argparse.ArgumentParser], None],
    database: Callable[[argparse.Namespace], str],
    opener: Opener,
    run: Callable[[Callable[[], Awaitable[int]]], int],
) -> None:
    mig = cmds.add_parser("migrate", help=f"bring the {role} store to this version's schema")
    common(mig)
    mig.set_defaults(func=lambda a: run(lambda: _migrate(database(a), opener)))

    store = cmds.add_parser("store", help=f"move the {role} store between engines")
    scmds = store.add_subparsers(dest="store_cmd", required=True, metavar="COMMAND")
    cp = scmds.add_parser(
        "copy", help="copy the SQLite store into an empty PostgreSQL one and verify it there"
    )
    common(cp)
    cp.add_argument("--to", dest="to", required=True, help="target URL, postgresql://...")
    cp.set_defaults(func=lambda a: run(lambda: _copy(database(a), a.to, opener)))


async def _migrate(url: str, opener: Opener) -> int:
    store = await opener(url)
    try:
        applied = getattr(getattr(store, "database", None), "applied_migrations", [])
        print(f"{redact_url(url)}: " + (
            f"applied migration(s) {', '.join(str(v) for v in applied)}" if applied else "up to date"))
    finally:
        await store.close()
    return 0


async def _copy(source: str, target: str, opener: Opener) -> int:
    from brski_storage.copy import copy_sqlite_to_postgres, table_counts
    from brski_storage.sqlite import sqlite_path_from_url

    if backend_of(source) != "sqlite" or backend_of(target) != "postgresql":
        raise ConfigError("store copy goes from a sqlite:/// store to a postgresql:// one",
                          check="storage.copy-direction")
    # Opening each end migrates it to this software's schema: same tables on both.
    src_store = await opener(source)
    try:
        src_report = await src_store.verify_event_chain()
    finally:
        await src_store.close()
    await (await opener(target)).close()
    report = await asyncio.to_thread(copy_sqlite_to_postgres, sqlite_path_from_url(source), target)
    for table, n in report.tables.items():
        print(f"copied {table}: {n}")
    dst_store = await opener(target)
    try:
        dst_report = await dst_store.verify_event_chain()
    finally:
        await dst_store.close()
    src_counts, dst_counts = await asyncio.gather(
        asyncio.to_thread(table_counts, source), asyncio.to_thread(table_counts, target))
    ok = True
    for table in sorted(set(src_counts) | set(dst_counts)):
        if src_counts.get(table) != dst_counts.get(table):
            print(f"MISMATCH {table}: source {src_counts.get(table)} target {dst_counts.get(table)}")
            ok = False
    same_chain = (dst_report.ok, dst_report.count, dst_report.head_hash) == (
        src_report.ok, src_report.count, src_report.head_hash)
    state = "intact" if dst_report.ok else f"TAMPERED: {dst_report.problem} at event {dst_report.first_bad_id}"
    print(f"target event chain {state}: {dst_report.count} events"
          + (f", head {dst_report.head_hash.hex()}" if dst_report.head_hash else ""))
    if not same_chain:
        print("MISMATCH event chain: the target does not verify as the source does")
    return 0 if ok and same_chain and dst_report.ok else 1
