"""MASA configuration: a TOML file (``--config``) and flags that override it.

The dataclass below is the schema (``brski.settings``): every key, its
section, default, type, range and help. ``brski masa config-example`` prints
the documented example file it generates.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from brski.errors import ConfigError
from brski.settings import REQUIRED, check_tables, example_toml, load_settings, setting
from brski_config import read_toml, resolve_sqlite_url
from brski_hsm import KeyRef, Pkcs11Settings
from brski_web import server_settings as common
from brski_web.workers import check_workers

__all__ = ["MasaConfig", "database_url", "example_config", "load_config"]

_S, _M = "server", "masa"
DEFAULT_DATABASE = "sqlite:///var/masa.db"


@dataclass(frozen=True, kw_only=True)
class MasaConfig:
    host: str = setting("127.0.0.1", section=_S, help="address to listen on")
    port: int = setting(8443, section=_S, min=0, max=65535, help="HTTPS port (0: any free port)")
    tls_backend: str = setting(
        "pyopenssl", section=_S, choices=("pyopenssl", "stdlib"),
        help="pyopenssl: any registrar chain reaches the application, which decides (RFC 8995 5.5.4);\n"
        "stdlib: OpenSSL refuses registrars outside client_cas in the handshake",
    )
    tls_cert: Path = setting(REQUIRED, section=_S, path=True, example="certs/dev/masa/tls.crt",
                             help="the MASA's TLS certificate chain (PEM, leaf first)")
    tls_key: Path = setting(REQUIRED, section=_S, path=True, example="certs/dev/masa/tls.key",
                            help="its private key (PEM)")
    client_cas: list[Path] = setting([], section=_S, path=True, example=["certs/dev/registrar/domain-ca.crt"],
                                     help="CAs whose registrars may connect with a client certificate (stdlib TLS)")
    client_auth: str = setting("optional", section=_S, choices=("optional", "require"),
                               help="ask registrars for a client certificate, or require one")
    workers: int = setting(1, section=_S, min=1, max=64,
                           help="worker processes serving the port (brski_web/workers.py); more than 1 needs PostgreSQL")
    ready_file: Path | None = common.ready_file(_S)
    log_level: str = common.log_level(_S)
    metrics_port: int | None = common.metrics_port(_S, example=9443)
    metrics_host: str | None = common.metrics_host(_S)
    database: str = setting(DEFAULT_DATABASE, section=_M,
                            help="store URL; a relative sqlite:/// path is relative to this file")
    signer_cert: Path = setting(REQUIRED, section=_M, path=True, example="certs/dev/masa/voucher-signer.crt",
                                help="certificate that signs vouchers (RFC 8366)")
    signer_key: KeyRef = setting(REQUIRED, section=_M, path=True, uri_schemes=("pkcs11",),
                                 example="certs/dev/masa/voucher-signer.key",
                                 help="its private key: a PEM file, or an RFC 7512 pkcs11: URI (keys in an HSM)")
    signer_chain: list[Path] = setting([], section=_M, path=True,
                                       help="intermediates carried in signed vouchers")
    manufacturer_anchors: list[Path] = setting(
        REQUIRED, section=_M, path=True, example=["certs/dev/manufacturer/root-ca.crt"],
        help="roots of the IDevIDs this manufacturer made (pledge voucher-requests chain to them)",
    )
    ownership: str = setting("open", section=_M, choices=("open", "sales-records"),
                             help="open: any authenticated registrar; sales-records: only a device's recorded owner")
    nonceless_voucher_days: int = setting(30, section=_M, min=1, max=3650,
                                          help="validity of a nonceless voucher (RFC 8366 expires-on)")
    max_body_bytes: int = setting(65536, section=_M, min=1024, max=16 * 1024 * 1024,
                                  help="largest request body accepted")
    rate_limit_per_minute: float = setting(0.0, section=_M, min=0,
                                           help="vouchers per minute per registrar signing key (RFC 8995 11.1); 0 = off")
    rate_limit_burst: int = setting(20, section=_M, min=1, help="token bucket size for the rate limit")
    body_read_timeout_s: float = setting(10.0, section=_M, min=0.001,
                                         help="a request body must arrive within this many seconds")
    # The web console (/console/, masa/console.py); no admin configured: it answers 403.
    admin_ca: list[Path] = setting([], section=_M, path=True, example=["certs/dev/manufacturer/root-ca.crt"],
                                   help="CAs an admin's client certificate must chain to (the web console)")
    admin_subjects: list[str] = setting([], section=_M, example=["CN=masa admin,O=brski dev manufacturer"],
                                        help="admin certificates by RFC 4514 subject")
    admin_fingerprints: list[str] = common.admin_fingerprints(_M)
    allow_inconsistent: bool = setting(
        False, section=_M,
        help="serve although the store disagrees with its own event log (docs/evidence.md);\n"
        "logged and recorded; normally only as the flag --allow-inconsistent",
    )
    # RFC 8520: MUD files and their detached signatures, served at /mud/NAME (masa/mud.py).
    mud_dir: Path | None = setting(None, section=_M, path=True, example="mud",
                                   help="directory of MUD files (NAME.json) and signatures (NAME.p7s) served at /mud/")
    pkcs11_module: str | None = common.pkcs11_module(_M)
    pkcs11_pin_file: Path | None = common.pkcs11_pin_file(_M)
    pkcs11_pin_env: str | None = common.pkcs11_pin_env(_M)

    @property
    def pkcs11(self) -> Pkcs11Settings:
        return Pkcs11Settings(module=self.pkcs11_module, pin_file=self.pkcs11_pin_file, pin_env=self.pkcs11_pin_env)

    def __post_init__(self) -> None:
        check_workers(self.workers, self.database)
        if not self.manufacturer_anchors:
            raise ConfigError("at least one manufacturer anchor is needed", check="config.anchors")


def example_config() -> str:
    """The documented ``masa.toml``, generated from the schema."""
    return example_toml(MasaConfig, title="brski MASA configuration (brski masa serve --config masa.toml)")


def load_config(path: Path | None, overrides: dict[str, Any]) -> MasaConfig:
    tables, source, base = read_toml(path)
    db = tables.get(_M, {}).get("database")
    if isinstance(db, str):  # a relative SQLite path in the file is relative to the file
        tables = {**tables, _M: {**tables[_M], "database": resolve_sqlite_url(db, base)}}
    return load_settings(MasaConfig, tables, overrides, source=source, base=base)


def database_url(path: Path | None, override: str | None) -> str:
    """The store URL alone, for commands that need nothing else."""
    if override:
        return override
    tables, source, base = read_toml(path)
    check_tables(MasaConfig, tables, source=source)
    db = tables.get(_M, {}).get("database")
    if db is not None and not isinstance(db, str):
        raise ConfigError(f"{source}: [masa] database = {db!r:.60}: expected a string", check="config.type")
    return resolve_sqlite_url(db, base) if db else DEFAULT_DATABASE
