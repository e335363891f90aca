"""Build, inspect and tear down a :class:`Topology` with iproute2 and nftables,
and run processes inside its namespaces.

Everything here shells out to ``ip`` and ``nft`` the way an operator would,
batched (``ip -batch``) so that a lab of many pledges comes up in a second or
two. Teardown is by name (:meth:`Topology.owns`), so ``down`` also cleans up
after an ``up`` that crashed half way: processes in the namespaces are
signalled (a namespace with a process in it outlives ``ip netns del``), then
the namespaces are deleted, which removes their links and nftables tables.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from brski_cli.netlab.topology import Topology

__all__ = ["NetlabUnavailable", "build", "exec_argv", "existing", "ip_batch", "netns_pids", "preflight", "status",
           "teardown"]


class NetlabUnavailable(RuntimeError):
    """No root, no ``ip``/``nft``, or no network namespaces: the lab cannot run here."""


def _run(argv: Sequence[str], *, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), input=input, capture_output=True, text=True, timeout=60)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:6])}{' ...' if len(argv) > 6 else ''} failed: {proc.stderr.strip()[:500]}")
    return proc


def preflight() -> None:
    """Raise :class:`NetlabUnavailable` with the reason if the lab cannot run here."""
    if os.geteuid() != 0:
        raise NetlabUnavailable("the network lab needs root (network namespaces, veth links, nftables): run it with sudo")
    for tool, pkg in (("ip", "iproute2"), ("nft", "nftables")):
        if shutil.which(tool) is None:
            raise NetlabUnavailable(f"'{tool}' is not installed (Debian package {pkg}; make sysdeps installs it)")
    if not Path("/proc/self/ns/net").exists():
        raise NetlabUnavailable("this kernel has no network namespaces")
    probe = f"brski-probe{os.getpid()}"
    proc = _run(["ip", "netns", "add", probe], check=False)
    if proc.returncode != 0:
        raise NetlabUnavailable(f"cannot create a network namespace: {proc.stderr.strip()}")
    _run(["ip", "netns", "del", probe], check=False)


def exec_argv(netns: str, argv: Sequence[str]) -> list[str]:
    """``argv`` run inside ``netns``."""
    return ["ip", "netns", "exec", netns, *argv]


def ip_batch(netns: str, commands: Sequence[str]) -> None:
    """``ip -n NETNS -batch -``: one ``ip`` command (without ``ip``) per item."""
    _run(["ip", "-n", netns, "-batch", "-"], input="".join(c + "\n" for c in commands))


def existing() -> list[str]:
    out = _run(["ip", "netns", "list"], check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def netns_pids(netns: str) -> list[int]:
    out = _run(["ip", "netns", "pids", netns], check=False).stdout
    return [int(p) for p in out.split() if p.isdigit()]


def build(topo: Topology) -> None:
    """Create the namespaces, links, addresses, routes and the edge's nftables.
    Fails if any of the lab's namespaces already exists (run :func:`teardown`)."""
    clash = [ns for ns in existing() if topo.owns(ns)]
    if clash:
        raise RuntimeError(f"lab namespaces exist already ({', '.join(clash)}): run 'brski lab down' first")
    _run(["ip", "-batch", "-"], input="".join(f"netns add {ns}\n" for ns in topo.namespaces()))
    # Before any link exists: no DAD (a link-local address would stay tentative
    # ~2 s), no router advertisements, IPv6 forwarding only on the edge.
    for ns in topo.namespaces():
        settings = ["net.ipv6.conf.default.accept_dad=0", "net.ipv6.conf.all.accept_dad=0",
                    "net.ipv6.conf.default.accept_ra=0", "net.ipv6.conf.all.accept_ra=0"]
        if ns == topo.edge:
            settings.append("net.ipv6.conf.all.forwarding=1")
        _run(exec_argv(ns, ["sysctl", "-qw", *settings]))
    links = topo.links()
    _run(["ip", "-batch", "-"], input="".join(
        f"link add name {ln.a_if} netns {ln.a_ns} type veth peer name {ln.b_if} netns {ln.b_ns}\n" for ln in links))
    per_ns: dict[str, list[str]] = {ns: ["link set lo up"] for ns in topo.namespaces()}
    for ln in links:
        if ln.a_no_auto_ll:
            per_ns[ln.a_ns].append(f"link set {ln.a_if} addrgenmode none")
        for ns, ifname, addrs in ((ln.a_ns, ln.a_if, ln.a_addrs), (ln.b_ns, ln.b_if, ln.b_addrs)):
            per_ns[ns] += [f"addr add {a} dev {ifname}{' nodad' if ':' in a else ''}" for a in addrs]
            per_ns[ns].append(f"link set {ifname} up")
    for ns, routes in topo.routes().items():
        per_ns[ns] += [f"route add {r}" for r in routes]
    for ns, cmds in per_ns.items():
        ip_batch(ns, cmds)
    _run(exec_argv(topo.edge, ["nft", "-f", "-"]), input=topo.edge_nftables())


def _signal_all(pids: Sequence[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def teardown(topo: Topology, *, grace_s: float = 5.0) -> list[str]:
    """Stop every process in the lab's namespaces (SIGTERM, then SIGKILL after
    ``grace_s``) and delete the namespaces. Idempotent; returns what it deleted."""
    mine = [ns for ns in existing() if topo.owns(ns)]
    pids = sorted({pid for ns in mine for pid in netns_pids(ns)})
    _signal_all(pids, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while pids and time.monotonic() < deadline:
        pids = [pid for pid in pids if Path(f"/proc/{pid}").exists() and not _zombie(pid)]
        time.sleep(0.05)
    _signal_all(pids, signal.SIGKILL)
    for ns in mine:
        _run(["ip", "netns", "del", ns], check=False)
    return mine


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True


@dataclass(frozen=True, kw_only=True)
class NsStatus:
    name: str
    addresses: list[str]
    processes: list[str]
    nft_tables: list[str]


def status(topo: Topology) -> list[NsStatus]:
    out = []
    for ns in sorted(n for n in existing() if topo.owns(n)):
        addrs = []
        for line in _run(["ip", "-n", ns, "-o", "-6", "addr", "show"], check=False).stdout.splitlines():
            parts = line.split()
            if len(parts) >= 4 and parts[1] != "lo":
                addrs.append(f"{parts[1]} {parts[3]}")
        procs = []
        for pid in netns_pids(ns):
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            except OSError:
                continue
            procs.append(f"{pid} {cmd[:120]}")
        tables = [ln.strip() for ln in _run(exec_argv(ns, ["nft", "list", "tables"]), check=False).stdout.splitlines() if ln.strip()]
        out.append(NsStatus(name=ns, addresses=addrs, processes=procs, nft_tables=tables))
    return out
