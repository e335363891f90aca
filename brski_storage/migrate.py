"""Schema migrations: numbered SQL files applied once, in order, at open.

Files live in ``brski_storage/migrations/<dialect>/<role>/NNNN_name.sql``.
Each pending file runs in its own transaction together with the row that
records it in ``schema_migrations``, so a crash mid-migration leaves the
database at the previous version rather than half-migrated (SQLite DDL is
transactional). Version numbers are checked again inside each transaction so
two processes opening the same file at once cannot both apply a migration.

Plain SQL files instead of Python migrations keep the schema reviewable and
let a DBA apply the PostgreSQL set by hand when the time comes.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from importlib import resources

from brski.errors import ConfigError

__all__ = [
    "APPLICATION_IDS",
    "Migration",
    "apply_sqlite_migrations",
    "load_migrations",
    "split_sqlite_script",
]

_NAME = re.compile(r"^(\d{4})_[A-Za-z0-9_]+\.sql$")

# Stamped into the SQLite header (PRAGMA application_id) so a MASA database
# can never be opened as a registrar one: the two schemas share table names
# (devices, vouchers, events) and would otherwise "migrate" into a mess.
APPLICATION_IDS: dict[str, int] = {
    "registrar": 0x42525352,  # "BRSR"
    "masa": 0x4252534D,  # "BRSM"
}

# When the caller gives no timestamp, the migration row is stamped by SQLite
# in the same ISO 8601 shape the stores use (SQLite's %f is SS.SSS, so pad
# to microseconds); the Python side still reads no clock.
_SQLITE_NOW = "strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now')"


@dataclass(frozen=True, kw_only=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations(dialect: str, role: str) -> list[Migration]:
    """The shipped migrations for one dialect and role, by version."""
    folder = resources.files("brski_storage").joinpath("migrations", dialect, role)
    if not folder.is_dir():
        raise ConfigError(
            f"no {dialect} migrations for role {role!r}", check="storage.migrations-missing"
        )
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _NAME.match(entry.name)
        if match is None:
            continue
        found.append(
            Migration(
                version=int(match.group(1)),
                name=entry.name,
                sql=entry.read_text(encoding="utf-8"),
            )
        )
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise ConfigError(
            f"duplicate migration versions for {dialect}/{role}",
            check="storage.migrations-duplicate",
        )
    return found


def split_sqlite_script(sql: str) -> list[str]:
    """Cut a script into single statements at line ends.

    ``executescript`` would COMMIT any open transaction first, which is
    exactly what a migration must not do, so statements are executed one by
    one. ``sqlite3.complete_statement`` understands trigger bodies and
    string literals; the one restriction is one statement per line end.
    """
    statements: list[str] = []
    buffer = ""
    for line in sql.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    leftover = "\n".join(
        ln for ln in buffer.splitlines() if ln.strip() and not ln.strip().startswith("--")
    )
    if leftover:
        raise ConfigError(
            "migration ends in an incomplete statement", check="storage.migration-syntax"
        )
    return statements


def _check_application_id(conn: sqlite3.Connection, role: str) -> int:
    expected = APPLICATION_IDS[role]
    current = int(conn.execute("PRAGMA application_id").fetchone()[0])
    if current not in (0, expected):
        raise ConfigError(
            f"database is not a brski {role} database (application_id {current:#x})",
            check="storage.wrong-database",
        )
    if current == 0:
        tables = conn.execute(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' "
            "AND name NOT LIKE 'sqlite_%' AND name <> 'schema_migrations'"
        ).fetchone()[0]
        if tables:
            raise ConfigError(
                f"database already holds tables that brski did not create for {role}",
                check="storage.wrong-database",
            )
    return expected


def apply_sqlite_migrations(
    conn: sqlite3.Connection, *, role: str, applied_at: str | None = None
) -> list[int]:
    """Apply pending migrations; return the versions applied now.

    ``conn`` must be in autocommit mode (``isolation_level=None``) because
    this function manages its own transactions.
    """
    if role not in APPLICATION_IDS:
        raise ConfigError(f"unknown storage role {role!r}", check="storage.role")
    migrations = load_migrations("sqlite", role)
    known = max((m.version for m in migrations), default=0)
    applied_now: list[int] = []
    for migration in migrations:
        conn.execute("BEGIN IMMEDIATE")
        try:
            app_id = _check_application_id(conn, role)
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version INTEGER PRIMARY KEY NOT NULL,"
                " applied_at TEXT NOT NULL) STRICT"
            )
            newest = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()[0]
            if newest is not None and newest > known:
                raise ConfigError(
                    f"database schema version {newest} is newer than this software ({known})",
                    check="storage.schema-too-new",
                )
            done = conn.execute(
                "SELECT 1 FROM schema_migrations WHERE version = ?", (migration.version,)
            ).fetchone()
            if done is None:
                for statement in split_sqlite_script(migration.sql):
                    conn.execute(statement)
                if applied_at is None:
                    conn.execute(
                        f"INSERT INTO schema_migrations(version, applied_at) "
                        f"VALUES (?, {_SQLITE_NOW})",
                        (migration.version,),
                    )
                else:
                    conn.execute(
                        "INSERT INTO schema_migrations(version, applied_at) VALUES (?, ?)",
                        (migration.version, applied_at),
                    )
                conn.execute(f"PRAGMA application_id = {app_id:d}")
                applied_now.append(migration.version)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    return applied_now
