"""What ``brski lab demo`` reports per pledge about network access:

* ``network_access``: the pledge, with its LDevID, passed 802.1X and its
  port opened (:func:`join`);
* ``cut_off_after_revoke_s``: seconds from a revocation until the edge
  closed the station's port (:func:`cut_off_after`).

Both read only the real components' state (hostapd's verdict, the nftables
gate), never the registrar's own claims.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from brski_netaccess.gate import Gate
from brski_netaccess.hostapd import Authenticator
from brski_netaccess.netns import run
from brski_netaccess.supplicant import Supplicant

__all__ = ["JoinResult", "cut_off_after", "join"]


@dataclass(frozen=True, kw_only=True)
class JoinResult:
    network_access: bool
    seconds: float
    supplicant: Supplicant
    mac: str


def join(
    *,
    workdir: Path,
    pledge_ns: str,
    interface: str,
    identity: str,
    ldevid: Path,
    key: Path,
    domain_ca: Path,
    authenticator: Authenticator,
    gate: Gate,
    timeout: float = 30.0,
) -> JoinResult:
    """Start wpa_supplicant with the LDevID, authenticate at once, and wait
    for the authenticator's verdict and (on success) the open port."""
    mac = run(pledge_ns, "cat", f"/sys/class/net/{interface}/address").strip()
    supp = Supplicant(workdir=workdir, namespace=pledge_ns, interface=interface, identity=identity,
                      client_cert=ldevid, private_key=key, ca_cert=domain_ca)
    start = time.monotonic()
    try:
        supp.start()
        supp.reauthenticate()
        ok = authenticator.verdict(mac, timeout=timeout) == "success"
        deadline = time.monotonic() + timeout
        while ok and not gate.is_open(authenticator.port, mac):
            if time.monotonic() > deadline:
                ok = False
            time.sleep(0.05)
    except BaseException:
        supp.stop()  # the caller gets no handle to stop it with
        raise
    return JoinResult(network_access=ok, seconds=round(time.monotonic() - start, 3), supplicant=supp, mac=mac)


def cut_off_after(revoke: Callable[[], None], *, gate: Gate, port: str, mac: str, timeout: float = 60.0) -> float:
    """Run ``revoke`` (CLI or admin API) and return the seconds until the
    gate no longer lets ``mac`` through ``port``."""
    start = time.monotonic()
    revoke()
    while gate.is_open(port, mac):
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"{mac} on {port} still open {timeout} s after revocation")
        time.sleep(0.05)
    return round(time.monotonic() - start, 3)
