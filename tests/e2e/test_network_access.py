"""End to end: 802.1X EAP-TLS with the LDevID, in network namespaces.

Real programs only: MASA and registrar (a real onboarding gives the LDevID),
FreeRADIUS (EAP-TLS, OCSP to the registrar, rlm_rest to its decision point),
hostapd (wired 802.1X authenticator with RFC 5176 DAS), wpa_supplicant, and
the nftables gate driven by hostapd_cli. Reachability is tested from inside
the pledge's namespace with curl against a service in the domain namespace.
Namespaces are ``brx-<tag>-*`` (never the lab's ``brski-*``).
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import NameOID

from brski.devpki import DevPki, build_dev_pki
from brski.pki import load_cert, load_private_key
from brski_cli.lab import Lab, free_port
from brski_cli.pki_cmd import write_dev_pki
from brski_netaccess.freeradius import RadiusServer
from brski_netaccess.gate import Gate
from brski_netaccess.hostapd import Authenticator
from brski_netaccess.netns import Daemon, have_netns, run
from brski_netaccess.probe import cut_off_after, join
from brski_netaccess.stack import NetworkAccessStack
from brski_netaccess.supplicant import Supplicant
from brski_netaccess.topology import MiniTopology
from tests.e2e.labtools import engine_databases, rows

pytestmark = pytest.mark.skipif(have_netns() is not None, reason=str(have_netns()))

SERVICE_PORT, OTHER_PORT = 8080, 8081  # inside our own namespace
PLEDGES = 10
# RFC 8520: three devices whose IDevIDs name a MUD file; "broken" has a bad signature.
MUD_DEVICES = {"PLG-000008": "camera", "PLG-000009": "sensor", "PLG-000010": "broken"}


def _mud(url: str, port: int) -> bytes:
    return json.dumps({
        "ietf-mud:mud": {
            "mud-version": 1, "mud-url": url, "cache-validity": 48, "is-supported": True,
            "systeminfo": f"dev device reaching tcp/{port}",
            "from-device-policy": {"access-lists": {"access-list": [{"name": "from-ipv4"}]}},
        },
        "ietf-access-control-list:acls": {"acl": [{"name": "from-ipv4", "type": "ipv4-acl-type", "aces": {"ace": [{
            "name": "service", "actions": {"forwarding": "accept"},
            "matches": {"ipv4": {"destination-ipv4-network": "10.77.0.1/32"},
                        "tcp": {"destination-port": {"operator": "eq", "port": port}}},
        }]}}]},
    }, indent=1).encode()


def write_mud_files(d: Path, pki: DevPki, base: str) -> None:
    """The manufacturer signs its MUD files (detached CMS, RFC 8520 13.2) with
    a certificate under its root; signed here with pyca's PKCS#7 builder."""
    d.mkdir(parents=True, exist_ok=True)
    cert = pki.cert("masa/voucher-signer.crt")
    key = serialization.load_pem_private_key(pki.files["masa/voucher-signer.key"], None)
    for name, port in (("camera", SERVICE_PORT), ("sensor", OTHER_PORT), ("broken", SERVICE_PORT)):
        data = _mud(f"{base}/{name}.json", port)
        signed = data if name != "broken" else data.replace(b"8080", b"8081")  # signature over other bytes
        sig = (pkcs7.PKCS7SignatureBuilder().set_data(signed).add_signer(cert, key, hashes.SHA256())  # type: ignore[arg-type]
               .sign(serialization.Encoding.DER, [pkcs7.PKCS7Options.DetachedSignature,
                                                  pkcs7.PKCS7Options.NoCapabilities, pkcs7.PKCS7Options.Binary]))
        (d / f"{name}.json").write_bytes(data)
        (d / f"{name}.p7s").write_bytes(sig)
    (d / "index.html").write_text("service\n")


