"""What the lab is made of, as data: namespaces, links, addresses, who runs where.

::

    pledge1 eth0 ─veth─ pl1 ┐
    pledge2 eth0 ─veth─ pl2 ├ edge (join proxy; nftables) dom0 ─veth─ eth0 domain (registrar)
    ...                     ┘                             ven0 ─veth─ eth0 vendor (MASA)

Pledge links are link-local only (RFC 8995 4.1): the pledge has its kernel's
fe80:: address and no route off its link; the edge has ``fe80::1`` on every
pledge port (one announcement serves all of them, see brski_net.mdns.Announcer).
The edge routes between ``domain`` and ``vendor`` (ULA prefixes) and forwards
nothing from a pledge port: its only service there is the join proxy.

Network access (802.1X with the LDevID, :mod:`brski_cli.netlab.access`) adds
IPv4 on the edge-domain link for RADIUS and RFC 5176 (hostapd's DAS listens on
IPv4 only), and an operational prefix per pledge port (``fd00:b5c1:1NN::/64``,
the edge ``::1``, the pledge ``::2``), configured on both ends only once the
pledge has joined: the stand-in for DHCPv6/SLAAC on the operational network
(before that a pledge port has link-local addresses only, also in what
anything on the edge announces there). :meth:`Topology.pledge_ports`
lists each port with both ends' namespaces and interface names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["EDGE_PLEDGE_ADDRESS", "Link", "PledgePort", "Topology"]

EDGE_PLEDGE_ADDRESS = "fe80::1"
ULA = "fd00:b5c1"  # the lab's unique local prefix (RFC 4193), /48
# The edge-domain link's IPv4 (TEST-NET-1, RFC 5737): RADIUS and the DAS only.
EDGE_IPV4, DOMAIN_IPV4 = "192.0.2.1", "192.0.2.2"


@dataclass(frozen=True, kw_only=True)
class Link:
    """A veth pair: ``a_ns``/``a_if`` <-> ``b_ns``/``b_if`` with static addresses
    (CIDR strings; a side with none keeps only its kernel link-local address)."""

    a_ns: str
    a_if: str
    b_ns: str
    b_if: str
    a_addrs: tuple[str, ...] = ()
    b_addrs: tuple[str, ...] = ()
    # The edge side of a pledge link: no kernel link-local, fe80::1 instead.
    a_no_auto_ll: bool = False


@dataclass(frozen=True, kw_only=True)
class PledgePort:
    index: int
    pledge_ns: str
    pledge_if: str
    edge_if: str


@dataclass(frozen=True, kw_only=True)
class Topology:
    prefix: str = "brski-"
    pledges: int = 3
    proxy_port: int = 8443
    registrar_port: int = 8443
    registrar_http_port: int = 8080
    masa_port: int = 8443
    # A plain HTTP service in ``domain`` that a pledge reaches only with network access.
    service_port: int = 8000
    # Pledge ports (1-based) the join proxy does not announce on: a link where a
    # pledge hears only what a test announces there.
    quiet_ports: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not re.fullmatch(r"brski-[a-z0-9-]*", self.prefix):
            raise ValueError(f"prefix {self.prefix!r} must start with 'brski-' (lowercase, digits, '-')")
        if not 1 <= self.pledges <= 200:
            raise ValueError("pledges must be 1..200")

    # --- names -----------------------------------------------------------------

    @property
    def edge(self) -> str:
        return f"{self.prefix}edge"

    @property
    def domain(self) -> str:
        return f"{self.prefix}domain"

    @property
    def vendor(self) -> str:
        return f"{self.prefix}vendor"

    def pledge_ns(self, i: int) -> str:
        return f"{self.prefix}pledge{i}"

    def namespaces(self) -> list[str]:
        return [self.edge, self.domain, self.vendor, *(self.pledge_ns(i) for i in range(1, self.pledges + 1))]

    def owns(self, netns: str) -> bool:
        """Whether ``netns`` is one this lab (this prefix) creates, whatever its size."""
        return re.fullmatch(re.escape(self.prefix) + r"(edge|domain|vendor|pledge\d+)", netns) is not None

    # --- addresses ---------------------------------------------------------------

    @property
    def domain_address(self) -> str:
        return f"{ULA}:d::2"

    @property
    def vendor_address(self) -> str:
        return f"{ULA}:f::2"

    @property
    def edge_ipv4(self) -> str:
        return EDGE_IPV4

    @property
    def domain_ipv4(self) -> str:
        return DOMAIN_IPV4

    def operational_address(self, i: int, *, edge: bool = False) -> str:
        """Pledge ``i``'s address on the operational network (edge side: the gateway)."""
        return f"{ULA}:{0x100 + i:x}::{1 if edge else 2}"

    @property
    def proxy_addresses(self) -> tuple[str, ...]:
        """The edge's addresses as the registrar sees them (its ``proxy_addresses``)."""
        return (f"{ULA}:d::1", EDGE_PLEDGE_ADDRESS)

    def pledge_ports(self) -> list[PledgePort]:
        return [
            PledgePort(index=i, pledge_ns=self.pledge_ns(i), pledge_if="eth0", edge_if=f"pl{i}")
            for i in range(1, self.pledges + 1)
        ]

    def announced_ports(self) -> list[PledgePort]:
        return [p for p in self.pledge_ports() if p.index not in self.quiet_ports]

    def links(self) -> list[Link]:
        out = [
            # fe80::1 on dom0 too: the registrar can be told the proxy's addresses exactly.
            Link(a_ns=self.edge, a_if="dom0", b_ns=self.domain, b_if="eth0",
                 a_addrs=(f"{EDGE_PLEDGE_ADDRESS}/64", f"{ULA}:d::1/64", f"{EDGE_IPV4}/24"),
                 b_addrs=(f"{self.domain_address}/64", f"{DOMAIN_IPV4}/24"),
                 a_no_auto_ll=True),
            Link(a_ns=self.edge, a_if="ven0", b_ns=self.vendor, b_if="eth0",
                 a_addrs=(f"{ULA}:f::1/64",), b_addrs=(f"{self.vendor_address}/64",)),
        ]
        out += [
            Link(a_ns=self.edge, a_if=p.edge_if, b_ns=p.pledge_ns, b_if=p.pledge_if,
                 a_addrs=(f"{EDGE_PLEDGE_ADDRESS}/64",), a_no_auto_ll=True)
            for p in self.pledge_ports()
        ]
        return out

    def routes(self) -> dict[str, list[str]]:
        """``ip -6 route add`` arguments per namespace (pledges get none)."""
        return {
            self.domain: [f"::/0 via {ULA}:d::1 dev eth0"],
            self.vendor: [f"::/0 via {ULA}:f::1 dev eth0"],
        }

    def edge_nftables(self) -> str:
        """The edge's ruleset: route domain <-> vendor, nothing from a pledge port.

        ``dot1x_ports`` is empty: a port added there is handed to the 802.1X
        gate (:mod:`brski_netaccess.gate`, a table of its own), which forwards
        from it only what an authorised station may send; this table then
        no longer drops it.
        """
        return f"""
table inet brski_lab {{
    set dot1x_ports {{ type ifname; }}
    chain forward {{
        type filter hook forward priority filter; policy drop;
        ct state established,related accept
        iifname {{ "dom0", "ven0" }} oifname {{ "dom0", "ven0" }} accept
        iifname @dot1x_ports accept comment "decided by the 802.1X gate"
        iifname "pl*" counter drop comment "pledge ports forward nothing by default"
    }}
    chain input {{
        type filter hook input priority filter; policy accept;
        iifname != "pl*" accept
        ct state established,related accept
        meta l4proto ipv6-icmp accept
        udp dport 5353 accept comment "mDNS (RFC 6762)"
        tcp dport {self.proxy_port} accept comment "join proxy (RFC 8995 4.3)"
        counter drop
    }}
}}
"""
