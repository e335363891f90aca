"""The conformance suite against our own registrar: every case must pass.

Runs ``brski pledge conformance`` as a separate process, as a lab would run
it against anyone's registrar, and reads its JUnit and JSON reports.
"""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from brski_cli.lab import Lab
from pledge_sim.conformance import CASES


def test_conformance_suite_passes_against_our_registrar(lab: Lab, tmp_path: Path) -> None:
    junit, report = tmp_path / "junit.xml", tmp_path / "conformance.json"
    proc = subprocess.run(
        [
            sys.executable, "-m", "brski_cli", "pledge", "conformance",
            "--registrar", lab.registrar_url,
            "--idevid", str(lab.certs / "pledges"),
            "--anchor", str(lab.certs / "manufacturer" / "root-ca.crt"),
            "--junit", str(junit),
            "--json", str(report),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    judged = [c for c in CASES if c.kind != "telemetry"]
    reported = len(CASES) - len(judged)
    assert f"{len(CASES)} cases: {len(judged)} passed, 0 failed, 0 skipped, 0 inconclusive, {reported} reported" in proc.stdout

    results = json.loads(report.read_text())["results"]
    assert [r["name"] for r in results] == [c.name for c in CASES]
    # RFC 8995 5.7/5.9.4 telemetry answers are reported, never judged; all else passes.
    kinds = {c.name: c.kind for c in CASES}
    assert all(r["outcome"] == ("report" if kinds[r["name"]] == "telemetry" else "pass") for r in results), results
    by_name = {r["name"]: r for r in results}
    for name in ("vr-foreign-proximity-cert", "vr-assertion-not-proximity"):
        assert by_name[name]["observed"].startswith("401 ") and "connection closed" in by_name[name]["observed"]
    assert all(r["section"].startswith("RFC ") for r in results)

    suite = ET.parse(junit).getroot()
    assert suite.get("tests") == str(len(CASES)) and suite.get("failures") == "0" and suite.get("skipped") == "0"
    assert len(suite.findall("testcase")) == len(CASES)
