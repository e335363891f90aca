"""mDNS/DNS-SD announcement and discovery of BRSKI services (RFC 8995 4.1, Appendix B).

A registrar announces ``_brski-registrar._tcp`` on the interfaces it is told to;
a join proxy announces ``_brski-proxy._tcp`` on its pledge-facing links; a pledge
browses for both on its own links. Everything is IPv6 only: a pledge has nothing
but a link-local address (RFC 8995 4.1: "The pledge ... uses link-local
addresses"), so each answer is qualified with the scope of the link it arrived on.

Both sides run one zeroconf instance per interface, bound to it: an announcer
speaks on each link with that link's addresses, a browser knows which link each
answer came from and gives its link-local addresses that link's scope.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import ifaddr
from zeroconf import IPVersion, ServiceStateChange
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

__all__ = [
    "SERVICE_PROXY",
    "SERVICE_REGISTRAR",
    "Announcer",
    "Candidate",
    "browse",
    "interface_addresses",
    "link_local_interfaces",
]

SERVICE_REGISTRAR = "_brski-registrar._tcp.local."
SERVICE_PROXY = "_brski-proxy._tcp.local."
KIND = {SERVICE_PROXY: "proxy", SERVICE_REGISTRAR: "registrar"}

log = logging.getLogger("brski.mdns")


def interface_addresses(name: str) -> list[ipaddress.IPv6Address]:
    """The IPv6 addresses of interface ``name``, link-local first (no scope)."""
    for adapter in ifaddr.get_adapters():
        if adapter.nice_name == name or adapter.name == name:
            addrs = [
                ipaddress.IPv6Address(ip.ip[0])
                for ip in adapter.ips
                if isinstance(ip.ip, tuple)
            ]
            return sorted(addrs, key=lambda a: (not a.is_link_local, str(a)))
    raise LookupError(f"no interface named {name!r}")


def link_local_interfaces() -> list[str]:
    """Interfaces with an IPv6 link-local address, loopback excluded (a pledge's
    default: every link it is attached to)."""
    names = []
    for adapter in ifaddr.get_adapters():
        if adapter.nice_name == "lo":
            continue
        if any(isinstance(ip.ip, tuple) and ipaddress.IPv6Address(ip.ip[0]).is_link_local for ip in adapter.ips):
            names.append(adapter.nice_name)
    return sorted(names)


def _ifindex(name: str) -> int:
    try:
        return socket.if_nametoindex(name)
    except OSError as exc:
        raise LookupError(f"no interface named {name!r}") from exc


def _zeroconf(ifname: str) -> AsyncZeroconf:
    """A zeroconf instance that hears and speaks on ``ifname`` only.

    python-zeroconf reads the mDNS port on a socket bound to ``::`` and Linux
    delivers a group's packets to it whatever link they arrived on, as soon as
    any socket in the namespace joined the group on that link
    (``inet6_mc_check`` compares the group, not the interface). A join proxy
    would then answer pledges on links it was not told to serve, with addresses
    of another link. Binding every socket of the instance to the interface
    (SO_BINDTODEVICE) keeps each link's conversation on that link.
    """
    zc = AsyncZeroconf(interfaces=[_ifindex(ifname)], ip_version=IPVersion.V6Only)
    engine = zc.zeroconf.engine
    for sock in {engine._listen_socket, *engine._respond_sockets}:
        if sock is None:
            continue
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, ifname.encode())
        except OSError as exc:  # not permitted: still works, but may hear other links
            log.warning("mdns-bind-to-device interface=%s error=%r", ifname, exc)
    return zc


@dataclass
class Announcer:
    """Announce one service instance on each of ``interfaces`` until :meth:`stop`.

    One responder per interface, bound to it: each link hears the service with
    that link's own addresses (``addresses`` overrides them, e.g. ``fe80::1``
    on every pledge port of the lab's edge).
    """

    service: str
    instance: str
    port: int
    interfaces: Sequence[str]
    addresses: Sequence[str] = ()
    # DNS-SD SRV priority (lower is tried first) and weight (RFC 2782).
    priority: int = 0
    weight: int = 0
    properties: dict[str, str] = field(default_factory=dict)
    _running: list[tuple[AsyncZeroconf, AsyncServiceInfo]] = field(default_factory=list)

    def announced_addresses(self, ifname: str) -> list[str]:
        if self.addresses:
            return [str(ipaddress.IPv6Address(a)) for a in self.addresses]
        return [str(a) for a in interface_addresses(ifname)]

    async def start(self) -> None:
        host = socket.gethostname().split(".")[0] or "brski"
        try:
            for ifname in self.interfaces:
                addrs = self.announced_addresses(ifname)
                if not addrs:
                    raise LookupError(f"interface {ifname!r} has no IPv6 address to announce")
                info = AsyncServiceInfo(
                    self.service,
                    f"{self.instance}.{self.service}",
                    port=self.port,
                    priority=self.priority,
                    weight=self.weight,
                    properties=self.properties,
                    server=f"{host}.local.",
                    parsed_addresses=addrs,
                )
                zc = _zeroconf(ifname)
                self._running.append((zc, info))
                await zc.async_register_service(info, allow_name_change=True)
                log.info(
                    "mdns-announce service=%s instance=%s interface=%s port=%d priority=%d addresses=%s",
                    self.service.removesuffix(".local."), info.name.split(".")[0], ifname, self.port,
                    self.priority, ",".join(addrs),
                )
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        running, self._running = self._running, []
        for zc, info in running:
            with contextlib.suppress(Exception):
                await zc.async_unregister_service(info)
            with contextlib.suppress(Exception):
                await zc.async_close()


@dataclass(frozen=True, kw_only=True)
class Candidate:
    """A service instance found by browsing, one address of it."""

    kind: str  # "proxy" | "registrar"
    name: str
    interface: str
    address: str  # with %scope for link-local
    port: int
    priority: int = 0
    weight: int = 0

    @property
    def url(self) -> str:
        host = self.address.replace("%", "%25")
        return f"https://[{host}]:{self.port}"

    def sort_key(self) -> tuple[int, int, int, int, str]:
        # RFC 8995 4.1 / B: proxies on the pledge's link first; then DNS-SD's SRV
        # priority (lower first) and weight (higher first); link-local before others.
        link_local = ipaddress.IPv6Address(self.address.split("%")[0]).is_link_local
        return (0 if self.kind == "proxy" else 1, self.priority, -self.weight, 0 if link_local else 1, self.name)


def _scoped(address: str, ifname: str) -> str:
    """Give a link-local address the scope of the link it was learned on."""
    bare = address.split("%")[0]
    if ipaddress.IPv6Address(bare).is_link_local:
        return f"{bare}%{ifname}"
    return bare


async def _browse_one(
    ifname: str, services: Sequence[str], *, timeout: float, settle: float, resolve_timeout: float
) -> list[Candidate]:
    found: dict[tuple[str, str], None] = {}
    first = asyncio.Event()

    def on_change(zeroconf: object, service_type: str, name: str, state_change: ServiceStateChange) -> None:
        if state_change is not ServiceStateChange.Removed:
            found[(service_type, name)] = None
            first.set()

    zc = _zeroconf(ifname)
    browser = AsyncServiceBrowser(zc.zeroconf, list(services), handlers=[on_change])
    out: list[Candidate] = []
    try:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await first.wait()
                # Other announcers answer the same query within milliseconds: give them `settle`.
                await asyncio.sleep(settle)
        for service_type, name in list(found):
            info = AsyncServiceInfo(service_type, name)
            if not await info.async_request(zc.zeroconf, int(resolve_timeout * 1000)):
                log.info("mdns-unresolved name=%s interface=%s", name, ifname)
                continue
            if info.port is None:
                continue
            for address in info.parsed_addresses(IPVersion.V6Only):
                out.append(
                    Candidate(
                        kind=KIND[service_type],
                        name=name.removesuffix("." + service_type),
                        interface=ifname,
                        address=_scoped(address, ifname),
                        port=info.port,
                        priority=info.priority,
                        weight=info.weight,
                    )
                )
    finally:
        await browser.async_cancel()
        await zc.async_close()
    return out


async def browse(
    interfaces: Iterable[str],
    *,
    services: Sequence[str] = (SERVICE_PROXY, SERVICE_REGISTRAR),
    timeout: float = 5.0,
    settle: float = 0.5,
    resolve_timeout: float = 2.0,
) -> list[Candidate]:
    """Browse ``services`` on each interface for at most ``timeout`` seconds (less once
    something answered), resolve what was found and return it in the order a pledge
    should try it (:meth:`Candidate.sort_key`). Duplicates are dropped."""
    names = list(interfaces)
    results = await asyncio.gather(
        *(_browse_one(i, services, timeout=timeout, settle=settle, resolve_timeout=resolve_timeout) for i in names)
    )
    seen: set[tuple[str, str, int]] = set()
    unique: list[Candidate] = []
    for cand in sorted((c for r in results for c in r), key=Candidate.sort_key):
        key = (cand.kind, cand.address, cand.port)
        if key not in seen:
            seen.add(key)
            unique.append(cand)
    return unique
