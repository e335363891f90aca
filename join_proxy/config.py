"""Join proxy configuration: a TOML ``[proxy]`` table (``--config``) and flags that override it.

The dataclass :class:`ProxyConfig` is the schema (``brski.settings``): every
key, its default, type, range and help. ``brski proxy config-example`` prints
the documented example file it generates.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from brski.errors import ConfigError
from brski.settings import example_toml, load_settings, setting
from brski_config import read_toml

__all__ = ["CircuitLimits", "ProxyConfig", "Upstream", "example_config", "load_config", "parse_upstream"]

_P = "proxy"
_DAY = 86400


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


def _seconds(value: object, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 86400:
        raise ConfigError(f"{name} must be seconds in (0, 86400]", check="proxy.config.timeouts")


@dataclass(frozen=True, kw_only=True)
class ProxyConfig:
    listen_host: str = setting("::", section=_P, help="where pledges connect (\"::\": every link)")
    listen_port: int = setting(8443, section=_P, min=0, max=65535, help="the port pledges connect to")
    announce_interfaces: tuple[str, ...] = setting(
        (), section=_P, example=["pl1", "pl2"],
        help="pledge-facing links: announce _brski-proxy._tcp there over mDNS (RFC 8995 4.1)",
    )
    announce_addresses: tuple[str, ...] = setting(
        (), section=_P, help="IPv6 addresses announced (default: the interfaces' own addresses)",
    )
    instance: str = setting("brski-join-proxy", section=_P, help="the mDNS service instance name")
    registrar_spec: str = setting(
        "auto", section=_P, key="registrar", example="[fd00::2]:8443",
        help='the registrar: host:port, [address]:port, or "auto" (browse registrar_interfaces for\n'
        "_brski-registrar._tcp, RFC 8995 4.3)",
    )
    registrar_interfaces: tuple[str, ...] = setting((), section=_P, example=["dom0"],
                                                    help='where "auto" browses for the registrar')
    discovery_timeout_s: float = setting(10.0, section=_P, min=0.001, max=_DAY,
                                         help="seconds to browse for a registrar")
    # The relay's bounds (CircuitLimits): the pledge link is unauthenticated.
    max_circuits: int = setting(256, section=_P, min=1, help="concurrent circuits, all pledges together")
    max_circuits_per_source: int = setting(8, section=_P, min=1,
                                           help="concurrent circuits per pledge address (with scope)")
    connect_timeout_s: float = setting(5.0, section=_P, min=0.001, max=_DAY, help="seconds to reach the registrar")
    idle_timeout_s: float = setting(30.0, section=_P, min=0.001, max=_DAY,
                                    help="no byte either way for this long: the circuit is closed")
    max_circuit_s: float = setting(300.0, section=_P, min=0.001, max=_DAY, help="a circuit's whole life, in seconds")
    max_circuit_bytes: int = setting(4 << 20, section=_P, min=1, help="bytes per circuit, both directions together")
    ready_file: Path | None = setting(None, section=_P, path=True, help="write {url, port, pid, registrar} here once listening")
    log_level: str = setting("info", section=_P, choices=("debug", "info", "warning", "error"),
                             help="log threshold (one key=value line per circuit, on stderr)")

    # Derived from the settings above, validated once.
    registrar: Upstream | None = field(init=False, compare=False)  # None: discover by mDNS
    limits: CircuitLimits = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        upstream = None if self.registrar_spec == "auto" else parse_upstream(self.registrar_spec)
        object.__setattr__(self, "registrar", upstream)
        limits = CircuitLimits(
            max_circuits=self.max_circuits, max_circuits_per_source=self.max_circuits_per_source,
            connect_timeout_s=self.connect_timeout_s, idle_timeout_s=self.idle_timeout_s,
            max_circuit_s=self.max_circuit_s, max_circuit_bytes=self.max_circuit_bytes,
        )
        object.__setattr__(self, "limits", limits)
        if self.announce_interfaces and self.listen_port == 0:
            raise ConfigError("announcing needs a fixed listen_port", check="proxy.config.port")
        if self.registrar is None and not self.registrar_interfaces:
            raise ConfigError(
                'registrar = "auto" needs registrar_interfaces to browse on', check="proxy.config.registrar"
            )
        if not all(self.announce_interfaces) or not all(self.registrar_interfaces):
            raise ConfigError("interface names must not be empty", check="proxy.config")
        for addr in self.announce_addresses:
            try:
                ipaddress.IPv6Address(addr)
            except ValueError as exc:
                raise ConfigError(f"announce_addresses: {addr!r} is not an IPv6 address", check="proxy.config") from exc


def example_config() -> str:
    """The documented ``proxy.toml``, generated from the schema."""
    return example_toml(ProxyConfig, title="brski join proxy configuration (brski proxy serve --config proxy.toml)")


def load_config(path: Path | None, overrides: dict[str, Any]) -> ProxyConfig:
    tables, source, base = read_toml(path)
    try:
        return load_settings(ProxyConfig, tables, overrides, source=source, base=base)
    except ConfigError as exc:
        if exc.detail.startswith(source):
            raise
        # A rule checked after the keys (the registrar's form, a cross-field rule): name the file too.
        raise ConfigError(f"{source}: {exc.detail}", check=exc.check) from None
