"""The network lab, for real: namespaces, veths, nftables, mDNS, the join proxy.

Pledges start with nothing but a link-local address and must discover the join
proxy (RFC 8995 4.1); the refusals of the issue each get a test: a rogue
registrar announcement costs time, never trust; nothing announced means exit 1;
an idle flood from one pledge does not starve another; garbage and plain HTTP
through the proxy are refused handshakes at the registrar, never a crash.

Needs root (network namespaces): skipped with that reason otherwise. Pledge 4's
port is not announced by the lab's proxy: only what a test announces is heard there.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from brski_cli.lab import Lab, ensure_dev_pki
from brski_cli.netlab import netns
from brski_cli.netlab.run import NetLab
from brski_cli.netlab.topology import Topology
from tests.e2e.labtools import rows

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("nft") is None,
    reason="the network lab needs root, iproute2 and nftables (network namespaces)",
)

PER_SOURCE = 4


@pytest.fixture(scope="module")
def netlab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetLab]:
    topo = Topology(prefix=f"brski-t{os.getpid()}-", pledges=4, quiet_ports=(4,))
    nl = NetLab(
        topo=topo,
        workdir=tmp_path_factory.mktemp("netlab"),
        discovery_timeout_s=3.0,
        candidate_timeout_s=40.0,
        ownership="sales-records",
        proxy_limits={"max_circuits_per_source": PER_SOURCE, "idle_timeout_s": 120.0},
    )
    try:
        nl.up()
        yield nl
    finally:
        nl.down()
    left = [ns for ns in netns.existing() if topo.owns(ns)]
    assert left == [], f"lab down left namespaces behind: {left}"


def _in_ns(nl: NetLab, ns: str, script: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        netns.exec_argv(ns, [sys.executable, "-c", script, *args]),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(what: str, check: object, timeout: float = 40.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _log_of(lab: Lab, name: str) -> str:
    return (lab.workdir / f"{name}.log").read_text(errors="replace")


def _log(nl: NetLab, name: str) -> str:
    return (nl.lab.workdir / f"{name}.log").read_text(errors="replace")


def test_pledge_onboards_through_the_proxy_by_discovery_alone(netlab: NetLab) -> None:
    [r] = netlab.run_pledges([1])
    assert r["ok"], r
    assert (r["discovered"], r["voucher"], r["ldevid"]) == ("proxy", True, True)
    assert r["via"] == "fe80::1%eth0"
    # The pledge's namespace has no route off its link and no global address.
    ns = netlab.topo.pledge_ns(1)
    routes = subprocess.run(["ip", "-n", ns, "-6", "route"], capture_output=True, text=True).stdout
    assert "default" not in routes
    addrs = subprocess.run(["ip", "-n", ns, "-6", "-o", "addr"], capture_output=True, text=True).stdout
    assert all("scope link" in ln or " lo " in ln for ln in addrs.splitlines()), addrs
    # The registrar saw the proxy's address and says so; the proxy relayed a circuit.
    assert "via=proxy" in _log(netlab, "registrar")
    assert "event=circuit-open" in _log(netlab, "join_proxy")


def test_edge_forwards_nothing_from_a_pledge_port(netlab: NetLab) -> None:
    """nftables on the edge: the pledge cannot reach the registrar's address even
    with a route added by hand; only the proxy answers it."""
    ns = netlab.topo.pledge_ns(1)
    subprocess.run(["ip", "-n", ns, "addr", "add", "fd00:b5c1:99::2/64", "dev", "eth0", "nodad"], check=True)
    subprocess.run(["ip", "-n", ns, "-6", "route", "add", "::/0", "via", "fe80::1", "dev", "eth0"], check=True)
    try:
        ping = subprocess.run(netns.exec_argv(ns, ["ping", "-6", "-c", "1", "-W", "1", netlab.topo.domain_address]),
                              capture_output=True, text=True)
        assert ping.returncode != 0, ping.stdout
        ruleset = subprocess.run(netns.exec_argv(netlab.topo.edge, ["nft", "list", "chain", "inet", "brski_lab", "forward"]),
                                 capture_output=True, text=True).stdout
        assert "packets 0 " not in ruleset.split("pledge ports forward nothing")[0].splitlines()[-1], ruleset
    finally:
        subprocess.run(["ip", "-n", ns, "-6", "route", "del", "::/0"], check=False)
        subprocess.run(["ip", "-n", ns, "addr", "del", "fd00:b5c1:99::2/64", "dev", "eth0"], check=False)


def test_no_proxy_within_the_budget_says_so_and_exits_1(netlab: NetLab) -> None:
    run = netlab.start_pledge(4, "--discovery-timeout", "1")
    r = run.result(60)
    assert r["exit_code"] == 1
    assert r["failed_check"] == "pledge.discovery.nothing-found"
    assert "no join proxy" in r["detail"]
    assert r["discovery"]["found"] == []


FLOOD = """
import select, socket, sys, time
n, port, expect_refused = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
socks = [socket.create_connection(("fe80::1%eth0", port)) for _ in range(n)]
closed = set()
deadline = time.monotonic() + 60  # the proxy answers every connection, however loaded the machine
while len(closed) < expect_refused and time.monotonic() < deadline:
    readable, _, _ = select.select([s for s in socks if s not in closed], [], [], 0.5)
    for s in readable:
        try:
            if s.recv(1) == b"":
                closed.add(s)
        except OSError:
            closed.add(s)
