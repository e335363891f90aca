"""Registrar configuration: a TOML file (``--config``) and flags that override it.

The dataclass below is the schema (``brski.settings``): every key of the
``[server]`` and ``[registrar]`` tables, its default, type, range and help.
``brski registrar config-example`` prints the documented example file it
generates (the admission policy's ``[[registrar.manufacturers]]`` and the
``[[registrar.ldevid_profiles]]`` tables are shown there as comments; their
rules are in :mod:`registrar.admission` and :mod:`brski.ldevid`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from brski.admission import AUDIT_OTHER_DOMAINS, UNLISTED_DEVICE_POLICIES
from brski.errors import ConfigError
from brski.ldevid import CSR_EXTRAS_POLICIES, LdevidProfiles, profiles_from_config
from brski.settings import REQUIRED, check_tables, example_toml, load_settings, setting
from brski_config import read_toml, resolve_sqlite_url
from brski_hsm import KeyRef, Pkcs11Settings, is_pkcs11_uri
from brski_web import server_settings as common
from brski_web.workers import check_workers
from registrar.admission import (
    MAX_RETRY_AFTER_S,
    AdmissionPolicy,
    ManufacturerEntry,
    parse_manufacturers,
)
from registrar.netaccess import NetworkAccessConfig, parse_network_access

__all__ = ["RegistrarConfig", "database_url", "example_config", "load_config"]

_S, _R = "server", "registrar"
DEFAULT_DATABASE = "sqlite:///var/registrar.db"
_MANUFACTURERS_EXAMPLE = """[[registrar.manufacturers]]
name = "acme"                    # a label for events and logs
anchor = "acme-root.crt"         # IDevIDs must chain here (RFC 8995 5.3)
policy = "brski"                 # or "deny" (chains, but refused), or "first-use" (no anchor)"""
_PROFILES_EXAMPLE = """[[registrar.ldevid_profiles]]
name = "sensors"
manufacturer = "acme"            # the manufacturers entry (or anchor subject) it applies to
serials = "SN-*"                 # which serials
subject = "serialNumber={serial},CN={serial}.sensors.example"
eku = ["clientAuth"]
san = ["dns:{serial}.devices.example.net"]"""