@dataclass
class Net:
    topo: MiniTopology
    lab: Lab
    gate: Gate
    radius: RadiusServer
    edges: dict[int, Authenticator]
    root: Path
    next_pledge: int = 0

    def reach(self, i: int, port: int = 8080) -> bool:
        """Can pledge i get a page from the domain's service on ``port``?"""
        proc = subprocess.run(
            ["ip", "netns", "exec", self.topo.pledge_ns(i), "curl", "-s", "-o", "/dev/null", "-m", "5",
             "-w", "%{http_code}", f"http://{self.topo.dom_ip}:{port}/"],
            capture_output=True, text=True,
        )
        return proc.stdout == "200"

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.lab.python, "-m", "brski_cli", *args], capture_output=True, text=True, timeout=60)

    def registrar(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.cli("registrar", *args, "--config", str(self.lab.workdir / "registrar.toml"))

    def enroll(self, serial: str | None = None) -> tuple[str, Path]:
        if serial is None:
            pledge = self.lab.pledge_dirs()[self.next_pledge]
            self.next_pledge += 1
        else:
            pledge = self.lab.certs / "pledges" / serial
        out = self.root / "ldevids" / pledge.name
        proc = self.lab.enroll(pledge, out)
        assert proc.returncode == 0, proc.stderr
        return pledge.name, out

    def supplicant(self, i: int, name: str, cert: Path, key: Path) -> Supplicant:
        s = Supplicant(workdir=self.root / f"supp-{name}", namespace=self.topo.pledge_ns(i),
                       interface=self.topo.pledge_if(i), identity=name, client_cert=cert, private_key=key,
                       ca_cert=self.lab.certs / "registrar" / "domain-ca.crt")
        s.start()
        s.reauthenticate()  # no 2 s wait for the first EAPOL-Start
        return s

    def events(self, serial: str) -> list[tuple[str, str | None]]:
        return [(str(k), None if c is None else str(c)) for k, c in rows(
            self.lab.db_url("registrar"),
            "SELECT kind, check_name FROM events WHERE device_serial = ? ORDER BY id", (serial,))]


def wait(cond: object, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory, engine: str, request: pytest.FixtureRequest) -> Iterator[Net]:
    root = tmp_path_factory.mktemp("netaccess")
    topo = MiniTopology(tag=secrets.token_hex(2), pledges=2)
    topo.up()
    stack: list[object] = []
    try:
        # MASA and registrar run inside the domain namespace.
        wrapper = root / "python-in-dom"
        wrapper.write_text(f"#!/bin/sh\nexec ip netns exec {topo.dom} {sys.executable} \"$@\"\n")
        wrapper.chmod(0o755)
        masa_port, registrar_port = free_port(), free_port()
        certs = root / "certs"
        mud_base = f"https://localhost:{masa_port}/mud"
        pki = build_dev_pki(
            pledges=PLEDGES, masa_url=f"https://localhost:{masa_port}", now=datetime.now(UTC),
            # The edge's gate reaches the registrar on the domain link.
            registrar_hosts=("localhost", "127.0.0.1", topo.dom_ip),
            mud_urls={serial: f"{mud_base}/{name}.json" for serial, name in MUD_DEVICES.items()},
        )
        write_dev_pki(certs, pki, force=False)
        write_mud_files(root / "mud", pki, mud_base)
        lab = Lab(workdir=root / "run", certs=certs, masa_port=masa_port, registrar_port=registrar_port,
                  python=str(wrapper), host="0.0.0.0", **engine_databases(engine, request))
        lab.write_configs()
        with (lab.workdir / "masa.toml").open("a") as f:
            f.write(f'mud_dir = "{root / "mud"}"\n')
        netstack = NetworkAccessStack(
            workdir=root, domain_ns=topo.dom, edge_ns=topo.edge, radius_ip=topo.dom_ip, edge_ip=topo.edge_ip,
            ports=[topo.edge_port(i) for i in (1, 2)], certs=certs,
            registrar_url=f"https://localhost:{registrar_port}", registrar_http_port=lab.registrar_http_port,
            profile_url=f"https://{topo.dom_ip}:{registrar_port}/netaccess/v1/profile", gate_table="brx_gate",
        )
        with (lab.workdir / "registrar.toml").open("a") as f:
            f.write("\n" + netstack.registrar_config()
                    + 'assurance_interval_s = 0.5\ndenied_classes = ["quarantine"]\n')
        lab.import_devices()
        lab.start("masa")
        lab.start("registrar")
        stack.append(lab)
        netstack.start()
        stack.append(netstack)
        assert netstack.radius is not None and netstack.gate is not None
        radius, gate = netstack.radius, netstack.gate
        edges = {i: netstack.authenticators[topo.edge_port(i)] for i in (1, 2)}
        for port in (SERVICE_PORT, OTHER_PORT):
            stack.append(Daemon.start(f"service-{port}", topo.dom, [
                sys.executable, "-m", "http.server", "--bind", topo.dom_ip, str(port), "--directory", str(root / "mud"),
            ], root / f"service-{port}.log"))
        yield Net(topo=topo, lab=lab, gate=gate, radius=radius, edges=edges, root=root)
    finally:
        for item in reversed(stack):
            if isinstance(item, Lab):
                item.stop_all()
            else:
                item.stop()  # type: ignore[attr-defined]
        topo.down()


def test_ldevid_opens_the_port_and_revocation_closes_it(net: Net) -> None:
    serial, out = net.enroll()
    assert not net.reach(1), "the pledge port forwards before 802.1X"
    joined = join(
        workdir=net.root / f"supp-{serial}", pledge_ns=net.topo.pledge_ns(1), interface=net.topo.pledge_if(1),
        identity=serial, ldevid=out / "ldevid.crt", key=out / "ldevid.key",
        domain_ca=net.lab.certs / "registrar/domain-ca.crt", authenticator=net.edges[1], gate=net.gate,
    )
    supp = joined.supplicant
    try:
        assert joined.network_access, net.radius.daemon.tail() if net.radius.daemon else ""
        wait(lambda: net.reach(1), "the service to be reachable")
        shown = json.loads(net.registrar("devices", "show", serial).stdout)
        assert [s["mac"] for s in shown["network_sessions"]] == [joined.mac]
        assert shown["network_sessions"][0]["authenticator"] == f"edge-{net.topo.edge_port(1)}"
        # Revoke with the CLI (on the store): the running registrar's assurance
        # loop sends the Disconnect-Request to hostapd's DAS.
        def revoke() -> None:
            done = net.registrar("devices", "revoke", serial, "--reason", "keyCompromise")
            assert done.returncode == 0, done.stderr

        seconds = cut_off_after(revoke, gate=net.gate, port=net.topo.edge_port(1), mac=joined.mac)
        print(f"network access after {joined.seconds} s; cut off {seconds} s after revocation")
        assert not net.reach(1)
        wait(lambda: ("netaccess.cut-off", "netaccess.certificate-revoked") in net.events(serial), "the cut-off event")
        kinds = [k for k, _ in net.events(serial)]
        for kind in ("netaccess.decision", "netaccess.session-opened", "credential.revoked",
                     "netaccess.disconnect-requested", "netaccess.cut-off"):
            assert kind in kinds, (kind, kinds)
        # Re-authentication is refused (OCSP says revoked); a wired supplicant
        # still believes it is authorised until it tries.
        supp.reauthenticate()
        assert supp.wait_state({"FAILURE"}) == "FAILURE"
        assert not net.gate.is_open(net.topo.edge_port(1))
    finally:
        supp.stop()


# --- refusals: each one on pledge port 2, the port stays closed ------------------------


def fresh_mac(net: Net, i: int) -> str:
    """A new device on port i: after a failure the authenticator holds the
    previous MAC for 802.1X quietPeriod (60 s in hostapd)."""
    mac = "02:" + ":".join(secrets.token_hex(1) for _ in range(5))
    ns, dev = net.topo.pledge_ns(i), net.topo.pledge_if(i)
    run(ns, "ip", "link", "set", dev, "down")
    run(ns, "ip", "link", "set", dev, "address", mac)
    run(ns, "ip", "link", "set", dev, "up")
    run(ns, "ip", "route", "replace", "default", "via", f"10.78.{i}.1")
    return mac


def refused(net: Net, name: str, cert: Path, key: Path) -> None:
    # A new device on the port: after a failure the authenticator holds the
    # previous MAC for 802.1X quietPeriod (60 s in hostapd).
    mac = fresh_mac(net, 2)
    supp = net.supplicant(2, name, cert, key)
    try:
        assert net.edges[2].verdict(mac) == "failure"
        assert not net.gate.is_open(net.topo.edge_port(2), mac)
        assert not net.reach(2)
    finally:
        supp.stop()


def _write(root: Path, label: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> tuple[Path, Path]:
    root.mkdir(parents=True, exist_ok=True)
    c, k = root / f"{label}.crt", root / f"{label}.key"
    c.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    k.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    return c, k


def _leaf(subject: str, issuer: x509.Certificate | None, issuer_key: ec.EllipticCurvePrivateKey | None,
          *, not_after: datetime, ca: bool = False) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(issuer.subject if issuer else name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=30)).not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(issuer_key or key, hashes.SHA256())
    )
    return cert, key


