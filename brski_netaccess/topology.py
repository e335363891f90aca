"""A minimal network of namespaces for 802.1X tests and demos:

    <p>-dom  (registrar, RADIUS, services)   10.77.0.1/24
        | veth
    <p>-edge (hostapd per port, nftables gate) 10.77.0.2/24, forwards
        | veth per pledge: edge side 10.78.N.1/24
    <p>-pN   (wpa_supplicant)                 10.78.N.2/24, default via the edge

Names start with the given prefix (tests use ``brx-`` + a random tag, never
the lab's ``brski-``). The network lab builds its own topology and calls the
other modules of this package with its namespace and interface names.
"""

from __future__ import annotations

from dataclasses import dataclass

from brski_netaccess.netns import run

__all__ = ["MiniTopology"]


@dataclass
class MiniTopology:
    tag: str  # short: interface names are "<tag>e<N>" (max 15 characters)
    pledges: int = 2

    @property
    def dom(self) -> str:
        return f"brx-{self.tag}-dom"

    @property
    def edge(self) -> str:
        return f"brx-{self.tag}-edge"

    def pledge_ns(self, i: int) -> str:
        return f"brx-{self.tag}-p{i}"

    def edge_port(self, i: int) -> str:
        return f"bx{self.tag}e{i}"

    def pledge_if(self, i: int) -> str:
        return f"bx{self.tag}p{i}"

    dom_ip = "10.77.0.1"
    edge_ip = "10.77.0.2"

    def pledge_ip(self, i: int) -> str:
        return f"10.78.{i}.2"

    def up(self) -> None:
        self.down()
        for ns in (self.dom, self.edge, *(self.pledge_ns(i) for i in range(1, self.pledges + 1))):
            run(None, "ip", "netns", "add", ns)
            run(ns, "ip", "link", "set", "lo", "up")
        d, e = f"bx{self.tag}d0", f"bx{self.tag}u0"
        run(None, "ip", "link", "add", d, "netns", self.dom, "type", "veth", "peer", "name", e, "netns", self.edge)
        run(self.dom, "ip", "addr", "add", f"{self.dom_ip}/24", "dev", d)
        run(self.dom, "ip", "link", "set", d, "up")
        run(self.dom, "ip", "route", "add", "10.78.0.0/16", "via", self.edge_ip)
        run(self.edge, "ip", "addr", "add", f"{self.edge_ip}/24", "dev", e)
        run(self.edge, "ip", "link", "set", e, "up")
        run(self.edge, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        for i in range(1, self.pledges + 1):
            port, pif, ns = self.edge_port(i), self.pledge_if(i), self.pledge_ns(i)
            run(None, "ip", "link", "add", port, "netns", self.edge, "type", "veth", "peer", "name", pif, "netns", ns)
            run(self.edge, "ip", "addr", "add", f"10.78.{i}.1/24", "dev", port)
            run(self.edge, "ip", "link", "set", port, "up")
            run(ns, "ip", "addr", "add", f"{self.pledge_ip(i)}/24", "dev", pif)
            run(ns, "ip", "link", "set", pif, "up")
            run(ns, "ip", "route", "add", "default", "via", f"10.78.{i}.1")

    def down(self) -> None:
        """Idempotent: deleting a namespace removes its veths (and their peers)."""
        for ns in (self.dom, self.edge, *(self.pledge_ns(i) for i in range(1, self.pledges + 1))):
            run(None, "ip", "netns", "del", ns, check=False)

    def mac(self, i: int) -> str:
        return run(self.pledge_ns(i), "cat", f"/sys/class/net/{self.pledge_if(i)}/address").strip()
