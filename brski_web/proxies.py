"""Which connections came through a join proxy (RFC 8995 4.3).

A circuit proxy relays the pledge's TCP stream, so the registrar sees the
proxy's address, not the pledge's. The registrar cannot learn the pledge's
address from the connection and must not pretend to: its logs and refusal
events say ``via=proxy`` when the peer is one of the operator's configured
proxies, and nothing a registrar decides depends on the source address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from aiohttp import web

from brski.errors import ConfigError

__all__ = ["PROXY_NETWORKS", "ProxyNetworks", "parse_proxy_addresses", "request_via", "via_proxy"]

ProxyNetworks = tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
PROXY_NETWORKS: web.AppKey[ProxyNetworks] = web.AppKey("proxy_networks", tuple)


def parse_proxy_addresses(values: Iterable[object]) -> ProxyNetworks:
    """Addresses or networks (``fd00::1``, ``fd00:1::/64``, ``192.0.2.7``)."""
    out = []
    for value in values:
        try:
            out.append(ipaddress.ip_network(str(value).split("%")[0], strict=False))
        except ValueError as exc:
            raise ConfigError(f"proxy_addresses: {value!r} is not an address or network", check="config.proxy-addresses") from exc
    return tuple(out)


def via_proxy(networks: ProxyNetworks, remote: str | None) -> bool:
    if not networks or not remote:
        return False
    try:
        addr = ipaddress.ip_address(remote.strip("[]").split("%")[0])
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return any(addr in net for net in networks)


def request_via(request: web.Request) -> str | None:
    """``"proxy"`` when ``request`` came from one of the app's configured join
    proxies, else None: for logs and event details, never for a decision."""
    return "proxy" if via_proxy(request.app.get(PROXY_NETWORKS, ()), request.remote) else None