def test_refused_idevid_instead_of_ldevid(net: Net) -> None:
    pledge = net.lab.pledge_dirs()[6]  # never enrolled by another test
    refused(net, "idevid", pledge / "idevid.crt", pledge / "idevid.key")


def test_refused_ldevid_of_another_domain_ca(net: Net) -> None:
    ca, ca_key = _leaf("another domain CA", None, None, not_after=datetime.now(UTC) + timedelta(days=365), ca=True)
    cert, key = _leaf("PLG-999999", ca, ca_key, not_after=datetime.now(UTC) + timedelta(days=30))
    refused(net, "other-ca", *_write(net.root / "other-ca", "ldevid", cert, key))


def test_refused_expired_ldevid(net: Net) -> None:
    ca = load_cert((net.lab.certs / "registrar/domain-ca.crt").read_bytes())
    ca_key = load_private_key((net.lab.certs / "registrar/domain-ca.key").read_bytes())
    cert, key = _leaf("PLG-expired", ca, ca_key, not_after=datetime.now(UTC) - timedelta(days=1))  # type: ignore[arg-type]
    refused(net, "expired", *_write(net.root / "expired", "ldevid", cert, key))


def test_refused_revoked_ldevid(net: Net) -> None:
    serial, out = net.enroll()
    assert net.registrar("devices", "revoke", serial).returncode == 0
    refused(net, serial, out / "ldevid.crt", out / "ldevid.key")


