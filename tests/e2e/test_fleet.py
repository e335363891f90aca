"""`brski pledge fleet` across worker processes against the real lab.

The benchmark drives exactly this path (``brski pledge fleet-idevids`` issues
the IDevIDs, the MASA's own ``brski masa devices import`` records the bundle,
forked workers stream samples to the parent), so it is checked here end to
end: the MASA knows every generated device, every pledge enrols, the summary
accounts for each, and the registrar's store holds one issued LDevID per
generated device.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from brski_cli.lab import Lab
from tests.e2e.labtools import rows

COUNT = 24


def test_fleet_over_two_processes_enrols_every_generated_pledge(lab: Lab, tmp_path: Path) -> None:
    summary_path = tmp_path / "fleet.json"
    proc = subprocess.run(
        lab.fleet_command(
            count=COUNT, concurrency=6, processes=2, json_path=summary_path, extra=("--no-progress",)
        ),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # Registered by the MASA's CLI before the fleet started, not by the fleet.
    assert rows(lab.db_url("masa"), "SELECT count(*) FROM devices WHERE serial LIKE 'FLT-%'")[0][0] == COUNT
    summary = json.loads(summary_path.read_text())
    assert summary["attempted"] == COUNT and summary["successes"] == COUNT, summary
    assert summary["failures"] == 0 and summary["failures_by_check"] == {}
    for phase in ("tls", "voucher", "enroll", "total"):
        q = summary["latency_ms"][phase]
        assert q["p50"] is not None and q["p50"] <= q["p95"] <= q["p99"]
    # The store agrees with the summary: one issued LDevID per generated device.
    enrolled = rows(
        lab.db_url("registrar"),
        "SELECT count(DISTINCT c.device_serial) FROM certificates c JOIN devices d"
        " ON d.serial = c.device_serial WHERE c.state = 'issued' AND d.state = 'enrolled'"
        " AND d.serial NOT LIKE 'PLG-%'",
    )[0][0]
    assert enrolled == COUNT
