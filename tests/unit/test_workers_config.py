"""``workers`` (config key and --workers): 1..64, and more than one needs a
PostgreSQL store (every worker writes it; SQLite has one writer)."""

from __future__ import annotations

import pytest

from brski.errors import ConfigError
from brski_web.workers import check_workers


@pytest.mark.parametrize("workers", [1, 2, 64])
def test_workers_on_postgresql(workers: int) -> None:
    check_workers(workers, "postgresql://brski@/brski?host=/run/postgresql")


def test_one_worker_on_sqlite() -> None:
    check_workers(1, "sqlite:///var/registrar.db")


@pytest.mark.parametrize(
    ("workers", "database"),
    [(2, "sqlite:///var/registrar.db"), (0, "postgresql:///x"), (65, "postgresql:///x"),
     (True, "postgresql:///x"), ("2", "postgresql:///x")],
)
def test_refused(workers: object, database: str) -> None:
    with pytest.raises(ConfigError) as info:
        check_workers(workers, database)
    assert info.value.check == "config.workers"