def test_refused_decommissioned_device(net: Net) -> None:
    serial, out = net.enroll()
    # Through the admin API, with curl inside the domain namespace.
    c = net.lab.certs / "registrar"
    proc = subprocess.run(
        ["ip", "netns", "exec", net.topo.dom, "curl", "-s", "-X", "POST", "--cacert", str(c / "domain-ca.crt"),
         "--cert", str(c / "admin.crt"), "--key", str(c / "admin.key"),
         f"{net.lab.registrar_url}/admin/v1/devices/{serial}/decommission"],
        capture_output=True, text=True, timeout=60,
    )
    assert json.loads(proc.stdout)["device"]["state"] == "decommissioned", proc.stdout
    refused(net, serial, out / "ldevid.crt", out / "ldevid.key")


def test_refused_by_class_policy(net: Net) -> None:
    serial, out = net.enroll()
    assert net.registrar("devices", "set-class", serial, "quarantine").returncode == 0
    refused(net, serial, out / "ldevid.crt", out / "ldevid.key")
    # OCSP said good: the registrar's decision refused it, with its rule.
    assert ("netaccess.decision", "netaccess.class-denied") in net.events(serial)


# --- MUD (RFC 8520): each device class reaches only what its MUD file allows -------------


def _join(net: Net, i: int, serial: str) -> Supplicant:
    _, out = net.enroll(serial)
    supp = net.supplicant(i, serial, out / "ldevid.crt", out / "ldevid.key")
    try:
        assert net.edges[i].verdict(net.topo.mac(i)) == "success"
        wait(lambda: net.gate.is_open(net.topo.edge_port(i)), f"port {i} to open")
    except BaseException:
        supp.stop()
        raise
    return supp


