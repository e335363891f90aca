"""The lab's processes: MASA in ``vendor``, registrar in ``domain``, join proxy in
``edge``, one pledge simulator per pledge namespace.

The servers are the :class:`brski_cli.lab.Lab` harness (configs, ready files,
SIGTERM) with each command prefixed by ``ip netns exec``; a pledge runs
``brski pledge enroll`` with no registrar URL, so it has to discover the proxy.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from brski_cli.lab import Lab, LabError, ensure_dev_pki
from brski_cli.netlab import netns
from brski_cli.netlab.access import LabAccess
from brski_cli.netlab.topology import Topology

__all__ = ["NetLab", "PledgeRun"]

STATE_FILE = "lab.json"


@dataclass
class PledgeRun:
    index: int
    serial: str
    popen: subprocess.Popen[str]
    started: float
    log_path: Path
    out: Path  # the LDevID and its key, once enrolled

    def result(self, timeout: float) -> dict[str, Any]:
        """The demo's per-pledge record, from the pledge's own ``--json`` output."""
        try:
            stdout, _ = self.popen.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            stdout, _ = self.popen.communicate()
        seconds = round(time.monotonic() - self.started, 3)
        try:
            doc: dict[str, Any] = json.loads(stdout)
        except ValueError:
            doc = {"ok": False, "failed_check": "pledge.crashed", "detail": f"see {self.log_path}"}
        # The pledge's own time: discovery plus every candidate it tried (the
        # interpreter's start, which a loaded machine can stretch to seconds, is not onboarding).
        disc = doc.get("discovery") or {}
        own = disc.get("seconds", 0.0) + sum(a.get("seconds", 0.0) for a in disc.get("attempts", []))
        return {
            "serial": doc.get("serial") or self.serial,
            "discovered": doc.get("discovered"),
            "via": doc.get("via"),
            "voucher": doc.get("voucher") is not None,
            "ldevid": doc.get("ldevid") is not None,
            "ldevid_dir": self.out,
            "seconds": round(own, 3) if disc else seconds,
            "process_seconds": seconds,
            "ok": bool(doc.get("ok")),
            "failed_check": doc.get("failed_check"),
            "detail": doc.get("detail"),
            "exit_code": self.popen.returncode,
            "discovery": doc.get("discovery"),
        }


@dataclass
class NetLab:
    """A :class:`Topology` built in namespaces, its servers and its dev PKI under ``workdir``."""

    topo: Topology
    workdir: Path
    python: str = sys.executable
    discovery_timeout_s: float = 5.0
    candidate_timeout_s: float = 60.0
    proxy_limits: dict[str, Any] = field(default_factory=dict)
    # MASA ownership: "sales-records" with every lab pledge sold to the lab's domain
    # (a registrar of another domain is then refused a voucher, RFC 8995 5.5.4).
    ownership: str = "open"
    # 802.1X with the LDevID after onboarding (brski_cli.netlab.access): FreeRADIUS,
    # hostapd per pledge port, the gate; the registrar as policy decision point.
    network_access: bool = False
    # The stores (None: SQLite files under workdir/run); a postgresql:// URL works
    # from inside the namespaces too, over the cluster's Unix socket.
    registrar_database: str | None = None
    masa_database: str | None = None
    access: LabAccess | None = field(default=None, init=False)
    lab: Lab = field(init=False)
    daemons: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        t = self.topo
        self.workdir = self.workdir.resolve()
        self.lab = Lab(
            workdir=self.workdir / "run",
            certs=self.workdir / "certs",
            masa_port=t.masa_port,
            registrar_port=t.registrar_port,
            registrar_http_port=t.registrar_http_port,
            host="::",
            python=self.python,
            ownership=self.ownership,
            registrar_database=self.registrar_database,
            masa_database=self.masa_database,
            masa_public=t.vendor_address,
            registrar_public=t.domain_address,
            # RFC 8995 4.1 / B: the registrar announces itself on the domain link;
            # the join proxy's connections are told apart by its addresses (4.3).
            registrar_extra=(
                'mdns_interfaces = ["eth0"]',
                "proxy_addresses = [" + ", ".join(f'"{a}"' for a in t.proxy_addresses) + "]",
            ),
            command_prefix={
                "masa": netns.exec_argv(t.vendor, []),
                "registrar": netns.exec_argv(t.domain, []),
                "join_proxy": netns.exec_argv(t.edge, []),
            },
        )

    # --- lifecycle -----------------------------------------------------------------

    def up(self, *, detach: bool = False) -> None:
        """Build the namespaces and start MASA, registrar and join proxy."""
        netns.preflight()
        netns.teardown(self.topo)  # whatever a crashed run left behind
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / STATE_FILE).write_text(json.dumps({"prefix": self.topo.prefix, "pledges": self.topo.pledges}))
        netns.build(self.topo)
        self._pki()
        self.lab.write_configs()
        if self.network_access:
            self.access = LabAccess(
                topo=self.topo, workdir=self.workdir / "netaccess", certs=self.lab.certs.resolve(),
                registrar_url=self.lab.registrar_url, revocation_url=self.lab.revocation_url,
                registrar_http_port=self.lab.registrar_http_port, python=self.python,
            )
            with (self.lab.workdir / "registrar.toml").open("a") as f:
                f.write("\n" + self.access.registrar_config())
        self._write_proxy_config()
        self.lab.import_devices()
        if self.ownership == "sales-records":
            self._sell_pledges()
        for name in ("masa", "registrar", "join_proxy"):
            self.lab.start(name, detach=detach)
        if self.access is not None:
            self.access.start(self.start_daemon)

    def down(self) -> list[str]:
        if self.access is not None:
            self.access.stop()
        self.lab.stop_all()
        for name in list(self.daemons):
            self.stop_daemon(name)
        return netns.teardown(self.topo)

    # --- other processes in the namespaces (authenticators, RADIUS, supplicants) ------

    def start_daemon(
        self, name: str, ns: str, argv: list[str], *, ready: Callable[[], bool] | None = None, timeout: float = 30.0
    ) -> subprocess.Popen[bytes]:
        """Run ``argv`` inside namespace ``ns`` with its output in ``run/NAME.log``;
        wait until ``ready()`` (if given) or fail with the log's tail. ``down``
        stops it (and :func:`netns.teardown` whatever is left in the namespace)."""
        if name in self.daemons and self.daemons[name].poll() is None:
            raise LabError(f"{name} is already running")
        log_path = self.lab.workdir / f"{name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            popen = subprocess.Popen(netns.exec_argv(ns, argv), stdout=log, stderr=subprocess.STDOUT)
        self.daemons[name] = popen
        deadline = time.monotonic() + timeout
        while ready is not None and not ready():
            if popen.poll() is not None or time.monotonic() > deadline:
                self.stop_daemon(name)
                tail = log_path.read_text(errors="replace").splitlines()[-20:]
                raise LabError(f"{name} in {ns} did not get ready:\n" + "\n".join(tail))
            time.sleep(0.05)
        return popen

    def stop_daemon(self, name: str, *, timeout: float = 10.0) -> int | None:
        popen = self.daemons.pop(name, None)
        if popen is None:
            return None
        if popen.poll() is None:
            popen.terminate()
            try:
                popen.wait(timeout)
            except subprocess.TimeoutExpired:
                popen.kill()
        return popen.wait()

    def _pki(self) -> None:
        certs = self.lab.certs
        pledges = certs / "pledges"
        have = len([p for p in pledges.iterdir() if p.is_dir()]) if pledges.is_dir() else 0
        ensure_dev_pki(
            certs,
            pledges=self.topo.pledges,
            masa_url=self.lab.masa_url,
            force=have < self.topo.pledges,
            masa_hosts=(self.topo.vendor_address,),
            registrar_hosts=(self.topo.domain_address,),
        )
        # Fresh stores each time: the demo tells one story.
        for db in ("masa.db", "registrar.db"):
            for suffix in ("", "-wal", "-shm"):
                (self.lab.workdir / (db + suffix)).unlink(missing_ok=True)

    def _sell_pledges(self) -> None:
        domain_ca = str(self.lab.certs / "registrar" / "domain-ca.crt")
        for d in self.lab.pledge_dirs():
            self.lab._run_cli("masa", "owners", "add", "--config", str(self.lab.workdir / "masa.toml"),
                              d.name, "--domain-ca", domain_ca)

    def _write_proxy_config(self) -> None:
        t = self.topo
        limits = {
            "max_circuits": 256, "max_circuits_per_source": 8, "connect_timeout_s": 5.0,
            "idle_timeout_s": 30.0, "max_circuit_s": 300.0, "max_circuit_bytes": 4 << 20,
            **self.proxy_limits,
        }
        lines = [
            "[proxy]",
            'listen_host = "::"',
            f"listen_port = {t.proxy_port}",
            "announce_interfaces = [" + ", ".join(f'"{p.edge_if}"' for p in t.announced_ports()) + "]",
            'announce_addresses = ["fe80::1"]',
            'registrar = "auto"',
            'registrar_interfaces = ["dom0"]',
            "discovery_timeout_s = 10.0",
            *(f"{k} = {v}" for k, v in limits.items()),
            "",
        ]
        self.lab.workdir.mkdir(parents=True, exist_ok=True)
        (self.lab.workdir / "join_proxy.toml").write_text("\n".join(lines))

    # --- pledges -------------------------------------------------------------------

    def pledge_dir(self, index: int) -> Path:
        return self.lab.pledge_dirs()[index - 1]

    def start_pledge(self, index: int, *extra: str) -> PledgeRun:
        """``brski pledge enroll`` (discovery) inside pledge ``index``'s namespace."""
        d = self.pledge_dir(index)
        out = self.workdir / "pledges" / d.name
        log_path = self.workdir / "pledges" / f"{d.name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        argv = netns.exec_argv(self.topo.pledge_ns(index), [
            self.python, "-m", "brski_cli", "pledge", "enroll", "--dir", str(d), "--out", str(out), "--json", "-v",
            "--discovery-timeout", str(self.discovery_timeout_s), "--candidate-timeout", str(self.candidate_timeout_s),
            *extra,
        ])
        with log_path.open("w") as log:
            popen = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log, text=True)
        return PledgeRun(index=index, serial=d.name, popen=popen, started=time.monotonic(), log_path=log_path, out=out)

    def run_pledges(
        self, indexes: list[int], *extra: str, timeout: float = 300.0, concurrency: int = 8
    ) -> list[dict[str, Any]]:
        """Run the pledges, ``concurrency`` processes at a time; results in ``indexes`` order."""
        results: list[dict[str, Any]] = []
        for start in range(0, len(indexes), max(1, concurrency)):
            runs = [self.start_pledge(i, *extra) for i in indexes[start : start + concurrency]]
            results += [r.result(timeout) for r in runs]
        return results


def load_state(workdir: Path) -> dict[str, Any]:
    try:
        state: dict[str, Any] = json.loads((workdir / STATE_FILE).read_text())
        return state
    except (OSError, ValueError):
        return {}
