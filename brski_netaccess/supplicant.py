"""wpa_supplicant (Debian ``wpasupplicant`` 2.10) on a wired pledge link,
authenticating with the device's LDevID (EAP-TLS, RFC 5216).

``-Dwired``, ``ap_scan=0``, ``eapol_flags=0``. wpa_supplicant waits about
2 s before its first EAPOL-Start; :meth:`Supplicant.reauthenticate` (``wpa_cli
reauthenticate``) starts at once. A wired supplicant is not told about an
RFC 5176 Disconnect: it stays "AUTHORIZED" while the edge has closed the port.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from brski_netaccess.netns import Daemon, ctrl_dir, run

__all__ = ["Supplicant"]


@dataclass(kw_only=True)
class Supplicant:
    workdir: Path
    namespace: str | None
    interface: str
    identity: str
    client_cert: Path
    private_key: Path
    ca_cert: Path  # the domain CA: verifies the RADIUS server's certificate
    daemon: Daemon | None = field(default=None, init=False)

    @property
    def ctrl_dir(self) -> Path:
        return ctrl_dir(self.workdir)

    def write(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "wpa_supplicant.conf"
        conf.write_text(
            f"ctrl_interface={self.ctrl_dir}\nap_scan=0\neapol_version=2\n"
            "network={\n\tkey_mgmt=IEEE8021X\n\teap=TLS\n"
            f'\tidentity="{self.identity}"\n\tca_cert="{self.ca_cert}"\n'
            f'\tclient_cert="{self.client_cert}"\n\tprivate_key="{self.private_key}"\n'
            "\teapol_flags=0\n}\n"
        )
        return conf

    def start(self) -> None:
        conf = self.write()
        self.daemon = Daemon.start(
            f"wpa_supplicant[{self.interface}]", self.namespace,
            ["wpa_supplicant", "-Dwired", "-i", self.interface, "-c", str(conf), "-t"],
            self.workdir / "wpa_supplicant.log",
        )
        deadline = time.monotonic() + 10
        while not (self.ctrl_dir / self.interface).exists():
            if time.monotonic() > deadline or self.daemon.popen.poll() is not None:
                raise RuntimeError(f"wpa_supplicant did not start:\n{self.daemon.tail()}")
            time.sleep(0.05)

    def cli(self, *args: str) -> str:
        return run(self.namespace, "wpa_cli", "-p", str(self.ctrl_dir), "-i", self.interface, *args)

    def reauthenticate(self) -> None:
        """Start EAP now (an EAPOL-Start), once the wired port is up ("associated")."""
        if self.daemon is not None:
            self.daemon.wait_for("Associated with", timeout=10)
        self.cli("reauthenticate")

    def status(self) -> dict[str, str]:
        out = self.cli("status")
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def wait_state(self, states: set[str], timeout: float = 30.0) -> str:
        """Until the EAP state machine is in one of ``states`` (e.g. SUCCESS, FAILURE)."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            last = self.status().get("EAP state", "")
            if last in states:
                return last
            time.sleep(0.1)
        raise TimeoutError(f"EAP state {last!r}, wanted {sorted(states)}:\n{self.daemon.tail() if self.daemon else ''}")

    def stop(self) -> None:
        if self.daemon is not None:
            self.daemon.stop()
