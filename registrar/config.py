"""Registrar configuration: a TOML file (``--config``) and flags that override it.

Example (``registrar.toml``)::

    [server]
    host = "127.0.0.1"
    port = 8444
    tls_cert = "certs/dev/registrar/tls.crt"
    tls_key = "certs/dev/registrar/tls.key"
    http_port = 8445                                  # plain HTTP for CRL + OCSP only (issue 5)

    [registrar]
    database = "sqlite:///var/registrar.db"
    ca_cert = "certs/dev/registrar/domain-ca.crt"    # the domain CA: issues LDevIDs
    ca_key = "certs/dev/registrar/domain-ca.key"
    ra_cert = "certs/dev/registrar/ra.crt"           # id-kp-cmcRA: signs voucher-requests
    ra_key = "certs/dev/registrar/ra.key"
    manufacturer_anchors = ["certs/dev/manufacturer/root-ca.crt"]
    masa_trust = ["certs/dev/manufacturer/root-ca.crt"]   # verifies the MASA's TLS cert
    ldevid_validity_days = 365
    admin_subjects = ["CN=admin,O=brski dev domain"]  # admin API clients (or admin_fingerprints)
    body_read_timeout_s = 10.0                        # a request body must arrive within this

    # Admission policy (issue 4; see registrar/policy.py for every key):
    # [[registrar.manufacturers]] name/anchor/policy ("brski", "first-use", "deny"),
    # allow_serials, deny_serials, unlisted_devices ("admit", "queue", "refuse"),
    # approval_retry_after_s, audit_review, audit_allowed_domains, audit_other_domains.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from brski.errors import ConfigError
from brski_web.configfile import load_sections, merge, resolve_sqlite_url
from brski_web.workers import check_workers
from registrar.policy import AdmissionPolicy, ManufacturerEntry, parse_manufacturers

__all__ = ["RegistrarConfig", "database_url", "load_config"]

_SERVER_KEYS = {"workers", "http_port", "host", "port", "tls_backend", "tls_cert", "tls_key", "ready_file", "log_level"}
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
    # lifecycle (issue 5): revocation publication, admin API, re-onboarding
    "revocation_url",
    "admin_fingerprints",
    "admin_subjects",
    "reonboard_decommissioned",
    "body_read_timeout_s",
    # admission policy (registrar/policy.py)
    "manufacturers",
    "allow_serials",
    "deny_serials",
    "unlisted_devices",
    "approval_retry_after_s",
    "audit_review",
    "audit_allowed_domains",
    "audit_other_domains",
}
_POLICY_KEYS = (
    "allow_serials", "deny_serials", "unlisted_devices", "approval_retry_after_s",
    "audit_review", "audit_allowed_domains", "audit_other_domains",
)
_PATHS = {"tls_cert", "tls_key", "ready_file", "ca_cert", "ca_key", "ra_cert", "ra_key", "manufacturer_anchors", "masa_trust"}
_REQUIRED = ("tls_cert", "tls_key", "ca_cert", "ca_key", "ra_cert", "ra_key", "masa_trust")


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
    body_read_timeout_s: float = 10.0
    # Worker processes serving the port (brski_web/workers.py); > 1 needs PostgreSQL.
    workers: int = 1
    # Who may join (registrar/policy.py); `manufacturer_anchors` are policy "brski".
    admission: AdmissionPolicy = field(default_factory=AdmissionPolicy)
    # Lifecycle (issue 5). http_port: a plain-HTTP listener serving only /crl
    # and /ocsp (RFC 5280 4.2.1.13, RFC 6960 A.1). revocation_url: base URL
    # written into LDevIDs (CRL DP, AIA OCSP); default http://host:http_port,
    # else public_url. admin_*: who may use /admin/v1 (a client certificate
    # issued by the domain CA, matched by SHA-256 fingerprint or RFC 4514 subject).
    http_port: int | None = None
    revocation_url: str | None = None
    admin_fingerprints: list[str] = field(default_factory=list)
    admin_subjects: list[str] = field(default_factory=list)
    reonboard_decommissioned: bool = True

    @property
    def revocation_base(self) -> str | None:
        if self.revocation_url:
            return self.revocation_url.rstrip("/")
        if self.http_port:
            # A wildcard bind has no name to give; an IPv6 literal needs brackets.
            host = "localhost" if self.host in ("0.0.0.0", "::") else self.host
            host = f"[{host}]" if ":" in host else host
            return f"http://{host}:{self.http_port}"
        return self.public_url.rstrip("/") if self.public_url else None

    @property
    def manufacturers(self) -> list[ManufacturerEntry]:
        """The legacy anchor list as "brski" entries, then the table form."""
        legacy = [ManufacturerEntry(name=p.stem, anchor=p, policy="brski") for p in self.manufacturer_anchors]
        return [*legacy, *self.admission.manufacturers]

    def __post_init__(self) -> None:
        check_workers(self.workers, self.database)
        if self.tls_backend not in ("pyopenssl", "stdlib"):
            raise ConfigError("tls_backend must be 'pyopenssl' or 'stdlib'", check="config.tls-backend")
        if not self.manufacturer_anchors and not self.admission.manufacturers:
            raise ConfigError(
                "at least one manufacturer anchor (or [[registrar.manufacturers]] entry) is needed",
                check="config.anchors",
            )
        if not self.body_read_timeout_s > 0:
            raise ConfigError("body_read_timeout_s must be positive", check="config.body-timeout")
        if not 1 <= self.ldevid_validity_days <= 36500:
            raise ConfigError("ldevid_validity_days must be 1..36500", check="config.validity")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port {self.port} out of range", check="config.port")
        if self.http_port is not None and not 1 <= self.http_port <= 65535:
            raise ConfigError(f"http_port {self.http_port} out of range", check="config.port")
        if not isinstance(self.reonboard_decommissioned, bool):
            raise ConfigError("reonboard_decommissioned must be true or false", check="config.lifecycle")
        if not all(isinstance(v, str) for v in [*self.admin_fingerprints, *self.admin_subjects]):
            raise ConfigError("admin_fingerprints and admin_subjects are lists of strings", check="config.admin")
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
    "manufacturer_anchors": [],
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
    policy: dict[str, Any] = {k: merged.pop(k) for k in _POLICY_KEYS if k in merged}
    for k in ("allow_serials", "deny_serials", "audit_allowed_domains"):
        if k in policy:
            if not isinstance(policy[k], list) or not all(isinstance(v, str) for v in policy[k]):
                raise ConfigError(f"{k} must be a list of strings", check="config.policy")
            policy[k] = frozenset(policy[k])
    entries = parse_manufacturers(merged.pop("manufacturers", None), base)
    merged["admission"] = AdmissionPolicy(manufacturers=tuple(entries), **policy)
    return RegistrarConfig(**merged)


def database_url(path: Path | None, override: str | None) -> str:
    if override:
        return override
    sections, base = load_sections(path, {"server": _SERVER_KEYS, "registrar": _REGISTRAR_KEYS})
    db = sections["registrar"].get("database")
    return resolve_sqlite_url(db, base) if db else str(_DEFAULTS["database"])
