"""Pledge simulator configuration: a TOML ``[pledge]`` table plus CLI overrides.

:class:`PledgeSettings` is the schema of the table (``brski.settings``): every
key, its type, range and help; ``brski pledge config-example`` prints the
documented example file it generates. :func:`load_config` resolves those
settings once into a :class:`PledgeConfig` (the registrar URL parsed, a dev-PKI
``dir`` expanded, the files checked), so the driver never meets a half-formed
setting in the middle of a TLS session. Relative paths in the file are
relative to the file, so a config can live next to its dev PKI.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from brski import oids
from brski.errors import ConfigError
from brski.settings import example_toml, load_settings, setting
from brski_config import read_toml

__all__ = ["FORMATS", "KEY_TYPES", "PledgeConfig", "PledgeSettings", "example_config", "load_config"]

#: ``--format`` values -> voucher media types (RFC 8366, constrained-voucher, jws-voucher).
FORMATS: Mapping[str, str] = {
    "cms": oids.MT_VOUCHER_CMS_JSON,
    "cose": oids.MT_VOUCHER_COSE_CBOR,
    "jws": oids.MT_VOUCHER_JWS_JSON,
}
KEY_TYPES = ("ec-p256", "ec-p384", "ed25519")
_P = "pledge"


@dataclass(frozen=True, kw_only=True)
class PledgeSettings:
    """The ``[pledge]`` table: what an operator writes (or passes as flags)."""

    registrar: str | None = setting(
        None, section=_P, example="https://localhost:8444",
        help="the registrar's https://host[:port] URL;\n"
        "absent or \"auto\": discover a registrar or join proxy over mDNS (RFC 8995 4.1)",
    )
    dir: Path | None = setting(
        None, section=_P, path=True, example="certs/dev/pledges/PLG-000001",
        help="a dev-PKI pledge directory: idevid.crt, idevid.key, chain.pem, and the manufacturer root",
    )
    idevid: Path | None = setting(None, section=_P, path=True, help="the IDevID certificate (PEM; default dir's)")
    key: Path | None = setting(None, section=_P, path=True, help="its private key (PEM; default dir's)")
    chain: Path | None = setting(None, section=_P, path=True, help="intermediates sent with the IDevID")
    anchor: Path | list[Path] | None = setting(None, section=_P, path=True,
                                               help="manufacturer trust anchor(s) for the voucher (same as anchors)")
    anchors: Path | list[Path] | None = setting(None, section=_P, path=True,
                                                help="manufacturer trust anchors for the voucher")
    out: Path | None = setting(None, section=_P, path=True, example="out/PLG-000001",
                               help="directory the voucher, LDevID and domain CA are saved in")
    domain_ca: Path | None = setting(None, section=_P, path=True,
                                     help="domain CA bundle for re-enrollment (default <out>/domain-ca.pem)")
    format: str = setting("cms", section=_P, choices=tuple(FORMATS),
                          help="voucher format asked for: cms (RFC 8366), cose (constrained), jws")
    key_type: str = setting("ec-p256", section=_P, choices=KEY_TYPES, help="the LDevID key pair's type")
    server_hostname: str | None = setting(None, section=_P,
                                          help="SNI to send (default the URL's host; \"\" sends none)")
    timeout: float = setting(30.0, section=_P, min=0.001, max=3600, help="seconds per network operation")
    max_voucher_attempts: int = setting(10, section=_P, min=1,
                                        help="voucher-request attempts (202 Retry-After, RFC 8995 5.6)")
    max_enroll_attempts: int = setting(10, section=_P, min=1, help="enrollment attempts (202 Retry-After, RFC 7030 4.2.3)")
    chunked: bool = setting(False, section=_P,
                            help="send request bodies with Transfer-Encoding: chunked (registrar interop tests)")
    enroll_status_reconnect: bool = setting(
        True, section=_P, help="send enrollstatus over a new TLS session with the new LDevID (RFC 8995 5.9.4)",
    )
    accept_nonceless: bool = setting(False, section=_P, help="accept a voucher without the nonce asked for")
    interfaces: str | list[str] = setting(
        [], section=_P, help="discovery: links browsed over mDNS (default every link with a link-local address)",
    )
    discovery_timeout: float = setting(5.0, section=_P, min=0.001, max=3600, help="discovery: seconds spent browsing")
    candidate_timeout: float = setting(60.0, section=_P, min=0.001, max=3600,
                                       help="discovery: seconds given each candidate before the next")


@dataclass(frozen=True, kw_only=True)
class PledgeConfig:
    """The settings resolved for one run (see :class:`PledgeSettings` for each)."""

    registrar_url: str
    host: str
    port: int
    idevid: Path | None = None
    key: Path | None = None
    chain: Path | None = None
    anchors: tuple[Path, ...] = ()
    out: Path | None = None
    media_type: str = oids.MT_VOUCHER_CMS_JSON
    domain_ca: Path | None = None
    server_hostname: str | None = None
    timeout: float = 30.0
    max_voucher_attempts: int = 10
    max_enroll_attempts: int = 10
    chunked: bool = False
    enroll_status_reconnect: bool = True
    key_type: str = "ec-p256"
    accept_nonceless: bool = False
    # Discovery (RFC 8995 4.1): no registrar URL given (or "auto").
    discover: bool = False
    interfaces: tuple[str, ...] = ()
    discovery_timeout: float = 5.0
    candidate_timeout: float = 60.0


def _parse_registrar(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise ConfigError(
            f"registrar: {url!r} is not an https://host[:port] URL", check="pledge.config.registrar"
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ConfigError(
            f"registrar: {url!r} must have no path, query or user info",
            check="pledge.config.registrar",
        )
    try:
        port = parts.port or 443
    except ValueError as exc:
        raise ConfigError(
            f"registrar: bad port in {url!r}", check="pledge.config.registrar"
        ) from exc
    return url.rstrip("/"), parts.hostname, port


def example_config() -> str:
    """The documented ``pledge.toml``, generated from the schema."""
    return example_toml(PledgeSettings, title="brski pledge configuration (brski pledge enroll --config pledge.toml)")


def load_config(
    path: Path | str | None,
    overrides: Mapping[str, Any] | None = None,
    *,
    purpose: Literal["enroll", "reenroll"] = "enroll",
) -> PledgeConfig:
    """Merge the file's ``[pledge]`` table with ``overrides`` (CLI flags; ``None``
    or empty values mean "not given") and validate the result for ``purpose``."""
    tables, source, base = read_toml(Path(path) if path is not None else None)
    given = {k: (None if v == [] or v == () else v) for k, v in (overrides or {}).items()}
    unknown = set(given) - set(PledgeSettings.__dataclass_fields__)
    if unknown:
        raise ConfigError(f"unknown setting(s): {', '.join(sorted(unknown))}", check="config.unknown-key")
    s = load_settings(PledgeSettings, tables, given, source=source, base=base)
    if path is None:
        return _resolve(s, purpose)
    try:
        return _resolve(s, purpose)
    except ConfigError as exc:  # a rule checked after the keys: name the file too
        raise ConfigError(f"{source}: {exc.detail}", check=exc.check) from None


def _paths(value: Path | list[Path] | None) -> list[Path]:
    return [] if value is None else [value] if isinstance(value, Path) else list(value)


def _resolve(s: PledgeSettings, purpose: str) -> PledgeConfig:
    discover = s.registrar in (None, "auto")
    if discover and purpose != "enroll":
        raise ConfigError(
            "registrar: re-enrollment needs the registrar's URL", check="pledge.config.registrar"
        )
    url, host, port = ("auto", "", 0) if discover else _parse_registrar(s.registrar or "")
    interfaces = [s.interfaces] if isinstance(s.interfaces, str) else s.interfaces
    if not all(interfaces):
        raise ConfigError("interfaces: expected a list of interface names", check="pledge.config")
    idevid, key, chain = s.idevid, s.key, s.chain
    anchors = _paths(s.anchors) or _paths(s.anchor)
    if s.dir is not None:
        # The dev-PKI layout of brski.devpki: pledges/<SERIAL>/idevid.{crt,key}, chain.pem,
        # and the manufacturer root two levels up.
        if not s.dir.is_dir():
            raise ConfigError(f"dir: {s.dir} is not a directory", check="pledge.config")
        idevid = idevid or s.dir / "idevid.crt"
        key = key or s.dir / "idevid.key"
        if chain is None and (s.dir / "chain.pem").exists():
            chain = s.dir / "chain.pem"
        root = s.dir.parent.parent / "manufacturer" / "root-ca.crt"
        if not anchors and root.exists():
            anchors = [root]
    if purpose == "enroll":
        missing = [n for n, v in (("idevid", idevid), ("key", key)) if v is None]
        if missing:
            raise ConfigError(f"missing {', '.join(missing)} (or --dir)", check="pledge.config")
        if not anchors:
            raise ConfigError(
                "at least one manufacturer trust anchor (--anchor) is required",
                check="pledge.config",
            )
    for name, value in (("idevid", idevid), ("key", key), ("chain", chain)):
        if value is not None and not value.is_file():
            raise ConfigError(f"{name}: {value} does not exist", check="pledge.config")
    for anchor in anchors:
        if not anchor.is_file():
            raise ConfigError(f"anchor: {anchor} does not exist", check="pledge.config")
    # The settings kept as they are, then those resolved here.
    same = {n: getattr(s, n) for n in PledgeConfig.__dataclass_fields__ if n in PledgeSettings.__dataclass_fields__}
    return PledgeConfig(**{
        **same, "registrar_url": url, "host": host, "port": port, "discover": discover,
        "idevid": idevid, "key": key, "chain": chain, "anchors": tuple(anchors), "interfaces": tuple(interfaces),
        "media_type": FORMATS[s.format],
    })
