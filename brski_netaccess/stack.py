"""Everything on the network side of 802.1X, started in one call: FreeRADIUS in
the domain namespace, the nftables gate and one hostapd per pledge port in
the edge namespace. The network lab (or a test) passes its names; this
module decides nothing about topology.

    stack = NetworkAccessStack(
        workdir=Path("var/netaccess"), domain_ns="brski-domain", edge_ns="brski-edge",
        radius_ip="fd00:d::1" or "10.77.0.1", edge_ip="10.77.0.2",
        ports=["brski-e1", "brski-e2"], certs=Path("certs/dev"),
        registrar_url="https://localhost:8444", registrar_http_port=8445,
        profile_url="https://10.77.0.1:8444/netaccess/v1/profile",
    )
    stack.start()        # ... stack.das_endpoints() goes into the registrar's config
    stack.stop()

hostapd's RADIUS client and DAS are IPv4 here (its DAS is IPv4 only), so
``radius_ip``/``edge_ip`` are the IPv4 addresses of the edge-domain link.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path

from brski_netaccess.freeradius import RadiusClient, RadiusServer
from brski_netaccess.gate import Gate
from brski_netaccess.hostapd import Authenticator

__all__ = ["NetworkAccessStack"]


@dataclass(kw_only=True)
class NetworkAccessStack:
    workdir: Path
    domain_ns: str | None
    edge_ns: str | None
    radius_ip: str  # FreeRADIUS listens here (domain side), and the registrar sends DAS requests from here
    edge_ip: str  # NAS-IP-Address of every hostapd
    ports: list[str]  # pledge-facing interfaces in the edge namespace
    certs: Path  # the dev PKI directory (registrar/radius.*, registrar/domain-ca.crt)
    registrar_url: str  # as FreeRADIUS reaches it (same namespace: https://localhost:PORT)
    registrar_http_port: int  # the registrar's plain-HTTP CRL/OCSP listener
    profile_url: str | None = None  # /netaccess/v1/profile as the edge reaches it (MUD rules)
    # The registrar's OCSP responder as FreeRADIUS reaches it (default: same
    # namespace, http://127.0.0.1:registrar_http_port/ocsp).
    ocsp_url: str | None = None
    radius_port: int = 1812
    das_base_port: int = 3800  # port i (from 0) has its DAS on das_base_port + i
    gate_table: str = "brski_gate"
    radius_secret: str = field(default_factory=lambda: secrets.token_hex(16))
    das_secret: str = field(default_factory=lambda: secrets.token_hex(16))
    crl_der: bytes | None = None
    radius: RadiusServer | None = field(default=None, init=False)
    gate: Gate | None = field(default=None, init=False)
    authenticators: dict[str, Authenticator] = field(default_factory=dict, init=False)

    def nas_identifier(self, port: str) -> str:
        return f"edge-{port}"

    def das_endpoints(self) -> dict[str, str]:
        """``network_access.das_endpoints`` for the registrar's config."""
        return {self.nas_identifier(p): f"{self.edge_ip}:{self.das_base_port + i}" for i, p in enumerate(self.ports)}

    def registrar_config(self, *, radius_subject: str = "CN=radius,O=brski dev domain") -> str:
        """The ``[registrar.network_access]`` TOML table that matches this stack."""
        endpoints = ", ".join(f'"{k}" = "{v}"' for k, v in self.das_endpoints().items())
        return (
            "[registrar.network_access]\n"
            f'radius_subjects = ["{radius_subject}"]\n'
            f'das_secret = "{self.das_secret}"\n'
            f"das_endpoints = {{ {endpoints} }}\n"
        )

    def start(self) -> None:
        c = self.certs
        self.radius = RadiusServer(
            workdir=self.workdir / "radius", namespace=self.domain_ns, listen=self.radius_ip,
            auth_port=self.radius_port,
            clients=[RadiusClient(name="edge", address=self.edge_ip, secret=self.radius_secret)],
            server_cert=c / "registrar/radius.crt", server_key=c / "registrar/radius.key",
            domain_ca=c / "registrar/domain-ca.crt", registrar_url=self.registrar_url,
            ocsp_url=self.ocsp_url or f"http://127.0.0.1:{self.registrar_http_port}/ocsp", crl_der=self.crl_der,
        )
        self.radius.start()
        self.gate = Gate(namespace=self.edge_ns, table=self.gate_table, ports=self.ports)
        self.gate.setup()
        for i, port in enumerate(self.ports):
            a = Authenticator(
                workdir=self.workdir / f"edge-{port}", namespace=self.edge_ns, port=port,
                nas_identifier=self.nas_identifier(port), own_ip=self.edge_ip, radius_server=self.radius_ip,
                radius_port=self.radius_port, radius_secret=self.radius_secret, das_port=self.das_base_port + i,
                das_client=self.radius_ip, das_secret=self.das_secret, gate_table=self.gate_table,
                profile_url=self.profile_url, client_cert=c / "registrar/radius.crt",
                client_key=c / "registrar/radius.key", registrar_ca=c / "registrar/domain-ca.crt",
            )
            a.start()
            self.authenticators[port] = a

    def stop(self) -> None:
        """Idempotent; leaves no process and no nftables table behind."""
        for a in self.authenticators.values():
            a.stop()
        self.authenticators.clear()
        if self.gate is not None:
            self.gate.teardown()
        if self.radius is not None:
            self.radius.stop()
