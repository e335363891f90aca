"""``workers`` (config key and --workers): 1..64, and more than one needs a
PostgreSQL store (every worker writes it; SQLite has one writer) and, with a
metrics port, prometheus-client's multiprocess directory."""

from __future__ import annotations

import pytest

from brski.errors import ConfigError
from brski_web.workers import check_worker_metrics, check_workers, serve_command


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


def test_several_workers_with_metrics_need_the_multiprocess_directory() -> None:
    check_worker_metrics(2, 9444, {"PROMETHEUS_MULTIPROC_DIR": "/run/brski-metrics"})
    check_worker_metrics(2, None, {})
    check_worker_metrics(1, 9444, {})
    with pytest.raises(ConfigError) as info:
        check_worker_metrics(2, 9444, {"PROMETHEUS_MULTIPROC_DIR": ""})
    assert info.value.check == "config.metrics-multiprocess"


class _Cfg:
    workers = 2
    metrics_port = 9444
    host = "127.0.0.1"
    port = 8443
    ready_file = None
    log_level = "info"


def test_serve_refuses_before_any_worker_starts(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    served: list[object] = []

    async def serve(cfg: _Cfg, ports: object) -> int:
        served.append(ports)
        return 0

    assert serve_command("brski masa serve", "masa", _Cfg, serve) == 2
    assert served == []
    assert "PROMETHEUS_MULTIPROC_DIR" in capsys.readouterr().err
