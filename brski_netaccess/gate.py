"""The edge's nftables port gate: a pledge port forwards nothing until
802.1X authorised it, and again nothing once it is no longer authorised.

One table per gate (``inet <table>``) holds a verdict map ``stations``
(port . MAC -> jump to that station's chain) and a forward chain that sends
traffic from a gated port through the map and rejects the rest: 802.1X
authorises a supplicant (its MAC) on a port, so a second device plugged
into an authorised port gets nothing. hostapd
tells the gate through its control interface (``hostapd_cli -a SCRIPT``):
AP-STA-CONNECTED opens the port, AP-STA-DISCONNECTED closes it (RFC 5176
Disconnect, EAPOL-Logoff, re-authentication failure).

Per-device rules (a MUD profile, RFC 8520) go in the station's chain, in
place of a plain accept.

The action script is this module: ``python -m brski_netaccess.gate
--table T --port IF [--profile-url URL --authenticator NAS-ID --cert C
--key K --ca CA] IFNAME EVENT MAC`` (hostapd_cli appends interface, event
and address). With ``--profile-url`` it asks the registrar for the
device's rules first; if that fails the port stays closed.
"""

from __future__ import annotations

import argparse
import json
import ssl
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from brski_netaccess.netns import run

__all__ = ["Gate", "main"]


class Gate:
    def __init__(self, *, namespace: str | None, table: str, ports: Sequence[str]) -> None:
        self.ns = namespace
        self.table = table
        self.ports = list(ports)

    @staticmethod
    def _chain(port: str, mac: str) -> str:
        return "sta_" + "".join(c if c.isalnum() else "_" for c in f"{port}_{mac}")

    def setup(self) -> None:
        """Create the table (replacing one of the same name): every port closed."""
        run(self.ns, "nft", "delete", "table", "inet", self.table, check=False)
        ports = ", ".join(f'"{p}"' for p in self.ports)
        rules = f"""table inet {self.table} {{
    set gated_ports {{ type ifname; elements = {{ {ports} }} }}
    map stations {{ type ifname . ether_addr : verdict; }}
    chain forward {{
        type filter hook forward priority filter; policy accept;
        iifname @gated_ports iifname . ether saddr vmap @stations
        iifname @gated_ports reject with icmpx admin-prohibited
        oifname @gated_ports ct state established,related accept
        oifname @gated_ports reject with icmpx admin-prohibited
    }}
}}
"""
        run(self.ns, "nft", "-f", "-", input=rules)

    def teardown(self) -> None:
        run(self.ns, "nft", "delete", "table", "inet", self.table, check=False)

    def open(self, port: str, mac: str, profile: str | None = None) -> None:
        """Authorise station ``mac`` on ``port`` (802.1X authorises a supplicant,
        not a cable). ``profile``: nft rule bodies (a MUD policy) that accept
        what the device may send; the rest is rejected. None: all."""
        mac = mac.lower()
        chain = f"inet {self.table} {self._chain(port, mac)}"
        lines = [f"add chain {chain}", f"flush chain {chain}", f"add rule {chain} ct state established,related accept"]
        if profile is None:
            lines.append(f"add rule {chain} accept")
        else:
            lines += [f"add rule {chain} {body}" for body in profile.splitlines() if body.strip()]
            lines.append(f"add rule {chain} reject with icmpx admin-prohibited")
        lines.append(f'add element inet {self.table} stations {{ "{port}" . {mac} : jump {self._chain(port, mac)} }}')
        run(self.ns, "nft", "-f", "-", input="\n".join(lines) + "\n")

    def close(self, port: str, mac: str) -> None:
        mac = mac.lower()
        run(self.ns, "nft", "delete", "element", "inet", self.table, "stations", f'{{ "{port}" . {mac} }}', check=False)
        run(self.ns, "nft", "delete", "chain", "inet", self.table, self._chain(port, mac), check=False)

    def is_open(self, port: str, mac: str | None = None) -> bool:
        out = run(self.ns, "nft", "-j", "list", "map", "inet", self.table, "stations")
        for item in json.loads(out).get("nftables", []):
            for elem in item.get("map", {}).get("elem", []):
                key = elem[0]["concat"] if isinstance(elem, list) else None
                if key and key[0] == port and (mac is None or key[1].lower() == mac.lower()):
                    return True
        return False


def fetch_rules(url: str, *, authenticator: str, mac: str, cert: Path, key: Path, ca: Path) -> list[str] | None:
    """Ask the registrar what the device on this port may reach (RFC 8520
    profile as nft rule bodies; None: unrestricted)."""
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.load_cert_chain(str(cert), str(key))
    query = urllib.parse.urlencode({"authenticator": authenticator, "mac": mac})
    with urllib.request.urlopen(f"{url}?{query}", context=ctx, timeout=10) as resp:
        body = json.loads(resp.read())
    rules = body.get("rules")
    if rules is not None and not (isinstance(rules, list) and all(isinstance(r, str) for r in rules)):
        raise ValueError("rules must be a list of strings or null")
    return rules


def main(argv: list[str] | None = None) -> int:
    """hostapd_cli action script: open/close the port on hostapd's events."""
    p = argparse.ArgumentParser(prog="python -m brski_netaccess.gate")
    p.add_argument("--table", required=True)
    p.add_argument("--port", required=True, help="the pledge port this hostapd guards")
    p.add_argument("--log", type=Path)
    p.add_argument("--profile-url", help="the registrar's /netaccess/v1/profile (MUD rules per device)")
    p.add_argument("--authenticator", help="this port's NAS-Identifier")
    p.add_argument("--cert", type=Path)
    p.add_argument("--key", type=Path)
    p.add_argument("--ca", type=Path)
    p.add_argument("ifname")
    p.add_argument("event")
    p.add_argument("mac", nargs="?")
    args = p.parse_args(argv)
    gate = Gate(namespace=None, table=args.table, ports=[args.port])
    record: dict[str, object] = {"at": time.time(), "event": args.event, "port": args.port, "mac": args.mac}
    if args.event == "AP-STA-CONNECTED":
        rules: list[str] | None = None
        try:
            if args.profile_url:
                rules = fetch_rules(args.profile_url, authenticator=args.authenticator, mac=args.mac,
                                    cert=args.cert, key=args.key, ca=args.ca)
            gate.open(args.port, args.mac, "\n".join(rules) if rules is not None else None)
            record["rules"] = rules
        except Exception as exc:  # fail closed: the port stays shut
            gate.close(args.port, args.mac)
            record["error"] = f"{type(exc).__name__}: {exc}"
    elif args.event == "AP-STA-DISCONNECTED":
        gate.close(args.port, args.mac)
    else:
        return 0
    if args.log:
        with args.log.open("a") as f:
            f.write(json.dumps(record) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
