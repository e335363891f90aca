"""mDNS/DNS-SD announcement and discovery of BRSKI services (RFC 8995 4.1, Appendix B).

A registrar announces ``_brski-registrar._tcp`` on the interfaces it is told to;
a join proxy announces ``_brski-proxy._tcp`` on its pledge-facing links; a pledge
browses for both on its own links. Everything is IPv6 only: a pledge has nothing
but a link-local address (RFC 8995 4.1: "The pledge ... uses link-local
addresses"), so each answer is qualified with the scope of the link it arrived on.

A browser runs one zeroconf instance per interface, so that it knows which link
each answer came from and can give its link-local addresses that link's scope.
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
    return AsyncZeroconf(interfaces=[_ifindex(ifname)], ip_version=IPVersion.V6Only)


@dataclass
class Announcer:
    """Announce one service instance on ``interfaces`` until :meth:`stop`.

    One responder serves all the interfaces and every answer carries the same
    addresses, whichever link asked: a responder cannot tell reliably which link
    a query came from (Linux delivers multicast to every socket bound to the
    port), so an address valid on one link only would be handed out on the
    others. Give a multi-link announcer one link-local address on all its links
    (``fe80::1``, as routers do); the lab's edge does. ``addresses`` overrides
    the default (every IPv6 address of the interfaces).
    """

    service: str
    instance: str
    port: int
    interfaces: Sequence[str]
    addresses: Sequence[str] = ()
    properties: dict[str, str] = field(default_factory=dict)
    _zc: AsyncZeroconf | None = None
    _info: AsyncServiceInfo | None = None

    def announced_addresses(self) -> list[str]:
        if self.addresses:
            return [str(ipaddress.IPv6Address(a)) for a in self.addresses]
        out: list[str] = []
        for ifname in self.interfaces:
            for addr in interface_addresses(ifname):
                if str(addr) not in out:
                    out.append(str(addr))
        return out

    async def start(self) -> None:
        host = socket.gethostname().split(".")[0] or "brski"
        addrs = self.announced_addresses()
        if not addrs:
            raise LookupError(f"interfaces {', '.join(self.interfaces)} have no IPv6 address to announce")
        link_local = [a for a in addrs if ipaddress.IPv6Address(a).is_link_local]
        if len(self.interfaces) > 1 and len(link_local) > 1:
            log.warning(
                "mdns-announce interfaces=%s have different link-local addresses %s: each link "
                "hears all of them; give them one common address (e.g. fe80::1)",
                ",".join(self.interfaces), ",".join(link_local),
            )
        self._info = AsyncServiceInfo(
            self.service,
            f"{self.instance}.{self.service}",
            port=self.port,
            properties=self.properties,
            server=f"{host}.local.",
            parsed_addresses=addrs,
        )
        self._zc = AsyncZeroconf(
            interfaces=[_ifindex(i) for i in self.interfaces], ip_version=IPVersion.V6Only
        )
        try:
            await self._zc.async_register_service(self._info, allow_name_change=True)
        except BaseException:
            await self.stop()
            raise
        log.info(
            "mdns-announce service=%s instance=%s interfaces=%s port=%d addresses=%s",
            self.service.removesuffix(".local."), self._info.name.split(".")[0],
            ",".join(self.interfaces), self.port, ",".join(addrs),
        )

    async def stop(self) -> None:
        zc, info, self._zc, self._info = self._zc, self._info, None, None
        if zc is None:
            return
        if info is not None:
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
