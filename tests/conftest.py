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
pytest_plugins = [
    "tests.devpki_helpers",
    "tests.pki_helpers",
    "tests.storage_helpers",
    "tests.voucher_cli_helpers",
]


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
