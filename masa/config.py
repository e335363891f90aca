"""MASA configuration: a TOML file (``--config``) and flags that override it.

Example (``masa.toml``)::

    [server]
    host = "127.0.0.1"
    port = 8443
    tls_cert = "certs/dev/masa/tls.crt"
    tls_key = "certs/dev/masa/tls.key"
    # CAs whose registrars may connect with a client certificate (stdlib TLS).
    client_cas = ["certs/dev/registrar/domain-ca.crt"]

    [masa]
    database = "sqlite:///var/masa.db"
    signer_cert = "certs/dev/masa/voucher-signer.crt"
    signer_key = "certs/dev/masa/voucher-signer.key"
    manufacturer_anchors = ["certs/dev/manufacturer/root-ca.crt"]
    ownership = "open"            # or "sales-records"
    nonceless_voucher_days = 30
    rate_limit_per_minute = 0     # per registrar signing key (RFC 8995 11.1); 0 = off
    rate_limit_burst = 20
    body_read_timeout_s = 10.0    # a request body must arrive within this
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from brski.errors import ConfigError
from brski_web.configfile import load_sections, merge, resolve_sqlite_url
from brski_web.workers import check_workers

__all__ = ["MasaConfig", "database_url", "load_config"]

_SERVER_KEYS = {"workers", "host", "port", "tls_backend", "tls_cert", "tls_key", "client_cas", "client_auth", "ready_file", "log_level"}
_MASA_KEYS = {
    "database",
    "signer_cert",
    "signer_key",
    "signer_chain",
    "manufacturer_anchors",
    "ownership",
    "nonceless_voucher_days",
    "max_body_bytes",
    "rate_limit_per_minute",
    "rate_limit_burst",
    "body_read_timeout_s",
}
_PATHS = {"tls_cert", "tls_key", "client_cas", "ready_file", "signer_cert", "signer_key", "signer_chain", "manufacturer_anchors"}


@dataclass(frozen=True, kw_only=True)
class MasaConfig:
    host: str
    port: int
    tls_backend: str
    tls_cert: Path
    tls_key: Path
    client_cas: list[Path]
    client_auth: str
    database: str
    signer_cert: Path
    signer_key: Path
    signer_chain: list[Path]
    manufacturer_anchors: list[Path]
    ownership: str
    nonceless_voucher_days: int
    max_body_bytes: int
    ready_file: Path | None
    log_level: str
    # RFC 8995 11.1: token bucket per registrar signing key; 0 switches it off.
    rate_limit_per_minute: float = 0.0
    rate_limit_burst: int = 20
    body_read_timeout_s: float = 10.0
    # Worker processes serving the port (brski_web/workers.py); > 1 needs PostgreSQL.
    workers: int = 1

    def __post_init__(self) -> None:
        check_workers(self.workers, self.database)
        if self.rate_limit_per_minute < 0 or self.rate_limit_burst < 1:
            raise ConfigError("rate_limit_per_minute >= 0 and rate_limit_burst >= 1", check="config.rate-limit")
        if not self.body_read_timeout_s > 0:
            raise ConfigError("body_read_timeout_s must be positive", check="config.body-timeout")
        if self.tls_backend not in ("pyopenssl", "stdlib"):
            raise ConfigError("tls_backend must be 'pyopenssl' or 'stdlib'", check="config.tls-backend")
        if self.ownership not in ("open", "sales-records"):
            raise ConfigError(
                f"ownership must be 'open' or 'sales-records', not {self.ownership!r}",
                check="config.ownership",
            )
        if self.client_auth not in ("optional", "require"):
            raise ConfigError("client_auth must be 'optional' or 'require'", check="config.tls")
        if not self.manufacturer_anchors:
            raise ConfigError("at least one manufacturer anchor is needed", check="config.anchors")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port {self.port} out of range", check="config.port")


_DEFAULTS: dict[str, Any] = {
    "host": "127.0.0.1",
    "tls_backend": "pyopenssl",
    "port": 8443,
    "client_cas": [],
    "client_auth": "optional",
    "database": "sqlite:///var/masa.db",
    "signer_chain": [],
    "ownership": "open",
    "nonceless_voucher_days": 30,
    "max_body_bytes": 65536,
    "ready_file": None,
    "log_level": "info",
}


def load_config(path: Path | None, overrides: dict[str, Any]) -> MasaConfig:
    sections, base = load_sections(path, {"server": _SERVER_KEYS, "masa": _MASA_KEYS})
    merged = merge(
        {**sections["server"], **sections["masa"]},
        overrides,
        base=base,
        path_keys=_PATHS,
        defaults=_DEFAULTS,
    )
    missing = [k for k in ("tls_cert", "tls_key", "signer_cert", "signer_key", "manufacturer_anchors") if k not in merged]
    if missing:
        raise ConfigError(f"missing required setting(s): {', '.join(missing)}", check="config.missing")
    if "database" in sections["masa"] and overrides.get("database") is None:
        merged["database"] = resolve_sqlite_url(merged["database"], base)
    return MasaConfig(**merged)



def database_url(path: Path | None, override: str | None) -> str:
    """The store URL alone, for commands that need nothing else."""
    if override:
        return override
    sections, base = load_sections(path, {"server": _SERVER_KEYS, "masa": _MASA_KEYS})
    db = sections["masa"].get("database")
    return resolve_sqlite_url(db, base) if db else str(_DEFAULTS["database"])
