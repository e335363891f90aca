"""Network access in the lab: onboarded pledges join with their LDevIDs
(802.1X EAP-TLS), and the domain takes that access away (RFC 5176).

The pieces are :mod:`brski_netaccess`'s, placed on the lab's topology:
FreeRADIUS in ``domain`` (on the edge-domain link's IPv4, asking the
registrar over HTTPS on its ULA address: OCSP and ``/netaccess/v1``), one
hostapd per pledge port in ``edge`` with its DAS, the nftables gate in
``edge``, and wpa_supplicant with the LDevID in each pledge's namespace. The
lab's own table hands the pledge ports to the gate (``dot1x_ports``), so what
an unauthorised port forwards is still nothing.

What is measured, from the components' state only (never the registrar's
claims): :func:`brski_netaccess.probe.join` (hostapd's verdict and the open
gate), then a page fetched from a service in ``domain`` from inside the
pledge's namespace; a revocation through the admin API, timed until the gate
closed the station (:func:`brski_netaccess.probe.cut_off_after`).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from brski_cli.netlab import netns
from brski_cli.netlab.topology import Topology
from brski_netaccess.probe import JoinResult, cut_off_after, join
from brski_netaccess.stack import NetworkAccessStack

__all__ = ["LabAccess"]


@dataclass
class LabAccess:
    """The lab's network-access stack; ``registrar_url``/``revocation_url`` as
    reached inside ``domain`` (the registrar's TLS names its ULA address)."""

    topo: Topology
    workdir: Path
    certs: Path
    registrar_url: str
    revocation_url: str
    registrar_http_port: int
    python: str = sys.executable
    stack: NetworkAccessStack = field(init=False)
    joined: dict[int, JoinResult] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        t = self.topo
        self.stack = NetworkAccessStack(
            workdir=self.workdir, domain_ns=t.domain, edge_ns=t.edge,
            radius_ip=t.domain_ipv4, edge_ip=t.edge_ipv4,
            ports=[p.edge_if for p in t.pledge_ports()], certs=self.certs,
            registrar_url=self.registrar_url, registrar_http_port=self.registrar_http_port,
            ocsp_url=f"{self.revocation_url}/ocsp",
            profile_url=f"{self.registrar_url}/netaccess/v1/profile",
        )

    def registrar_config(self) -> str:
        """The ``[registrar.network_access]`` table (DAS endpoints and secret)."""
        return self.stack.registrar_config()

    @property
    def service_url(self) -> str:
        return f"http://[{self.topo.domain_address}]:{self.topo.service_port}/"

    def start(self, start_daemon: Callable[..., object]) -> None:
        """FreeRADIUS, the gate, hostapd per port; the domain's service
        (``start_daemon``: :meth:`NetLab.start_daemon`); the ports handed to the gate."""
        t = self.topo
        docroot = self.workdir / "service"
        docroot.mkdir(parents=True, exist_ok=True)
        (docroot / "index.html").write_text("the operational network's service in the domain\n")
        self.stack.start()
        start_daemon("service", t.domain, [self.python, "-m", "http.server", "--bind", t.domain_address,
                                           str(t.service_port), "--directory", str(docroot)],
                     ready=lambda: self._listening(t.domain, t.service_port))
        ports = ", ".join(f'"{p.edge_if}"' for p in t.pledge_ports())
        subprocess.run(netns.exec_argv(t.edge, ["nft", "add", "element", "inet", "brski_lab", "dot1x_ports",
                                                f"{{ {ports} }}"]), check=True, capture_output=True, timeout=30)

    @staticmethod
    def _listening(ns: str, port: int) -> bool:
        out = subprocess.run(netns.exec_argv(ns, ["ss", "-Htln", f"sport = :{port}"]),
                             capture_output=True, text=True, timeout=30).stdout
        return bool(out.strip())

    def stop(self) -> None:
        for r in self.joined.values():
            r.supplicant.stop()
        self.joined.clear()
        self.stack.stop()

    # --- pledges ---------------------------------------------------------------------

    def reach(self, index: int, timeout_s: float = 3.0) -> bool:
        """A page from the domain's service, fetched inside pledge ``index``'s namespace."""
        proc = subprocess.run(
            netns.exec_argv(self.topo.pledge_ns(index), [
                "curl", "-s", "-o", "/dev/null", "-m", str(timeout_s), "-w", "%{http_code}", self.service_url]),
            capture_output=True, text=True, timeout=timeout_s + 30,
        )
        return proc.stdout == "200"

    def _join_one(self, index: int, serial: str, ldevid_dir: Path) -> dict[str, Any]:
        t = self.topo
        port = t.pledge_ports()[index - 1]
        assert self.stack.gate is not None
        r = join(
            workdir=self.workdir / "supplicants" / serial, pledge_ns=t.pledge_ns(index), interface=port.pledge_if,
            identity=serial, ldevid=ldevid_dir / "ldevid.crt", key=ldevid_dir / "ldevid.key",
            domain_ca=self.certs / "registrar" / "domain-ca.crt",
            authenticator=self.stack.authenticators[port.edge_if], gate=self.stack.gate,
        )
        self.joined[index] = r
        reached = False
        if r.network_access:
            # On the operational network: its address and the edge as gateway
            # (what DHCPv6 or SLAAC would hand out behind the opened port).
            gateway = t.operational_address(index, edge=True)
            netns.ip_batch(t.edge, [f"addr replace {gateway}/64 dev {port.edge_if} nodad"])
            netns.ip_batch(t.pledge_ns(index), [
                f"addr replace {t.operational_address(index)}/64 dev {port.pledge_if} nodad",
                f"route replace ::/0 via {gateway} dev {port.pledge_if}"])
            deadline = time.monotonic() + 10
            while not (reached := self.reach(index)) and time.monotonic() < deadline:
                time.sleep(0.2)
        return {"network_access": r.network_access and reached, "network_access_s": r.seconds, "mac": r.mac}

    def join_all(self, pledges: dict[int, tuple[str, Path]], *, concurrency: int = 8) -> dict[int, dict[str, Any]]:
        """Join every ``index: (serial, LDevID directory)``; per index: whether it
        reached the domain's service through its opened port, and in how long."""
        with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(pledges) or 1))) as pool:
            futures = {i: pool.submit(self._join_one, i, serial, d) for i, (serial, d) in pledges.items()}
            return {i: f.result() for i, f in futures.items()}

    def revoke(self, serial: str) -> None:
        """``POST /admin/v1/devices/SERIAL/revoke`` with the admin certificate, from ``domain``."""
        c = self.certs / "registrar"
        proc = subprocess.run(netns.exec_argv(self.topo.domain, [
            "curl", "-sS", "-f", "-X", "POST", "--cacert", str(c / "domain-ca.crt"), "--cert", str(c / "admin.crt"),
            "--key", str(c / "admin.key"), "-H", "Content-Type: application/json",
            "--data", json.dumps({"reason": "keyCompromise"}), f"{self.registrar_url}/admin/v1/devices/{serial}/revoke",
        ]), capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            raise RuntimeError(f"revoking {serial} through the admin API failed: {proc.stderr.strip() or proc.stdout}")

    def cut_off(self, index: int, serial: str) -> float:
        """Revoke pledge ``index``'s device; seconds until its port closed."""
        r = self.joined[index]
        assert self.stack.gate is not None
        return cut_off_after(lambda: self.revoke(serial), gate=self.stack.gate,
                             port=self.topo.pledge_ports()[index - 1].edge_if, mac=r.mac)
