"""Registrar configuration: a TOML file (``--config``) and flags that override it.

Example (``registrar.toml``)::

    [server]
    host = "127.0.0.1"
    port = 8444
    tls_cert = "certs/dev/registrar/tls.crt"
    tls_key = "certs/dev/registrar/tls.key"
    http_port = 8445                                  # plain HTTP for CRL + OCSP only (issue 5)
    metrics_port = 9444                               # plain HTTP: /metrics, /healthz, /readyz

    [registrar]
    database = "sqlite:///var/registrar.db"
    ca_cert = "certs/dev/registrar/domain-ca.crt"    # the domain CA: issues LDevIDs
    ca_key = "certs/dev/registrar/domain-ca.key"
    ra_cert = "certs/dev/registrar/ra.crt"           # id-kp-cmcRA: signs voucher-requests
    ra_key = "certs/dev/registrar/ra.key"
    # Keys may instead live in a PKCS#11 token (RFC 7512 URI; docs/operations-hsm-metrics.md):
    # ca_key = "pkcs11:token=brski;object=domain-ca"
    # pkcs11_module = "/usr/lib/softhsm/libsofthsm2.so"
    # pkcs11_pin_file = "/etc/brski/pin"              # or pkcs11_pin_env = "BRSKI_PKCS11_PIN"
    # masa_client_cert/masa_client_key: the TLS client credential towards the MASA
    # (default ra_cert/ra_key; required when ra_key is in a token: TLS needs a file key)
    manufacturer_anchors = ["certs/dev/manufacturer/root-ca.crt"]
    masa_trust = ["certs/dev/manufacturer/root-ca.crt"]   # verifies the MASA's TLS cert
    ldevid_validity_days = 365
    admin_subjects = ["CN=admin,O=brski dev domain"]  # admin API clients (or admin_fingerprints)
    body_read_timeout_s = 10.0                        # a request body must arrive within this
    accept_base64_voucher_requests = false            # labs only: decode base64 text bodies

    # Admission policy (issue 4; see registrar/admission.py for every key):
    # [[registrar.manufacturers]] name/anchor/policy ("brski", "first-use", "deny"),
    # allow_serials, deny_serials, unlisted_devices ("admit", "queue", "refuse"),
    # approval_retry_after_s, audit_review, audit_allowed_domains, audit_other_domains.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from brski.errors import ConfigError
from brski.ldevid import LdevidProfiles, profiles_from_config
from brski_hsm import KeyRef, Pkcs11Settings, is_pkcs11_uri
from brski_web.configfile import load_sections, merge, resolve_sqlite_url
from registrar.admission import AdmissionPolicy, ManufacturerEntry, parse_manufacturers

__all__ = ["RegistrarConfig", "database_url", "load_config"]

LDEVID_KEYS = (
    "ldevid_subject", "ldevid_eku", "ldevid_san", "ldevid_csr_extras", "ldevid_profiles",
    "ldevid_supersede", "ldevid_issuance_limit", "ldevid_issuance_window_s",
)
_SERVER_KEYS = {
    "http_port", "host", "port", "tls_backend", "tls_cert", "tls_key", "ready_file", "log_level",
    "metrics_port", "metrics_host",
}
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
    # interop labs: accept base64 text where RFC 8366 8.3 says DER
    "accept_base64_voucher_requests",
    "allow_crl_mismatch",
    "body_read_timeout_s",
    # what an LDevID may say, how many a device gets (docs/security.md)
    *LDEVID_KEYS,
    # keys in a PKCS#11 token (brski_hsm)
    "pkcs11_module",
    "pkcs11_pin_file",
    "pkcs11_pin_env",
    "masa_client_cert",
    "masa_client_key",
    # admission policy (registrar/admission.py)
    "manufacturers",
    "allow_serials",
    "deny_serials",
    "unlisted_devices",
    "approval_retry_after_s",
    "audit_review",
    "audit_allowed_domains",
    "audit_other_domains",
    # network (RFC 8995 4.1, 4.3): mDNS announcement and known join proxies
    "mdns_interfaces",
    "mdns_instance",
    "proxy_addresses",
}
_LDEVID_PROFILE_KEYS = ("ldevid_subject", "ldevid_eku", "ldevid_san", "ldevid_csr_extras", "ldevid_profiles")
_POLICY_KEYS = (
    "allow_serials", "deny_serials", "unlisted_devices", "approval_retry_after_s",
    "audit_review", "audit_allowed_domains", "audit_other_domains",
)
_PATHS = {
    "tls_cert", "tls_key", "ready_file", "ca_cert", "ca_key", "ra_cert", "ra_key", "manufacturer_anchors", "masa_trust",
    "pkcs11_pin_file", "masa_client_cert", "masa_client_key",
}
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
    ca_key: KeyRef  # a PEM file or a pkcs11: URI
    ra_cert: Path
    ra_key: KeyRef
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
    # Who may join (registrar/admission.py); `manufacturer_anchors` are policy "brski".
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
    # For interop labs only: decode a voucher-request sent as base64 text
    # (RFC 8366 8.3: CMS vouchers are DER) instead of refusing it.
    accept_base64_voucher_requests: bool = False
    # Identity binding (brski/ldevid.py, RFC 8995 5.9.2): the LDevID's subject,
    # key purposes and names come from these profiles, never from the CSR.
    ldevid: LdevidProfiles = field(default_factory=LdevidProfiles)
    # A new LDevID through the IDevID path revokes the device's previous ones
    # (reason superseded); at most ldevid_issuance_limit issuances per device
    # in any ldevid_issuance_window_s (0: no limit), else 429 + Retry-After.
    ldevid_supersede: bool = True
    ldevid_issuance_limit: int = 10
    ldevid_issuance_window_s: int = 86400
    # Serve although the store contradicts the last published CRL (RFC 5280
    # 3.3); the CRL's revocations stay in force. Normally only as the flag
    # --allow-crl-mismatch, for the time it takes to restore the store.
    allow_crl_mismatch: bool = False
    # RFC 8995 4.1 / B: announce _brski-registrar._tcp over mDNS on these
    # interfaces; proxy_addresses: join proxies whose connections are logged
    # and recorded with via=proxy (RFC 8995 4.3; nothing is decided on it).
    mdns_interfaces: list[str] = field(default_factory=list)
    mdns_instance: str = "brski-registrar"
    proxy_addresses: list[str] = field(default_factory=list)
    pkcs11_module: str | None = None
    pkcs11_pin_file: Path | None = None
    pkcs11_pin_env: str | None = None
    masa_client_cert: Path | None = None
    masa_client_key: Path | None = None
    # Plain-HTTP /metrics, /healthz, /readyz (brski_web.metrics); none without a port.
    metrics_port: int | None = None
    metrics_host: str | None = None

    @property
    def pkcs11(self) -> Pkcs11Settings:
        return Pkcs11Settings(module=self.pkcs11_module, pin_file=self.pkcs11_pin_file, pin_env=self.pkcs11_pin_env)

    @property
    def masa_client(self) -> tuple[Path, Path]:
        """The TLS client certificate and key towards the MASA (RFC 8995 5.5.4:
        the RA certificate, or another id-kp-cmcRA one under the domain CA)."""
        if self.masa_client_cert is not None and self.masa_client_key is not None:
            return self.masa_client_cert, self.masa_client_key
        assert isinstance(self.ra_key, Path)
        return self.ra_cert, self.ra_key

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
        if self.metrics_port is not None and not 0 <= self.metrics_port <= 65535:
            raise ConfigError(f"metrics_port {self.metrics_port} out of range", check="config.port")
        if self.http_port is not None and not 1 <= self.http_port <= 65535:
            raise ConfigError(f"http_port {self.http_port} out of range", check="config.port")
        if (self.masa_client_cert is None) != (self.masa_client_key is None):
            raise ConfigError("masa_client_cert and masa_client_key go together", check="config.masa-client")
        if is_pkcs11_uri(self.ra_key) and self.masa_client_key is None:
            # OpenSSL (Python's ssl) can only use a key it can read for TLS.
            raise ConfigError(
                "ra_key is in a PKCS#11 token: set masa_client_cert and masa_client_key "
                "(a file key with id-kp-cmcRA and clientAuth) for the TLS connection to the MASA",
                check="config.masa-client",
            )
        if not isinstance(self.reonboard_decommissioned, bool):
            raise ConfigError("reonboard_decommissioned must be true or false", check="config.lifecycle")
        if not isinstance(self.accept_base64_voucher_requests, bool):
            raise ConfigError("accept_base64_voucher_requests must be true or false", check="config.interop")
        if not all(isinstance(v, str) for v in [*self.admin_fingerprints, *self.admin_subjects]):
            raise ConfigError("admin_fingerprints and admin_subjects are lists of strings", check="config.admin")
        if not isinstance(self.allow_crl_mismatch, bool):
            raise ConfigError("allow_crl_mismatch must be true or false", check="config.allow-crl-mismatch")
        if not isinstance(self.ldevid_supersede, bool):
            raise ConfigError("ldevid_supersede must be true or false", check="config.ldevid-supersede")
        if not (isinstance(self.ldevid_issuance_limit, int) and 0 <= self.ldevid_issuance_limit <= 1_000_000):
            raise ConfigError("ldevid_issuance_limit must be 0 (no limit)..1000000", check="config.ldevid-limit")
        if not (isinstance(self.ldevid_issuance_window_s, int) and 1 <= self.ldevid_issuance_window_s <= 366 * 86400):
            raise ConfigError("ldevid_issuance_window_s must be 1..31622400", check="config.ldevid-limit")
        if not all(isinstance(v, str) and v for v in [*self.mdns_interfaces, *self.proxy_addresses]):
            raise ConfigError("mdns_interfaces and proxy_addresses are lists of strings", check="config.network")
        if self.mdns_interfaces and self.port == 0:
            raise ConfigError("mdns_interfaces: announcing needs a fixed port", check="config.network")
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
    ldevid = {k: merged.pop(k) for k in _LDEVID_PROFILE_KEYS if k in merged}
    merged["ldevid"] = profiles_from_config(**{k.removeprefix("ldevid_"): v for k, v in ldevid.items()})
    entries = parse_manufacturers(merged.pop("manufacturers", None), base)
    merged["admission"] = AdmissionPolicy(manufacturers=tuple(entries), **policy)
    return RegistrarConfig(**merged)


def database_url(path: Path | None, override: str | None) -> str:
    if override:
        return override
    sections, base = load_sections(path, {"server": _SERVER_KEYS, "registrar": _REGISTRAR_KEYS})
    db = sections["registrar"].get("database")
    return resolve_sqlite_url(db, base) if db else str(_DEFAULTS["database"])
