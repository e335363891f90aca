"""PostgreSQL schema migrations: ``migrations/postgresql/<role>/NNNN_name.sql``.

The same numbered-file scheme as SQLite (:mod:`brski_storage.migrate`), one
file per version and dialect with the same number on both sides, so a
database of either engine reports the same schema version for the same
software. PostgreSQL DDL is transactional: each pending file runs in one
transaction with the row that records it.

Several workers start at once against one database, so the whole run holds
a transaction-level advisory lock keyed on the schema name: the first
process migrates, the others wait and then find nothing left to do.

The role is recorded in ``schema_migrations`` so a MASA schema can never be
opened as a registrar one (the two share table names), which is what
``PRAGMA application_id`` does on SQLite.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from brski.errors import ConfigError
from brski_storage.migrate import APPLICATION_IDS, load_migrations

if TYPE_CHECKING:
    import psycopg

__all__ = ["apply_postgres_migrations"]

# The migration row's stamp when the caller gives none, in the stores' ISO
# 8601 shape, computed by the server so that Python reads no clock.
_PG_NOW = """to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')"""

# First key of the two-key advisory lock: "BRSK" (the second is the schema).
_LOCK_CLASS = 0x4252534B


def apply_postgres_migrations(
    conn: psycopg.Connection[tuple[Any, ...]], *, role: str, applied_at: str | None = None
) -> list[int]:
    """Apply pending migrations in the connection's current schema.

    ``conn`` must be in autocommit mode: this function runs its own
    transactions. Returns the versions applied now.
    """
    if role not in APPLICATION_IDS:
        raise ConfigError(f"unknown storage role {role!r}", check="storage.role")
    migrations = load_migrations("postgresql", role)
    known = max((m.version for m in migrations), default=0)
    applied_now: list[int] = []
    with conn.transaction():
        conn.execute(
            "SELECT pg_advisory_xact_lock(%s, hashtext(current_schema()))", (_LOCK_CLASS,)
        )
        schema = conn.execute("SELECT current_schema()").fetchone()
        if schema is None or schema[0] is None:
            raise ConfigError(
                "no schema to migrate: the search_path names no existing schema",
                check="storage.wrong-database",
            )
        has_table = conn.execute(
            "SELECT count(*) FROM information_schema.tables"
            " WHERE table_schema = current_schema() AND table_name = 'schema_migrations'"
        ).fetchone()
        if has_table is not None and has_table[0]:
            roles = {r[0] for r in conn.execute("SELECT DISTINCT role FROM schema_migrations")}
            if roles and roles != {role}:
                raise ConfigError(
                    f"database is not a brski {role} database (it holds {', '.join(sorted(roles))})",
                    check="storage.wrong-database",
                )
        else:
            others = conn.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema()"
            ).fetchone()
            if others is not None and others[0]:
                raise ConfigError(
                    f"schema {schema[0]!r} already holds tables that brski did not create for {role}",
                    check="storage.wrong-database",
                )
            conn.execute(
                "CREATE TABLE schema_migrations ("
                " version INTEGER PRIMARY KEY,"
                " role TEXT NOT NULL,"
                " applied_at TEXT NOT NULL)"
            )
        row = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()
        newest = None if row is None else row[0]
        if newest is not None and newest > known:
            raise ConfigError(
                f"database schema version {newest} is newer than this software ({known})",
                check="storage.schema-too-new",
            )
        done = {int(r[0]) for r in conn.execute("SELECT version FROM schema_migrations")}
        for migration in migrations:
            if migration.version in done:
                continue
            # A nested transaction (savepoint) per file: it applies entirely or not at all.
            with conn.transaction():
                conn.execute(migration.sql.encode("utf-8"))
                if applied_at is None:
                    conn.execute(
                        f"INSERT INTO schema_migrations (version, role, applied_at)"
                        f" VALUES (%s, %s, {_PG_NOW})",
                        (migration.version, role),
                    )
                else:
                    conn.execute(
                        "INSERT INTO schema_migrations (version, role, applied_at) VALUES (%s, %s, %s)",
                        (migration.version, role, applied_at),
                    )
            applied_now.append(migration.version)
    return applied_now