time.sleep(0.5)  # a wrong extra refusal would show up here
for s in socks:
    if s not in closed:
        s.setblocking(False)
        try:
            if s.recv(1) == b"":
                closed.add(s)
        except BlockingIOError:
            pass
        except OSError:
            closed.add(s)
print(n - len(closed), len(closed), flush=True)
time.sleep(600)
"""


def test_an_idle_flood_from_one_pledge_does_not_starve_another(netlab: NetLab) -> None:
    flood = _in_ns(netlab, netlab.topo.pledge_ns(2), FLOOD, "40", str(netlab.topo.proxy_port), str(40 - PER_SOURCE))
    try:
        assert flood.stdout is not None
        held, refused = map(int, flood.stdout.readline().split())
        assert (held, refused) == (PER_SOURCE, 40 - PER_SOURCE)
        [r] = netlab.run_pledges([3])
        assert r["ok"], r
        assert r["discovered"] == "proxy"
    finally:
        flood.kill()
        flood.wait()
    log = _log(netlab, "join_proxy")
    assert log.count("reason=source-limit") >= 40 - PER_SOURCE
    assert "%pl2" in log


GARBAGE = """
import socket, ssl, sys
port = int(sys.argv[1])
for payload in (bytes(range(256)) * 4, b"GET / HTTP/1.1\\r\\nHost: registrar\\r\\n\\r\\n"):
    s = socket.create_connection(("fe80::1%eth0", port), timeout=30)
    s.sendall(payload)
    data = b""
    while chunk := s.recv(4096):
        data += chunk
    print(len(data), flush=True)
    s.close()
# And a well-formed TLS request the registrar refuses (no client certificate: no voucher).
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
with ctx.wrap_socket(socket.create_connection(("fe80::1%eth0", port), timeout=30)) as t:
    t.sendall(b"POST /.well-known/brski/requestvoucher HTTP/1.1\\r\\nHost: r\\r\\nContent-Type: "
              b"application/voucher-cms+json\\r\\nContent-Length: 4\\r\\nConnection: close\\r\\n\\r\\njunk")
    print(t.recv(64).split(b"\\r\\n")[0].decode(), flush=True)
