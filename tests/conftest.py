"""Fixtures shared by every test directory: the store engines.

Tests that take ``engine`` (directly, or through ``new_store_url`` and the
store fixtures built on it) run once per engine: SQLite, and PostgreSQL on a
throw-away cluster started once per session (brski_cli/pgcluster.py) as an
unprivileged user in a temporary directory, stopped at the end. Each test
gets its own PostgreSQL schema, as it gets its own SQLite file.
``@pytest.mark.sqlite_only`` keeps a test (one that opens the SQLite file
itself, say) on SQLite.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from brski_cli.pgcluster import PgCluster, PgUnavailable, pg_cluster

ENGINES = ("sqlite", "postgresql")

# Fixtures that unit tests and their out-of-process counterparts in e2e/ share.
pytest_plugins = ["tests.devpki_helpers", "tests.storage_helpers", "tests.voucher_cli_helpers"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "sqlite_only: run on the SQLite engine only")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "engine" in metafunc.fixturenames:
        only_sqlite = metafunc.definition.get_closest_marker("sqlite_only") is not None
        engines = ("sqlite",) if only_sqlite else ENGINES
        # The servers (e2e ``lab`` or a module's own ``*_lab``; protocol ``net``)
        # are module-scoped: the engine is too, so each engine gets one set of
        # servers with its tests grouped under it.
        servers = any(n in ("lab", "net") or n.endswith("_lab") for n in metafunc.fixturenames)
        metafunc.parametrize("engine", engines, scope="module" if servers else "function")


@pytest.fixture(scope="session")
def postgres() -> Iterator[PgCluster]:
    try:
        with pg_cluster() as cluster:
            yield cluster
    except PgUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture
def new_store_url(engine: str, tmp_path: Path, request: pytest.FixtureRequest) -> Callable[[str], str]:
    """``new_store_url("registrar")``: a fresh, empty store URL on this test's engine."""
    if engine == "sqlite":
        return lambda name: f"sqlite:///{tmp_path / name}.db"
    cluster: PgCluster = request.getfixturevalue("postgres")
    return lambda name: cluster.new_schema(name.replace("-", "_").replace(".", "_")[:20])


def raw_execute(url: str, statements: list[str]) -> None:
    """Run SQL on a store behind its back, in one transaction, as an attacker
    with database access (or an administrator) would: sqlite3 or psycopg."""
    if url.startswith("sqlite:///"):
        import sqlite3

        conn = sqlite3.connect(url[len("sqlite:///"):], isolation_level=None)
        try:
            conn.execute("BEGIN")
            for sql in statements:
                conn.execute(sql)
            conn.execute("COMMIT")
        finally:
            conn.close()
        return
    import psycopg

    with psycopg.connect(url) as pg, pg.transaction():
        for sql in statements:
            pg.execute(sql.encode())


def raw_insert(url: str, sql: str, rows: list[tuple[object, ...]]) -> None:
    """Insert many rows behind the store's back in one transaction (``?`` placeholders)."""
    if url.startswith("sqlite:///"):
        import sqlite3

        conn = sqlite3.connect(url[len("sqlite:///"):])
        try:
            with conn:
                conn.executemany(sql, rows)
        finally:
            conn.close()
        return
    import psycopg

    with psycopg.connect(url) as pg, pg.transaction(), pg.cursor() as cur:
        cur.executemany(sql.replace("?", "%s").encode(), rows)


def raw_rows(url: str, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    """Read a store directly, not through the project's storage code (``?`` placeholders)."""
    if url.startswith("sqlite:///"):
        import sqlite3

        conn = sqlite3.connect(f"file:{url[len('sqlite:///'):]}?mode=ro", uri=True)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()
    import psycopg

    with psycopg.connect(url) as pg:
        text = sql.replace("%", "%%").replace("?", "%s")
        return [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r)
                for r in pg.execute(text.encode(), params or None).fetchall()]


def sql_blob(url: str, data: bytes) -> str:
    """``data`` as an SQL literal in ``url``'s dialect: a SQLite BLOB or a PostgreSQL BYTEA."""
    return f"x'{data.hex()}'" if url.startswith("sqlite:") else f"'\\x{data.hex()}'::bytea"
