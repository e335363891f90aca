"""Pledge simulator configuration: a TOML ``[pledge]`` table plus CLI overrides.

Everything is resolved and validated here, once, so the driver never meets a
half-formed setting in the middle of a TLS session.  Relative paths in the
file are relative to the file, so a config can live next to its dev PKI.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from brski import oids
from brski.errors import ConfigError

__all__ = ["FORMATS", "PledgeConfig", "load_config"]

#: ``--format`` values -> voucher media types (RFC 8366, constrained-voucher, jws-voucher).
FORMATS: Mapping[str, str] = {
    "cms": oids.MT_VOUCHER_CMS_JSON,
    "cose": oids.MT_VOUCHER_COSE_CBOR,
    "jws": oids.MT_VOUCHER_JWS_JSON,
}

_KEYS = {
    "registrar",
    "idevid",
    "key",
    "chain",
    "anchor",
    "anchors",
    "out",
    "format",
    "dir",
    "domain_ca",
    "server_hostname",
    "timeout",
    "max_voucher_attempts",
    "max_enroll_attempts",
    "chunked",
    "enroll_status_reconnect",
    "key_type",
    "accept_nonceless",
    # discovery (RFC 8995 4.1): registrar = "auto" (or absent) browses these
    "interfaces",
    "discovery_timeout",
    "candidate_timeout",
}
KEY_TYPES = ("ec-p256", "ec-p384", "ed25519")


@dataclass(frozen=True, kw_only=True)
class PledgeConfig:
    registrar_url: str
    host: str
    port: int
    idevid: Path | None = None
    key: Path | None = None
    chain: Path | None = None
    anchors: tuple[Path, ...] = ()
    out: Path | None = None
    media_type: str = oids.MT_VOUCHER_CMS_JSON
    # Domain CA bundle for re-enrollment (defaults to <out>/domain-ca.pem).
    domain_ca: Path | None = None
    # SNI to send; defaults to the URL host.  "" disables SNI.
    server_hostname: str | None = None
    timeout: float = 30.0
    max_voucher_attempts: int = 10
    max_enroll_attempts: int = 10
    # Send request bodies with Transfer-Encoding: chunked (registrar interop tests).
    chunked: bool = False
    # RFC 8995 5.9.4: a successful enrollstatus SHOULD go over a new TLS session
    # using the new LDevID.
    enroll_status_reconnect: bool = True
    key_type: str = "ec-p256"
    accept_nonceless: bool = False
    # Discovery (RFC 8995 4.1): no registrar URL given (or "auto"); the pledge
    # browses mDNS on `interfaces` (default: every link with a link-local
    # address) for at most `discovery_timeout` s, then gives each candidate at
    # most `candidate_timeout` s before moving on to the next.
    discover: bool = False
    interfaces: tuple[str, ...] = ()
    discovery_timeout: float = 5.0
    candidate_timeout: float = 60.0


def _path(value: Any, base: Path, name: str) -> Path:
    if not isinstance(value, str | Path) or not str(value):
        raise ConfigError(f"{name}: expected a path, got {value!r}", check="pledge.config")
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def _parse_registrar(url: Any) -> tuple[str, str, int]:
    if not isinstance(url, str) or not url:
        raise ConfigError(
            "registrar: a URL like https://host:8443 is required", check="pledge.config.registrar"
        )
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


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(
            f"{name}: expected a positive integer, got {value!r}", check="pledge.config"
        )
    return value


def _bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{name}: expected true or false, got {value!r}", check="pledge.config")
    return value


def _read_table(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            doc = tomllib.load(fh)
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} not found", check="pledge.config") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: {exc}", check="pledge.config") from exc
    table = doc.get("pledge", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [pledge] must be a table", check="pledge.config")
    unknown = set(table) - _KEYS
    if unknown:
        raise ConfigError(
            f"{path}: unknown [pledge] keys: {', '.join(sorted(unknown))}", check="pledge.config"
        )
    return table


def load_config(
    path: Path | str | None,
    overrides: Mapping[str, Any] | None = None,
    *,
    purpose: Literal["enroll", "reenroll"] = "enroll",
) -> PledgeConfig:
    """Merge the file's ``[pledge]`` table with ``overrides`` (CLI flags; ``None``
    values mean "not given") and validate the result for ``purpose``."""
    file_base = Path.cwd()
    merged: dict[str, Any] = {}
    if path is not None:
        cfg_path = Path(path)
        merged.update(_read_table(cfg_path))
        file_base = cfg_path.resolve().parent
    # Paths from the file resolve against the file; paths from the CLI against cwd.
    bases: dict[str, Path] = dict.fromkeys(merged, file_base)
    for name, value in (overrides or {}).items():
        if value is None or value == [] or value == ():
            continue
        if name not in _KEYS:
            raise ConfigError(f"unknown setting {name!r}", check="pledge.config")
        merged[name] = value
        bases[name] = Path.cwd()

    def p(name: str) -> Path | None:
        return _path(merged[name], bases[name], name) if merged.get(name) is not None else None

    discover = merged.get("registrar") in (None, "auto")
    if discover and purpose != "enroll":
        raise ConfigError(
            "registrar: re-enrollment needs the registrar's URL", check="pledge.config.registrar"
        )
    url, host, port = ("auto", "", 0) if discover else _parse_registrar(merged.get("registrar"))
    interfaces = merged.get("interfaces", [])
    if isinstance(interfaces, str):
        interfaces = [interfaces]
    if not isinstance(interfaces, list | tuple) or not all(isinstance(i, str) and i for i in interfaces):
        raise ConfigError("interfaces: expected a list of interface names", check="pledge.config")
    idevid, key, chain = p("idevid"), p("key"), p("chain")
    raw_anchors = merged.get("anchors", merged.get("anchor", []))
    anchor_base = bases.get("anchors", bases.get("anchor", file_base))
    if isinstance(raw_anchors, str | Path):
        raw_anchors = [raw_anchors]
    if not isinstance(raw_anchors, list | tuple):
        raise ConfigError("anchor: expected a path or a list of paths", check="pledge.config")
    anchors = [_path(a, anchor_base, "anchor") for a in raw_anchors]

    pledge_dir = p("dir")
    if pledge_dir is not None:
        # The dev-PKI layout of brski.devpki: pledges/<SERIAL>/idevid.{crt,key}, chain.pem,
        # and the manufacturer root two levels up.
        if not pledge_dir.is_dir():
            raise ConfigError(f"dir: {pledge_dir} is not a directory", check="pledge.config")
        idevid = idevid or pledge_dir / "idevid.crt"
        key = key or pledge_dir / "idevid.key"
        if chain is None and (pledge_dir / "chain.pem").exists():
            chain = pledge_dir / "chain.pem"
        root = pledge_dir.parent.parent / "manufacturer" / "root-ca.crt"
        if not anchors and root.exists():
            anchors = [root]

    fmt = merged.get("format", "cms")
    if fmt not in FORMATS:
        raise ConfigError(
            f"format: expected one of {', '.join(FORMATS)}, got {fmt!r}", check="pledge.config"
        )
    key_type = merged.get("key_type", "ec-p256")
    if key_type not in KEY_TYPES:
        raise ConfigError(
            f"key_type: expected one of {', '.join(KEY_TYPES)}", check="pledge.config"
        )
    timeout = merged.get("timeout", 30.0)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= 3600:
        raise ConfigError(
            f"timeout: expected seconds in (0, 3600], got {timeout!r}", check="pledge.config"
        )
    bounds: dict[str, float] = {}
    for name, default in (("discovery_timeout", 5.0), ("candidate_timeout", 60.0)):
        value = merged.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 3600:
            raise ConfigError(
                f"{name}: expected seconds in (0, 3600], got {value!r}", check="pledge.config"
            )
        bounds[name] = float(value)
    server_hostname = merged.get("server_hostname")
    if server_hostname is not None and not isinstance(server_hostname, str):
        raise ConfigError("server_hostname: expected a string", check="pledge.config")

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

    return PledgeConfig(
        registrar_url=url,
        host=host,
        port=port,
        idevid=idevid,
        key=key,
        chain=chain,
        anchors=tuple(anchors),
        out=p("out"),
        media_type=FORMATS[fmt],
        domain_ca=p("domain_ca"),
        server_hostname=server_hostname,
        timeout=float(timeout),
        max_voucher_attempts=_positive_int(
            merged.get("max_voucher_attempts", 10), "max_voucher_attempts"
        ),
        max_enroll_attempts=_positive_int(
            merged.get("max_enroll_attempts", 10), "max_enroll_attempts"
        ),
        chunked=_bool(merged.get("chunked", False), "chunked"),
        enroll_status_reconnect=_bool(
            merged.get("enroll_status_reconnect", True), "enroll_status_reconnect"
        ),
        key_type=key_type,
        accept_nonceless=_bool(merged.get("accept_nonceless", False), "accept_nonceless"),
        discover=discover,
        interfaces=tuple(interfaces),
        discovery_timeout=bounds["discovery_timeout"],
        candidate_timeout=bounds["candidate_timeout"],
    )