def test_two_device_classes_reach_only_what_their_mud_allows(net: Net) -> None:
    for i in (1, 2):  # fresh MACs: earlier tests may have left a port in quietPeriod
        fresh_mac(net, i)
    camera = _join(net, 1, "PLG-000008")
    try:
        sensor = _join(net, 2, "PLG-000009")
    except BaseException:
        camera.stop()
        raise
    try:
        assert net.reach(1, SERVICE_PORT) and not net.reach(1, OTHER_PORT)
        assert net.reach(2, OTHER_PORT) and not net.reach(2, SERVICE_PORT)
        shown = json.loads(net.registrar("devices", "show", "PLG-000008").stdout)
        assert shown["device_class"] == "camera" and shown["mud_url"].endswith("/mud/camera.json")
        kinds = net.events("PLG-000008")
        assert ("mud.fetched", "mud.verified") in kinds and ("netaccess.port-profile", "netaccess.mud-profile") in kinds
    finally:
        camera.stop()
        sensor.stop()


def test_invalid_mud_signature_follows_the_deny_policy(net: Net) -> None:
    _, out = net.enroll("PLG-000010")
    refused(net, "PLG-000010", out / "ldevid.crt", out / "ldevid.key")
    events = net.events("PLG-000010")
    assert ("mud.invalid", "cms.signature") in events or any(k == "mud.invalid" for k, _ in events), events
    assert ("netaccess.decision", "netaccess.mud-unavailable") in events


def test_crl_fallback_when_ocsp_is_unreachable(net: Net) -> None:
    """Last in the module: it replaces the RADIUS server. OCSP points at a
    closed port with softfail; the registrar's CRL (installed in ca_path,
    check_crl) still refuses the revoked LDevID and passes the good one."""
    revoked, revoked_out = net.enroll()
    assert net.registrar("devices", "revoke", revoked).returncode == 0
    good, good_out = net.enroll()
    crl = subprocess.run(["ip", "netns", "exec", net.topo.dom, "curl", "-sf",
                          f"http://127.0.0.1:{net.lab.registrar_http_port}/crl"], capture_output=True, timeout=30)
    assert crl.returncode == 0 and crl.stdout
    net.radius.stop()
    fallback = RadiusServer(
        workdir=net.root / "radius-crl", namespace=net.topo.dom, listen=net.topo.dom_ip, auth_port=1812,
        clients=net.radius.clients, server_cert=net.radius.server_cert, server_key=net.radius.server_key,
        domain_ca=net.radius.domain_ca, registrar_url=net.radius.registrar_url,
        ocsp_url="http://127.0.0.1:9/ocsp", ocsp_softfail=True, crl_der=crl.stdout,
    )
    fallback.start()
    try:
        refused(net, revoked, revoked_out / "ldevid.crt", revoked_out / "ldevid.key")
        mac = fresh_mac(net, 1)
        supp = net.supplicant(1, good, good_out / "ldevid.crt", good_out / "ldevid.key")
        try:
            assert net.edges[1].verdict(mac) == "success"
        finally:
            supp.stop()
        log = fallback.daemon.log.read_text() if fallback.daemon else ""
        # The CRL refused the revoked one in the TLS handshake (X509_V_ERR_CERT_REVOKED,
        # before the registrar was asked); OCSP was unreachable and soft-failed.
        assert "error 23 : certificate revoked" in log
        assert "ocsp: Unable to check certificate" in log
    finally:
        fallback.stop()