@dataclass(frozen=True, kw_only=True)
class RegistrarConfig:
    # [server]: the BRSKI/EST listener
    host: str = setting("127.0.0.1", section=_S, help="address to listen on")
    port: int = setting(8444, section=_S, min=0, max=65535, help="HTTPS port (0: any free port)")
    tls_backend: str = setting(
        "pyopenssl", section=_S, choices=("pyopenssl", "stdlib"),
        help="TLS implementation of the listener (pyopenssl: the application sees every client chain)",
    )
    tls_cert: Path = setting(REQUIRED, section=_S, path=True, example="certs/dev/registrar/tls.crt",
                             help="the registrar's TLS certificate chain (PEM, leaf first)")
    tls_key: Path = setting(REQUIRED, section=_S, path=True, example="certs/dev/registrar/tls.key",
                            help="its private key (PEM)")
    workers: int = setting(1, section=_S, min=1, max=64,
                           help="worker processes serving the port (brski_web/workers.py); more than 1 needs PostgreSQL")
    ready_file: Path | None = common.ready_file(_S)
    log_level: str = common.log_level(_S)
    # Lifecycle: a plain-HTTP listener serving only /crl and /ocsp (RFC 5280
    # 4.2.1.13, RFC 6960 A.1).
    http_port: int | None = setting(None, section=_S, min=1, max=65535, example=8445,
                                    help="plain-HTTP port serving only /crl and /ocsp (none: off)")
    metrics_port: int | None = common.metrics_port(_S, example=9444)
    metrics_host: str | None = common.metrics_host(_S)

    # [registrar]: the domain CA, the MASA connection, the LDevIDs
    database: str = setting(DEFAULT_DATABASE, section=_R,
                            help="store URL; a relative sqlite:/// path is relative to this file")
    ca_cert: Path = setting(REQUIRED, section=_R, path=True, example="certs/dev/registrar/domain-ca.crt",
                            help="the domain CA certificate: issues LDevIDs")
    ca_key: KeyRef = setting(REQUIRED, section=_R, path=True, uri_schemes=("pkcs11",),
                             example="certs/dev/registrar/domain-ca.key",
                             help="its private key: a PEM file, or an RFC 7512 pkcs11: URI (keys in an HSM)")
    ra_cert: Path = setting(REQUIRED, section=_R, path=True, example="certs/dev/registrar/ra.crt",
                            help="the id-kp-cmcRA certificate that signs voucher-requests (RFC 8995 5.5)")
    ra_key: KeyRef = setting(REQUIRED, section=_R, path=True, uri_schemes=("pkcs11",),
                             example="certs/dev/registrar/ra.key",
                             help="its private key: a PEM file or a pkcs11: URI")
    masa_client_cert: Path | None = setting(
        None, section=_R, path=True,
        help="TLS client certificate towards the MASA (default ra_cert;\n"
        "required, with masa_client_key, when ra_key is in a token: TLS needs a file key)",
    )
    masa_client_key: Path | None = setting(None, section=_R, path=True, help="its private key (PEM)")
    manufacturer_anchors: list[Path] = setting(
        [], section=_R, path=True, example=["certs/dev/manufacturer/root-ca.crt"],
        help="roots of the IDevIDs admitted (each one: a manufacturer with policy \"brski\")",
    )
    masa_trust: list[Path] = setting(REQUIRED, section=_R, path=True, example=["certs/dev/manufacturer/root-ca.crt"],
                                     help="CAs that verify the MASA's TLS certificate")
    masa_url_override: str | None = setting(None, section=_R,
                                            help="send every voucher-request to this https:// MASA URL")
    masa_timeout_s: float = setting(30.0, section=_R, min=0.001, help="seconds to wait for the MASA")
    ldevid_validity_days: int = setting(365, section=_R, min=1, max=36500, help="validity of an issued LDevID")
    public_url: str | None = setting(None, section=_R, help="base URL of this registrar as devices reach it")
    max_body_bytes: int = setting(65536, section=_R, min=1, help="largest request body accepted")
    body_read_timeout_s: float = setting(10.0, section=_R, min=0.001,
                                         help="a request body must arrive within this many seconds")
    revocation_url: str | None = setting(
        None, section=_R,
        help="base URL written into LDevIDs (CRL DP, AIA OCSP); default http://host:http_port, else public_url",
    )
    reonboard_decommissioned: bool = setting(True, section=_R,
                                             help="a decommissioned device may onboard again")
    # For interop labs only: RFC 8366 8.3 says CMS vouchers are DER.
    accept_base64_voucher_requests: bool = setting(
        False, section=_R, help="labs only: decode a voucher-request sent as base64 text instead of refusing it",
    )
    # Normally only as the flag --allow-crl-mismatch, while the store is restored.
    allow_crl_mismatch: bool = setting(
        False, section=_R,
        help="serve although the store contradicts the last published CRL (RFC 5280 3.3);\n"
        "the CRL's revocations stay in force",
    )
    # The web console and /admin/v1: a client certificate issued by the domain CA.
    admin_fingerprints: list[str] = common.admin_fingerprints(_R)
    admin_subjects: list[str] = setting([], section=_R, example=["CN=admin,O=brski dev domain"],
                                        help="admin certificates by RFC 4514 subject")

    # Identity binding (brski/ldevid.py, RFC 8995 5.9.2): the LDevID's subject,
    # key purposes and names come from these profiles, never from the CSR.
    ldevid_subject: str | None = setting(None, section=_R,
                                         help="LDevID subject template (default serialNumber={serial},CN={serial})")
    ldevid_eku: list[str] | None = setting(None, section=_R, help="LDevID key purposes (default [\"clientAuth\"])")
    ldevid_san: list[str] | None = setting(None, section=_R, help="LDevID subjectAltName templates (default none)")
    ldevid_csr_extras: str | None = setting(None, section=_R, choices=CSR_EXTRAS_POLICIES,
                                            help="what a CSR asks beyond the profile: ignore (default) or refuse")
    ldevid_profiles: list[Any] = setting(
        [], section=_R, raw=True, example=_PROFILES_EXAMPLE,
        help="profiles for some manufacturers or serials (missing keys: the defaults above):",
    )
    ldevid_supersede: bool = setting(True, section=_R,
                                     help="a new LDevID through the IDevID path revokes the device's previous ones")
    ldevid_issuance_limit: int = setting(10, section=_R, min=0, max=1_000_000,
                                         help="LDevIDs per device per window (0: no limit), else 429 + Retry-After")
    ldevid_issuance_window_s: int = setting(86400, section=_R, min=1, max=366 * 86400,
                                            help="the window of ldevid_issuance_limit, in seconds")

    # Keys in a PKCS#11 token (brski_hsm)
    pkcs11_module: str | None = common.pkcs11_module(_R)
    pkcs11_pin_file: Path | None = common.pkcs11_pin_file(_R)
    pkcs11_pin_env: str | None = common.pkcs11_pin_env(_R)

    # Admission policy (registrar/policy.py, brski/policy.py)
    manufacturer_tables: list[Any] = setting(
        [], section=_R, raw=True, key="manufacturers", example=_MANUFACTURERS_EXAMPLE,
        help="manufacturers by name, anchor and policy (besides manufacturer_anchors):",
    )
    allow_serials: list[str] = setting([], section=_R, help="serials admitted without the approval queue")
    deny_serials: list[str] = setting([], section=_R, help="serials always refused")
    unlisted_devices: str = setting("admit", section=_R, choices=UNLISTED_DEVICE_POLICIES,
                                    help="other devices: admit, queue (202 until approved) or refuse")
    approval_retry_after_s: int = setting(30, section=_R, min=1, max=MAX_RETRY_AFTER_S,
                                          help="Retry-After while a device waits for approval (RFC 8995 5.6)")
    audit_review: bool = setting(True, section=_R, help="review the MASA audit log before enrolling (RFC 8995 5.8.3)")
    audit_allowed_domains: list[str] = setting([], section=_R,
                                               help="extra domainIDs (base64) allowed in the audit log")
    audit_other_domains: str = setting("refuse", section=_R, choices=AUDIT_OTHER_DOMAINS,
                                       help="other domains in the audit log: refuse, or allow-nonced")

    # Network (RFC 8995 4.1, 4.3)
    mdns_interfaces: list[str] = setting([], section=_R,
                                         help="announce _brski-registrar._tcp over mDNS on these interfaces")
    mdns_instance: str = setting("brski-registrar", section=_R, help="the mDNS service instance name")
    proxy_addresses: list[str] = setting(
        [], section=_R, help="join proxies whose connections are recorded with via=proxy (RFC 8995 4.3)",
    )

    # 802.1X policy decision point and RFC 5176 client (registrar/netaccess.py,
    # docs/network-access.md); absent: disabled.
    network_access: NetworkAccessConfig = setting(
        NetworkAccessConfig(), section=_R, raw=True,
        example="[registrar.network_access]\nradius_subjects = [\"CN=radius,O=brski dev domain\"]",
        help="the RADIUS server's access to /netaccess/v1, class policy and the DAS (see docs):",
    )
    # Normally only as the flag --allow-inconsistent, while investigating.
    allow_inconsistent: bool = setting(
        False, section=_R,
        help="serve although the store disagrees with its own event log (docs/evidence.md);\n"
        "logged and recorded",
    )

    # Derived from the settings above, validated once.
    admission: AdmissionPolicy = field(init=False, repr=False, compare=False)
    ldevid: LdevidProfiles = field(init=False, repr=False, compare=False)

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
        check_workers(self.workers, self.database)
        # The tables parsed by their own rules; entries may already be parsed
        # (load_config resolves the anchors against the file's directory).
        admission = AdmissionPolicy(
            manufacturers=tuple(parse_manufacturers(self.manufacturer_tables, Path.cwd())),
            allow_serials=frozenset(self.allow_serials),
            deny_serials=frozenset(self.deny_serials),
            unlisted_devices=self.unlisted_devices,
            approval_retry_after_s=self.approval_retry_after_s,
            audit_review=self.audit_review,
            audit_allowed_domains=frozenset(self.audit_allowed_domains),
            audit_other_domains=self.audit_other_domains,
        )
        object.__setattr__(self, "admission", admission)
        ldevid = profiles_from_config(
            subject=self.ldevid_subject, eku=self.ldevid_eku, san=self.ldevid_san,
            csr_extras=self.ldevid_csr_extras, profiles=self.ldevid_profiles,
        )
        object.__setattr__(self, "ldevid", ldevid)
        if not isinstance(self.network_access, NetworkAccessConfig):  # parsed by load_config, else here
            object.__setattr__(self, "network_access", parse_network_access(self.network_access, Path.cwd()))
        if not self.manufacturer_anchors and not self.admission.manufacturers:
            raise ConfigError(
                "at least one manufacturer anchor (or [[registrar.manufacturers]] entry) is needed",
                check="config.anchors",
            )
        if (self.masa_client_cert is None) != (self.masa_client_key is None):
            raise ConfigError("masa_client_cert and masa_client_key go together", check="config.masa-client")
        if is_pkcs11_uri(self.ra_key) and self.masa_client_key is None:
            # OpenSSL (Python's ssl) can only use a key it can read for TLS.
            raise ConfigError(
                "ra_key is in a PKCS#11 token: set masa_client_cert and masa_client_key "
                "(a file key with id-kp-cmcRA and clientAuth) for the TLS connection to the MASA",
                check="config.masa-client",
            )
        if not all(self.mdns_interfaces) or not all(self.proxy_addresses):
            raise ConfigError("mdns_interfaces and proxy_addresses take no empty names", check="config.network")
        if self.mdns_interfaces and self.port == 0:
            raise ConfigError("mdns_interfaces: announcing needs a fixed port", check="config.network")
        if self.masa_url_override is not None and not self.masa_url_override.startswith("https://"):
            raise ConfigError("masa_url_override must be an https:// URL", check="config.masa-url")


