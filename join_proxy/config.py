"""Join proxy configuration: a TOML file (``--config``) and flags that override it.

Example (``proxy.toml``)::

    [proxy]
    listen_host = "::"                # where pledges connect (all links)
    listen_port = 8443
    announce_interfaces = ["pl1", "pl2"]   # pledge-facing links: _brski-proxy._tcp
    announce_addresses = ["fe80::1"]  # default: the interfaces' own addresses
    registrar = "auto"                # or "[fd00::2]:8443" / "registrar.example:8443"
    registrar_interfaces = ["dom0"]   # where "auto" browses for _brski-registrar._tcp
    discovery_timeout_s = 10.0
    max_circuits = 256                # concurrent circuits, all pledges together
    max_circuits_per_source = 8       # concurrent circuits per pledge address (with scope)
    connect_timeout_s = 5.0           # to reach the registrar
    idle_timeout_s = 30.0             # no byte either way for this long: closed
    max_circuit_s = 300.0             # a circuit's whole life
    max_circuit_bytes = 4194304       # both directions together
    ready_file = "var/proxy.ready"
    log_level = "info"
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from brski.errors import ConfigError
from brski_web.configfile import load_sections, merge

__all__ = ["CircuitLimits", "ProxyConfig", "Upstream", "load_config", "parse_upstream"]

_KEYS = {
    "listen_host", "listen_port", "announce_interfaces", "announce_addresses", "instance",
    "registrar", "registrar_interfaces", "discovery_timeout_s", "max_circuits",
    "max_circuits_per_source", "connect_timeout_s", "idle_timeout_s", "max_circuit_s",
    "max_circuit_bytes", "ready_file", "log_level",
}
_DEFAULTS: dict[str, Any] = {
    "listen_host": "::",
    "listen_port": 8443,
    "announce_interfaces": [],
    "announce_addresses": [],
    "instance": "brski-join-proxy",
    "registrar": "auto",
    "registrar_interfaces": [],
    "discovery_timeout_s": 10.0,
    "max_circuits": 256,
    "max_circuits_per_source": 8,
    "connect_timeout_s": 5.0,
    "idle_timeout_s": 30.0,
    "max_circuit_s": 300.0,
    "max_circuit_bytes": 4 << 20,
    "ready_file": None,
    "log_level": "info",
}


@dataclass(frozen=True, kw_only=True)
class Upstream:
    """A registrar the proxy relays to."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_upstream(text: str) -> Upstream:
    """``host:port``, ``[v6]:port`` or ``[fe80::1%eth0]:port``."""
    text = text.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
        if not sep or not port_text:
            raise ConfigError(f"registrar {text!r}: expected [address]:port", check="proxy.config.registrar")
    else:
        host, _, port_text = text.rpartition(":")
        if not host or ":" in host:
            raise ConfigError(
                f"registrar {text!r}: expected host:port or [address]:port", check="proxy.config.registrar"
            )
    try:
        port = int(port_text)
    except ValueError as exc:
        raise ConfigError(f"registrar {text!r}: bad port", check="proxy.config.registrar") from exc
    if not 1 <= port <= 65535:
        raise ConfigError(f"registrar {text!r}: port out of range", check="proxy.config.registrar")
    return Upstream(host=host, port=port)


@dataclass(frozen=True, kw_only=True)
class CircuitLimits:
    """The relay's bounds (RFC 8995 4.3 leaves them to the proxy; the pledge link is unauthenticated)."""

    max_circuits: int
    max_circuits_per_source: int
    connect_timeout_s: float
    idle_timeout_s: float
    max_circuit_s: float
    max_circuit_bytes: int

    def __post_init__(self) -> None:
        for name in ("max_circuits", "max_circuits_per_source", "max_circuit_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer", check="proxy.config.limits")
        if self.max_circuits_per_source > self.max_circuits:
            raise ConfigError("max_circuits_per_source exceeds max_circuits", check="proxy.config.limits")
        for name in ("connect_timeout_s", "idle_timeout_s", "max_circuit_s"):
            _seconds(getattr(self, name), name)


_LIMIT_KEYS = tuple(CircuitLimits.__dataclass_fields__)


def _seconds(value: object, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 86400:
        raise ConfigError(f"{name} must be seconds in (0, 86400]", check="proxy.config.timeouts")


@dataclass(frozen=True, kw_only=True)
class ProxyConfig:
    listen_host: str
    listen_port: int
    announce_interfaces: tuple[str, ...]
    announce_addresses: tuple[str, ...]
    instance: str
    registrar: Upstream | None  # None: discover by mDNS on registrar_interfaces
    registrar_interfaces: tuple[str, ...]
    discovery_timeout_s: float
    limits: CircuitLimits
    ready_file: Path | None
    log_level: str

    def __post_init__(self) -> None:
        _seconds(self.discovery_timeout_s, "discovery_timeout_s")
        if not 0 <= self.listen_port <= 65535:
            raise ConfigError(f"listen_port {self.listen_port} out of range", check="proxy.config.port")
        if self.announce_interfaces and self.listen_port == 0:
            raise ConfigError("announcing needs a fixed listen_port", check="proxy.config.port")
        if self.registrar is None and not self.registrar_interfaces:
            raise ConfigError(
                'registrar = "auto" needs registrar_interfaces to browse on', check="proxy.config.registrar"
            )
        for addr in self.announce_addresses:
            try:
                ipaddress.IPv6Address(addr)
            except ValueError as exc:
                raise ConfigError(f"announce_addresses: {addr!r} is not an IPv6 address", check="proxy.config") from exc
        if self.log_level not in ("debug", "info", "warning", "error"):
            raise ConfigError("log_level must be debug, info, warning or error", check="proxy.config")


def _strings(value: Any, name: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{name} must be a list of names", check="proxy.config")
    return tuple(value)


def load_config(path: Path | None, overrides: dict[str, Any]) -> ProxyConfig:
    sections, base = load_sections(path, {"proxy": _KEYS})
    merged = merge(sections["proxy"], overrides, base=base, path_keys={"ready_file"}, defaults=_DEFAULTS)
    registrar = merged.pop("registrar")
    if not isinstance(registrar, str) or not registrar:
        raise ConfigError('registrar must be "auto" or host:port', check="proxy.config.registrar")
    for name in ("announce_interfaces", "announce_addresses", "registrar_interfaces"):
        merged[name] = _strings(merged[name], name)
    limits = CircuitLimits(**{k: merged.pop(k) for k in _LIMIT_KEYS})
    return ProxyConfig(registrar=None if registrar == "auto" else parse_upstream(registrar), limits=limits, **merged)
