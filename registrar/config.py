"""Registrar configuration: a TOML file (``--config``) and flags that override it.

Example (``registrar.toml``)::

    [server]
    host = "127.0.0.1"
    port = 8444
    tls_cert = "certs/dev/registrar/tls.crt"
    tls_key = "certs/dev/registrar/tls.key"

    [registrar]
    database = "sqlite:///var/registrar.db"
    ca_cert = "certs/dev/registrar/domain-ca.crt"    # the domain CA: issues LDevIDs
    ca_key = "certs/dev/registrar/domain-ca.key"
    ra_cert = "certs/dev/registrar/ra.crt"           # id-kp-cmcRA: signs voucher-requests
    ra_key = "certs/dev/registrar/ra.key"
    manufacturer_anchors = ["certs/dev/manufacturer/root-ca.crt"]
    masa_trust = ["certs/dev/manufacturer/root-ca.crt"]   # verifies the MASA's TLS cert
    ldevid_validity_days = 365
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from brski.errors import ConfigError
from brski_web.configfile import load_sections, merge, resolve_sqlite_url

__all__ = ["RegistrarConfig", "database_url", "load_config"]

_SERVER_KEYS = {"host", "port", "tls_backend", "tls_cert", "tls_key", "ready_file", "log_level"}
_REGISTRAR_KEYS = {
    "database",
    "ca_cert",
    "ca_key",
    "ra_cert",
    "ra_key",
    "manufacturer_anchors",
    "masa_trust",
    "masa_url_override",
    "masa_timeout_s",
    "ldevid_validity_days",
    "public_url",
    "max_body_bytes",
}
_PATHS = {"tls_cert", "tls_key", "ready_file", "ca_cert", "ca_key", "ra_cert", "ra_key", "manufacturer_anchors", "masa_trust"}
_REQUIRED = ("tls_cert", "tls_key", "ca_cert", "ca_key", "ra_cert", "ra_key", "manufacturer_anchors", "masa_trust")


@dataclass(frozen=True, kw_only=True)
class RegistrarConfig:
    host: str
    port: int
    tls_backend: str
    tls_cert: Path
    tls_key: Path
    database: str
    ca_cert: Path
    ca_key: Path
    ra_cert: Path
    ra_key: Path
    manufacturer_anchors: list[Path]
    masa_trust: list[Path]
    masa_url_override: str | None
    masa_timeout_s: float
    ldevid_validity_days: int
    public_url: str | None
    max_body_bytes: int
    ready_file: Path | None
    log_level: str

    def __post_init__(self) -> None:
        if self.tls_backend not in ("pyopenssl", "stdlib"):
            raise ConfigError("tls_backend must be 'pyopenssl' or 'stdlib'", check="config.tls-backend")
        if not self.manufacturer_anchors:
            raise ConfigError("at least one manufacturer anchor is needed", check="config.anchors")
        if not 1 <= self.ldevid_validity_days <= 36500:
            raise ConfigError("ldevid_validity_days must be 1..36500", check="config.validity")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port {self.port} out of range", check="config.port")
        if self.masa_url_override is not None and not self.masa_url_override.startswith("https://"):
            raise ConfigError("masa_url_override must be an https:// URL", check="config.masa-url")


_DEFAULTS: dict[str, Any] = {
    "host": "127.0.0.1",
    "tls_backend": "pyopenssl",
    "port": 8444,
    "database": "sqlite:///var/registrar.db",
    "masa_url_override": None,
    "masa_timeout_s": 30.0,
    "ldevid_validity_days": 365,
    "public_url": None,
    "max_body_bytes": 65536,
    "ready_file": None,
    "log_level": "info",
}



def load_config(path: Path | None, overrides: dict[str, Any]) -> RegistrarConfig:
    sections, base = load_sections(path, {"server": _SERVER_KEYS, "registrar": _REGISTRAR_KEYS})
    merged = merge(
        {**sections["server"], **sections["registrar"]},
        overrides,
        base=base,
        path_keys=_PATHS,
        defaults=_DEFAULTS,
    )
    missing = [k for k in _REQUIRED if k not in merged]
    if missing:
        raise ConfigError(f"missing required setting(s): {', '.join(missing)}", check="config.missing")
    if "database" in sections["registrar"] and overrides.get("database") is None:
        merged["database"] = resolve_sqlite_url(merged["database"], base)
    return RegistrarConfig(**merged)


def database_url(path: Path | None, override: str | None) -> str:
    if override:
        return override
    sections, base = load_sections(path, {"server": _SERVER_KEYS, "registrar": _REGISTRAR_KEYS})
    db = sections["registrar"].get("database")
    return resolve_sqlite_url(db, base) if db else str(_DEFAULTS["database"])
