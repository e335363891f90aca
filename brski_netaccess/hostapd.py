"""hostapd (Debian ``hostapd`` 2.10) as the IEEE 802.1X authenticator of one
wired pledge port, with its RFC 5176 Dynamic Authorization Server.

``driver=wired`` + ``ieee8021x=1`` + ``use_pae_group_addr=1`` (EAPOL to the
PAE group address, 802.1X-2010 11.1.1, which a veth or a switch port passes),
``eap_server=0`` (EAP goes to RADIUS). Each port has its own hostapd and its
own DAS UDP port: hostapd binds its DAS to the wildcard address, so two
instances in one namespace cannot share 3799 (tell the registrar with
``network_access.das_endpoints``). The DAS requires Event-Timestamp and
Message-Authenticator, and only answers ``das_client`` (IPv4 only in 2.10).

``hostapd_cli -a`` runs :mod:`brski_netaccess.gate` on AP-STA-CONNECTED /
AP-STA-DISCONNECTED to open and close the port in nftables.
"""

from __future__ import annotations

import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from brski_netaccess.netns import Daemon, NetnsError, ctrl_dir

__all__ = ["Authenticator"]


@dataclass(kw_only=True)
class Authenticator:
    workdir: Path
    namespace: str | None
    port: str  # the pledge-facing interface
    nas_identifier: str
    own_ip: str  # NAS-IP-Address (IPv4), where the DAS is reached
    radius_server: str
    radius_port: int
    radius_secret: str
    das_port: int
    das_client: str  # the registrar's IPv4 address as the edge sees it
    das_secret: str
    gate_table: str
    # The registrar's /netaccess/v1/profile and the edge's client credentials:
    # the gate asks it for the device's MUD rules when the port is authorised.
    profile_url: str | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    registrar_ca: Path | None = None
    python: str = sys.executable
    hostapd: Daemon | None = field(default=None, init=False)
    events: Daemon | None = field(default=None, init=False)

    @property
    def ctrl_dir(self) -> Path:
        return ctrl_dir(self.workdir)

    @property
    def event_log(self) -> Path:
        return self.workdir / "gate-events.jsonl"

    def write(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "hostapd.conf"
        conf.write_text(
            "\n".join([
                f"interface={self.port}",
                "driver=wired",
                f"ctrl_interface={self.ctrl_dir}",
                "logger_stdout=-1",
                "logger_stdout_level=1",
                "ieee8021x=1",
                "eapol_version=2",
                "use_pae_group_addr=1",
                "eap_server=0",
                "eap_reauth_period=0",
                f"nas_identifier={self.nas_identifier}",
                f"own_ip_addr={self.own_ip}",
                f"auth_server_addr={self.radius_server}",
                f"auth_server_port={self.radius_port}",
                f"auth_server_shared_secret={self.radius_secret}",
                f"acct_server_addr={self.radius_server}",
                f"acct_server_port={self.radius_port + 1}",
                f"acct_server_shared_secret={self.radius_secret}",
                # RFC 5176 DAS: only the registrar, replay-protected.
                f"radius_das_port={self.das_port}",
                f"radius_das_client={self.das_client} {self.das_secret}",
                "radius_das_time_window=300",
                "radius_das_require_event_timestamp=1",
                "radius_das_require_message_authenticator=1",
                "",
            ])
        )
        action = self.workdir / "gate-action.sh"
        argv = [self.python, "-m", "brski_netaccess.gate", "--table", self.gate_table, "--port", self.port,
                "--log", str(self.event_log)]
        if self.profile_url is not None:
            argv += ["--profile-url", self.profile_url, "--authenticator", self.nas_identifier,
                     "--cert", str(self.client_cert), "--key", str(self.client_key), "--ca", str(self.registrar_ca)]
        action.write_text(f"#!/bin/sh\nexec {shlex.join(argv)} \"$@\"\n")
        action.chmod(0o755)
        return conf

    def start(self) -> None:
        conf = self.write()
        self.hostapd = Daemon.start(f"hostapd[{self.port}]", self.namespace, ["hostapd", "-t", str(conf)],
                                    self.workdir / "hostapd.log")
        self.hostapd.wait_for("ENABLED", timeout=20)
        sock = self.ctrl_dir / self.port
        deadline = time.monotonic() + 10
        while not sock.exists():
            if time.monotonic() > deadline:
                raise NetnsError(f"hostapd control socket {sock} did not appear")
            time.sleep(0.05)
        self.events = Daemon.start(
            f"hostapd_cli[{self.port}]", self.namespace,
            ["hostapd_cli", "-p", str(self.ctrl_dir), "-i", self.port, "-a", str(self.workdir / "gate-action.sh")],
            self.workdir / "hostapd_cli.log",
        )
        time.sleep(0.2)  # hostapd_cli attaches to the control socket

    def verdict(self, mac: str, timeout: float = 30.0) -> str:
        """"success" or "failure": how the authenticator ended the station's
        last authentication (its log; a wired supplicant does not always see
        the EAP-Failure that follows a TLS alert)."""
        deadline = time.monotonic() + timeout
        mac = mac.lower()
        assert self.hostapd is not None
        while time.monotonic() < deadline:
            for line in reversed(self.hostapd.log.read_text(errors="replace").splitlines()):
                if mac in line.lower():
                    if "CTRL-EVENT-EAP-FAILURE" in line or "authentication failed" in line:
                        return "failure"
                    if "AP-STA-CONNECTED" in line or ("authorizing port" in line and "unauthorizing" not in line):
                        return "success"
            time.sleep(0.1)
        raise NetnsError(f"no 802.1X verdict for {mac} within {timeout} s:\n{self.hostapd.tail()}")

    def stop(self) -> None:
        for d in (self.events, self.hostapd):
            if d is not None:
                d.stop()