def example_config() -> str:
    """The documented ``registrar.toml``, generated from the schema."""
    return example_toml(RegistrarConfig, title="brski registrar configuration (brski registrar serve --config registrar.toml)")


def _file_tables(tables: dict[str, Any], base: Path) -> dict[str, Any]:
    """The tables with what is relative to the file resolved against it:
    a relative SQLite path and the manufacturers' anchors."""
    reg = tables.get(_R)
    if not isinstance(reg, dict):
        return tables
    reg = dict(reg)
    if isinstance(reg.get("database"), str):
        reg["database"] = resolve_sqlite_url(reg["database"], base)
    if "manufacturers" in reg:
        reg["manufacturers"] = parse_manufacturers(reg["manufacturers"], base)
    if "network_access" in reg:
        reg["network_access"] = parse_network_access(reg["network_access"], base)
    return {**tables, _R: reg}


def load_config(path: Path | None, overrides: dict[str, Any]) -> RegistrarConfig:
    tables, source, base = read_toml(path)
    try:
        check_tables(RegistrarConfig, tables, source=source)
        return load_settings(RegistrarConfig, _file_tables(tables, base), overrides, source=source, base=base)
    except ConfigError as exc:
        if exc.detail.startswith(source):
            raise
        # A rule checked after the keys (a table's contents, a cross-field rule): name the file too.
        raise ConfigError(f"{source}: {exc.detail}", check=exc.check) from None


def database_url(path: Path | None, override: str | None) -> str:
    """The store URL alone, for commands that need nothing else."""
    if override:
        return override
    tables, source, base = read_toml(path)
    check_tables(RegistrarConfig, tables, source=source)
    db = tables.get(_R, {}).get("database")
    if db is not None and not isinstance(db, str):
        raise ConfigError(f"{source}: [registrar] database = {db!r:.60}: expected a string", check="config.type")
    return resolve_sqlite_url(db, base) if db else DEFAULT_DATABASE
