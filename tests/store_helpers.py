"""Reading and writing a store behind the project's back, on either engine
(helpers, not tests): what an attacker or administrator with database access does."""

from __future__ import annotations

from collections.abc import Sequence


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


def raw_insert(url: str, sql: str, rows: Sequence[tuple[object, ...]]) -> None:
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


# A raw row's columns are typed only by the query that read them; these narrow
# one column to what its SQL type is on both engines (refusing anything else).


def as_int(value: object) -> int:
    """An INTEGER/BIGINT column or a count(*): int on sqlite3 and psycopg."""
    assert isinstance(value, int), value
    return value


def as_str(value: object) -> str:
    """A TEXT column: str on sqlite3 and psycopg."""
    assert isinstance(value, str), value
    return value


def as_bytes(value: object) -> bytes:
    """A BLOB/BYTEA column: bytes on sqlite3, memoryview turned bytes by raw_rows on psycopg."""
    assert isinstance(value, bytes), value
    return value