"""


def test_garbage_and_plain_http_through_the_proxy_are_refused_handshakes(netlab: NetLab) -> None:
    before = _log(netlab, "registrar").count("event=tls-handshake-refused")
    proc = _in_ns(netlab, netlab.topo.pledge_ns(2), GARBAGE, str(netlab.topo.proxy_port))
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err
    lines = out.splitlines()
    assert len(lines) == 3, out  # each connection was answered or closed by the far end, not hung
    assert lines[2].startswith("HTTP/1.1 4"), lines[2]
    # Both reached the registrar as handshakes it refused, logged as coming through the proxy ...
    _wait_for("two refused handshakes in the registrar's log",
              lambda: _log(netlab, "registrar").count("event=tls-handshake-refused") >= before + 2)
    # ... and recorded as events marked via=proxy (the refusals are stored per window).
    db = netlab.lab.db_url("registrar")

    def recorded(kind: str) -> bool:
        return any(json.loads(str(d)).get("via") == "proxy"
                   for (d,) in rows(db, "SELECT detail FROM events WHERE kind = ?", (kind,)))

    assert recorded("refused /.well-known/brski/requestvoucher")
    _wait_for("a tls.handshake-refused event with via=proxy", lambda: recorded("tls.handshake-refused"))
    # Never a crash: the registrar still serves, a pledge onboards after it.
    assert netlab.lab._procs["registrar"].popen.poll() is None
    [r] = netlab.run_pledges([2])
    assert r["ok"], r


def test_a_rogue_registrar_costs_time_never_trust(netlab: NetLab, tmp_path: Path) -> None:
    """Pledge 4 hears two registrars: a rogue (another domain's registrar, announced
    with the better SRV priority, so tried first) and the real one (its TLS port
    reached through the edge's relay). The MASA sells the pledge to the real domain
    only, so the rogue gets no voucher; the pledge moves on and ends with the real one."""
    topo = netlab.topo
    foreign = tmp_path / "foreign"
    ensure_dev_pki(foreign, pledges=1, masa_url=netlab.lab.masa_url)
    shutil.rmtree(foreign / "manufacturer")  # trust the same manufacturer as the lab's pledges
    shutil.copytree(netlab.lab.certs / "manufacturer", foreign / "manufacturer")
    rogue = Lab(
        workdir=tmp_path / "rogue", certs=foreign, registrar_port=9443, host="::",
        masa_public=topo.vendor_address, registrar_public="fe80::1",
        registrar_extra=('mdns_interfaces = ["pl4"]', 'mdns_instance = "rogue-registrar"'),
        command_prefix={"registrar": netns.exec_argv(topo.edge, [])},
    )
    rogue.write_configs()
    # The rogue sits on the edge, so the edge's input filter must let pledges reach its port
    # (otherwise it would cost a timeout and prove nothing about the voucher).
    subprocess.run(netns.exec_argv(topo.edge, ["nft", "insert", "rule", "inet", "brski_lab", "input",
                                               "tcp", "dport", "9443", "accept"]), check=True)
    try:
        rogue.start("registrar")
        netlab.start_daemon("announce-real", topo.edge, [
            sys.executable, "-m", "brski_net", "announce", "registrar", "--port", str(topo.proxy_port),
            "--interface", "pl4", "--address", "fe80::1", "--priority", "10", "--instance", "domain-registrar",
            "--ready-file", str(tmp_path / "announced")], ready=(tmp_path / "announced").exists)
        r = netlab.start_pledge(4, "--discovery-timeout", "3").result(120)
    finally:
        rogue.stop_all()
        netlab.stop_daemon("announce-real")
    attempts = r["discovery"]["attempts"]
    assert [(a["kind"], a["name"], a["ok"]) for a in attempts] == [
        ("registrar", "rogue-registrar", False),
        ("registrar", "domain-registrar", True),
    ], attempts
    assert r["ok"] and r["voucher"] and r["ldevid"], r
    # The rogue answered (TLS up) but had no voucher for this pledge: the MASA sells it to the real domain only.
    assert attempts[0]["failed_check"] == "pledge.voucher-http-status", attempts[0]
    assert "event=masa-refused" in _log_of(rogue, "registrar") and "masa.not-owner" in _log_of(rogue, "registrar")
    # The LDevID comes from the real domain CA (both dev PKIs use the same names: check the key).
    serial = r["serial"]
    ldevid = x509.load_pem_x509_certificate((netlab.workdir / "pledges" / serial / "ldevid.crt").read_bytes())
    real_ca = x509.load_pem_x509_certificate((netlab.lab.certs / "registrar" / "domain-ca.crt").read_bytes())
    ldevid.verify_directly_issued_by(real_ca)


def test_down_cleans_up_after_an_up_killed_half_way(tmp_path: Path) -> None:
    """``lab up`` killed with SIGKILL once its namespaces exist and its first server
    runs: ``down`` leaves no namespace and no process behind, and a second ``down``
    is a no-op."""
    prefix = f"brski-c{os.getpid()}-"
    topo = Topology(prefix=prefix, pledges=2)
    cli = [sys.executable, "-m", "brski_cli", "lab"]
    common = ["--prefix", prefix, "--workdir", str(tmp_path)]
    log = tmp_path / "up.log"
    with log.open("w") as out:
        up = subprocess.Popen([*cli, "up", "--pledges", "2", *common], stdout=out, stderr=subprocess.STDOUT)
    try:
        # The MASA's ready file, not any process in the namespace: while the lab
        # is built its own commands (sysctl via `ip netns exec`) run there briefly.
        _wait_for("the MASA listening in the vendor namespace", (tmp_path / "run" / "masa.ready").exists, timeout=120)
        pids = [p for ns in netns.existing() if topo.owns(ns) for p in netns.netns_pids(ns)]
    except BaseException:
        up.kill()
        up.wait()
        subprocess.run([*cli, "down", *common], capture_output=True, timeout=120)
        raise AssertionError(log.read_text()) from None
    finally:
        up.kill()
        up.wait()
    assert pids
    down = subprocess.run([*cli, "down", *common], capture_output=True, text=True, timeout=120)
    assert down.returncode == 0, down.stdout + down.stderr
    assert [ns for ns in netns.existing() if topo.owns(ns)] == [], down.stdout
    # Signalled and gone (a zombie waits for its reaper, it runs nothing).
    _wait_for("the lab's processes to exit", lambda: not any(_alive(p) for p in pids), timeout=20)
    again = subprocess.run([*cli, "down", *common], capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "removed 0" in again.stdout
