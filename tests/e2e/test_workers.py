"""Two worker processes per role on PostgreSQL (``workers = 2``).

200 generated pledges onboard through a registrar and a MASA that each run
two workers on one port; midway, both services get a rolling restart
(SIGHUP: each worker is replaced, the new one listening before the old one
stops gracefully). Every onboarding must succeed (nothing in flight fails),
no certificate serial or key is issued twice, every device is enrolled, and
both event chains verify.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from brski_cli.lab import Lab, ensure_dev_pki, free_port
from brski_cli.pgcluster import PgCluster
from brski_web.workers import MIGRATE_REQ
from tests.e2e.labtools import rows
from tests.store_helpers import as_int

COUNT = 200


@pytest.fixture
def migrate_queued_connections() -> Iterator[None]:
    """net.ipv4.tcp_migrate_req = 1 for the test, as docs/operations.md asks
    of a deployment: a stopping worker's queued connections go to a sibling."""
    if not MIGRATE_REQ.exists():
        pytest.skip("kernel without net.ipv4.tcp_migrate_req (Linux < 5.14)")
    before = MIGRATE_REQ.read_text().strip()
    if before != "1":
        if os.geteuid() != 0:
            pytest.skip("needs net.ipv4.tcp_migrate_req = 1 (root can set it)")
        MIGRATE_REQ.write_text("1")
    try:
        yield
    finally:
        if before != "1":
            MIGRATE_REQ.write_text(before)


@pytest.fixture
def workers_lab(tmp_path: Path, postgres: PgCluster, migrate_queued_connections: None) -> Iterator[Lab]:
    masa_port, registrar_port = free_port(), free_port()
    certs = tmp_path / "certs"
    ensure_dev_pki(certs, pledges=1, masa_url=f"https://localhost:{masa_port}")
    lab = Lab(workdir=tmp_path / "run", certs=certs, masa_port=masa_port, registrar_port=registrar_port,
              workers=2, registrar_database=postgres.new_schema("registrar"),
              masa_database=postgres.new_schema("masa"))
    lab.write_configs()
    lab.start("masa", timeout=60)
    lab.start("registrar", timeout=60)
    yield lab
    lab.stop_all()


def _workers(lab: Lab, role: str) -> list[int]:
    return list(json.loads((lab.workdir / f"{role}.ready").read_text())["workers"])


def _issued(lab: Lab) -> int:
    return as_int(rows(lab.db_url("registrar"), "SELECT count(*) FROM certificates WHERE state = 'issued'")[0][0])


def test_200_pledges_through_two_workers_with_a_rolling_restart(workers_lab: Lab, tmp_path: Path) -> None:
    lab = workers_lab
    before = {role: _workers(lab, role) for role in ("registrar", "masa")}
    assert all(len(p) == 2 for p in before.values()), before
    summary_path = tmp_path / "fleet.json"
    fleet = subprocess.Popen(
        lab.fleet_command(count=COUNT, concurrency=8, processes=2, json_path=summary_path,
                          extra=("--no-progress",)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        # Midway (some pledges enrolled, most still to come): restart every worker of both roles.
        while _issued(lab) < 20 and fleet.poll() is None:
            time.sleep(0.1)
        for role in ("registrar", "masa"):
            os.kill(lab.pid(role), signal.SIGHUP)
        out, err = fleet.communicate(timeout=900)
    finally:
        if fleet.poll() is None:
            fleet.kill()
    assert fleet.returncode == 0, out + err
    summary = json.loads(summary_path.read_text())
    # Nothing in flight failed, through the restart.
    assert summary["attempted"] == COUNT and summary["successes"] == COUNT, summary
    assert summary["failures"] == 0, summary["failures_by_check"]
    # Both services replaced both workers (the ready file lists the new ones).
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and any(set(_workers(lab, r)) & set(before[r]) for r in before):
        time.sleep(0.1)
    for role in ("registrar", "masa"):
        now = _workers(lab, role)
        assert len(now) == 2 and not set(now) & set(before[role]), (role, before[role], now)

    reg = lab.db_url("registrar")
    assert rows(reg, "SELECT cert_serial FROM certificates GROUP BY cert_serial HAVING count(*) > 1") == []
    assert rows(reg, "SELECT spki_sha256 FROM certificates WHERE renews IS NULL"
                     " GROUP BY spki_sha256 HAVING count(*) > 1") == []
    enrolled = rows(reg, "SELECT count(*) FROM devices WHERE state = 'enrolled'")[0][0]
    issued_devices = rows(reg, "SELECT count(DISTINCT device_serial) FROM certificates WHERE state = 'issued'")[0][0]
    assert enrolled == COUNT and issued_devices == COUNT
    assert rows(lab.db_url("masa"), "SELECT count(DISTINCT serial) FROM audit_log")[0][0] == COUNT
    for role in ("registrar", "masa"):
        proc = subprocess.run(
            [sys.executable, "-m", "brski_cli", role, "audit", "verify", "--database", lab.db_url(role)],
            capture_output=True, text=True, timeout=120,
        )
        assert proc.returncode == 0 and "intact" in proc.stdout, proc.stdout + proc.stderr
    # Graceful stop of the whole service: exit 0, every worker gone.
    workers = _workers(lab, "registrar")
    assert lab.stop("registrar", timeout=120) == 0
    for pid in workers:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_workers_need_a_store_server(tmp_path: Path) -> None:
    """More than one worker on a SQLite file is a configuration error (exit 2)."""
    certs = tmp_path / "certs"
    ensure_dev_pki(certs, pledges=1, masa_url="https://localhost:1")
    lab = Lab(workdir=tmp_path / "run", certs=certs, masa_port=free_port(), registrar_port=free_port())
    lab.write_configs()
    proc = subprocess.run(
        [sys.executable, "-m", "registrar", "serve", "--config", str(lab.workdir / "registrar.toml"),
         "--workers", "2"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "postgresql://" in proc.stderr, proc.stderr
