"""``brski lab demo`` as an operator runs it: pledges discover the join proxy,
onboard, join the network with their LDevIDs (802.1X EAP-TLS: wpa_supplicant,
hostapd on the edge, FreeRADIUS in the domain, the registrar deciding), and
``--revoke 1`` takes one of them off the network again (RFC 5176).

The demo's JSON is checked against what the test sees for itself in the lab it
left up (``--keep``): a page from the domain's service fetched inside each
pledge's namespace, the edge's gate, the registrar's events. Then ``lab down``
leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from brski_cli.netlab import netns
from brski_cli.netlab.topology import Topology
from brski_netaccess.netns import have_netns
from tests.e2e.labtools import rows

pytestmark = pytest.mark.skipif(have_netns() is not None, reason=f"lab demo with 802.1X: {have_netns()}")

KEYS = sorted(["serial", "discovered", "via", "voucher", "ldevid", "seconds", "network_access", "network_access_s",
               "revoked", "cut_off_after_revoke_s", "reachable_at_end"])


def _reach(topo: Topology, index: int) -> bool:
    proc = subprocess.run(
        netns.exec_argv(topo.pledge_ns(index), ["curl", "-s", "-o", "/dev/null", "-m", "3", "-w", "%{http_code}",
                                                f"http://[{topo.domain_address}]:{topo.service_port}/"]),
        capture_output=True, text=True, timeout=60,
    )
    return proc.stdout == "200"


def test_lab_demo_onboards_joins_and_cuts_off_the_revoked_pledge(tmp_path: Path) -> None:
    prefix = f"brski-d{os.getpid()}-"
    topo = Topology(prefix=prefix, pledges=2)
    out = tmp_path / "demo.json"
    common = ["--prefix", prefix, "--workdir", str(tmp_path / "lab")]
    cli = [sys.executable, "-m", "brski_cli", "lab"]
    try:
        proc = subprocess.run([*cli, "demo", "--pledges", "2", "--revoke", "1", "--json", str(out), "--keep", *common],
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "2/2 got network access" in proc.stdout and "1/1 revoked and cut off" in proc.stdout, proc.stdout
        records = json.loads(out.read_text())
        assert [sorted(r) for r in records] == [KEYS] * 2
        assert [r["serial"] for r in records] == ["PLG-000001", "PLG-000002"]
        assert all(r["discovered"] == "proxy" and r["voucher"] and r["ldevid"] and r["seconds"] > 0 for r in records)
        assert all(r["network_access"] and r["network_access_s"] > 0 for r in records)
        kept, revoked = records
        assert (kept["revoked"], kept["cut_off_after_revoke_s"], kept["reachable_at_end"]) == (False, None, True)
        assert revoked["revoked"] and revoked["reachable_at_end"] is False
        assert isinstance(revoked["cut_off_after_revoke_s"], float) and revoked["cut_off_after_revoke_s"] > 0
        # What the test sees itself, from inside the pledges' namespaces and on the edge.
        assert _reach(topo, 1), "the pledge that kept its access cannot reach the domain's service"
        assert not _reach(topo, 2), "the revoked pledge still reaches the domain's service"
        stations = subprocess.run(netns.exec_argv(topo.edge, ["nft", "-j", "list", "map", "inet", "brski_gate",
                                                              "stations"]), capture_output=True, text=True).stdout
        open_ports = {e[0]["concat"][0] for item in json.loads(stations)["nftables"]
                      for e in item.get("map", {}).get("elem", [])}
        assert open_ports == {"pl1"}, stations
        # The registrar's log tells the revoked device's network life.
        kinds = [k for (k,) in rows(tmp_path / "lab" / "run" / "registrar.db",
                                    "SELECT kind FROM events WHERE device_serial = ? ORDER BY id", ("PLG-000002",))]
        for kind in ("credential.issued", "netaccess.decision", "netaccess.session-opened", "credential.revoked",
                     "netaccess.disconnect-requested", "netaccess.cut-off"):
            assert kind in kinds, (kind, kinds)
    finally:
        down = subprocess.run([*cli, "down", *common], capture_output=True, text=True, timeout=120)
    assert down.returncode == 0, down.stderr
    assert [ns for ns in netns.existing() if ns.startswith(prefix)] == []
