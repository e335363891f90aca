"""`brski pki`: create and inspect the development PKI on disk.

The PKI itself is built in memory by :func:`brski.devpki.build_dev_pki`; this
module only decides where it goes, refuses to clobber an existing one by
accident (a regenerated root silently invalidates every enrolled pledge), and
keeps private keys unreadable by other users.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509

from brski.devpki import EXTERNAL_KEY_PATHS, DevPki, build_dev_pki
from brski.errors import BrskiError, ConfigError

__all__ = ["add_parser", "run_init", "run_show"]

DEFAULT_OUT = "certs/dev"
# The subdirectories build_dev_pki writes; --force clears only what it owns.
_OWNED_DIRS = ("manufacturer", "masa", "registrar", "pledges")
_MARKER = "manufacturer/root-ca.crt"
#: Where `init --pkcs11` lists the token keys' URIs ({dev PKI path: pkcs11 URI}).
PKCS11_INDEX = "pkcs11-keys.json"
#: CKA_LABEL of each token key `init --pkcs11` generates.
_TOKEN_LABELS = {
    "registrar/domain-ca": "brski-domain-ca",
    "registrar/ra": "brski-registrar-ra",
    "masa/voucher-signer": "brski-masa-voucher-signer",
}


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    pki = subparsers.add_parser("pki", help="development PKI (certificates and keys)")
    sub = pki.add_subparsers(dest="pki_command", required=True)

    init = sub.add_parser("init", help="generate a development PKI into a directory")
    init.add_argument("--out", default=DEFAULT_OUT, help=f"directory (default {DEFAULT_OUT})")
    init.add_argument("--pledges", type=int, default=3, help="number of pledge IDevIDs")
    init.add_argument(
        "--masa-url",
        default="https://localhost:8443",
        help="value of the IDevIDs' id-pe-masa-url extension (RFC 8995 section 2.3.2)",
    )
    init.add_argument(
        "--registrar-host",
        action="append",
        dest="registrar_hosts",
        metavar="HOST",
        help="DNS name or IP for the registrar TLS SAN (repeatable; default localhost, 127.0.0.1)",
    )
    init.add_argument(
        "--masa-host",
        action="append",
        dest="masa_hosts",
        metavar="HOST",
        help="DNS name or IP for the MASA TLS SAN (repeatable; default localhost, 127.0.0.1)",
    )
    init.add_argument("--force", action="store_true", help="replace an existing PKI")
    init.add_argument(
        "--pkcs11",
        metavar="URI",
        help="RFC 7512 token URI (e.g. 'pkcs11:token=brski'): generate the domain CA, RA and "
        f"voucher-signer keys in that token, non-extractable; their URIs go to {PKCS11_INDEX}",
    )
    init.add_argument("--pkcs11-module", metavar="PATH", help="PKCS#11 module (or module-path in the URI)")
    init.add_argument("--pkcs11-pin-file", metavar="PATH", type=Path, help="file holding the user PIN")
    init.add_argument(
        "--pkcs11-pin-env", metavar="NAME", default="BRSKI_PKCS11_PIN",
        help="environment variable holding the user PIN (default BRSKI_PKCS11_PIN)",
    )
    init.set_defaults(func=run_init)

    show = sub.add_parser("show", help="list the certificates of a PKI directory")
    show.add_argument("--dir", default=DEFAULT_OUT, dest="dir", help=f"(default {DEFAULT_OUT})")
    show.set_defaults(func=run_show)


def _err(msg: str) -> None:
    print(f"brski pki: {msg}", file=sys.stderr)


def _write_file(path: Path, content: bytes, mode: int) -> None:
    """Write atomically, with ``mode`` set before any byte lands on disk."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(content)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _clear_owned(out: Path) -> None:
    """Remove the files a previous init wrote, so no stale pledge survives --force."""
    for sub in _OWNED_DIRS:
        base = out / sub
        if not base.is_dir():
            continue
        for f in sorted(base.rglob("*"), reverse=True):
            if f.is_file() and f.suffix in (".crt", ".key", ".pem"):
                f.unlink()
            elif f.is_dir() and not any(f.iterdir()):
                f.rmdir()


def write_dev_pki(out: Path, pki: DevPki, *, force: bool) -> None:
    """Write every file, keys 0600 from their first byte; --force clears the old PKI."""
    if force:
        _clear_owned(out)
    out.mkdir(parents=True, exist_ok=True)
    for rel, content in sorted(pki.files.items()):
        mode = 0o600 if rel.endswith(".key") else 0o644
        _write_file(out / rel, content, mode)


def key_uri(token_uri: str, label: str) -> str:
    """The token URI with ``object=label`` added to its path (RFC 7512 section 2.3)."""
    path, sep, query = token_uri.partition("?")
    if ";object=" in f";{path[7:]}" or ";id=" in f";{path[7:]}":
        raise ConfigError("--pkcs11 names the token only; the key labels are chosen here", check="pkcs11.uri")
    return f"{path.rstrip(';')}{';' if path[7:] else ''}object={label}{sep}{query}"


def _token_keys(args: argparse.Namespace) -> tuple[dict[str, str], Callable[[str], Any]] | None:
    if not args.pkcs11:
        return None
    from brski_hsm import Pkcs11Settings, generate_token_key, token_has_key

    settings = Pkcs11Settings(module=args.pkcs11_module, pin_file=args.pkcs11_pin_file, pin_env=args.pkcs11_pin_env)
    uris = {path: key_uri(args.pkcs11, label) for path, label in _TOKEN_LABELS.items()}
    # All labels free before the first key is made: no half-made PKI in the token.
    taken = [uri for uri in uris.values() if token_has_key(uri, settings)]
    if taken:
        raise ConfigError(
            f"the token already holds {', '.join(taken)}; use a fresh token or delete those objects",
            check="pkcs11.key-exists",
        )
    return uris, lambda path: generate_token_key(uris[path], settings)


def run_init(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if (out / _MARKER).exists() and not args.force:
        _err(f"{out} already holds a PKI ({_MARKER}); use --force to replace it")
        return 1
    assert tuple(_TOKEN_LABELS) == EXTERNAL_KEY_PATHS
    try:
        token = _token_keys(args)
        pki = build_dev_pki(
            external_key=token[1] if token else None,
            pledges=args.pledges,
            masa_url=args.masa_url,
            registrar_hosts=tuple(args.registrar_hosts or ("localhost", "127.0.0.1")),
            masa_hosts=tuple(args.masa_hosts or ("localhost", "127.0.0.1")),
            now=datetime.now(UTC),
        )
    except BrskiError as exc:
        _err(f"{exc.detail} ({exc.check})")
        return 1
    try:
        write_dev_pki(out, pki, force=args.force)
        if token:
            _write_file(out / PKCS11_INDEX, json.dumps(token[0], indent=2).encode() + b"\n", 0o644)
        elif args.force:
            (out / PKCS11_INDEX).unlink(missing_ok=True)
    except OSError as exc:
        _err(f"cannot write {out}: {exc}")
        return 1
    print(
        f"wrote development PKI to {out}: {len(pki.files)} files, "
        f"{len(pki.pledge_serials)} pledges (development fixtures, not for production)"
    )
    for path, uri in (token[0] if token else {}).items():
        print(f"  {path} key in the token: {uri}")
    return 0


def _rows(base: Path) -> list[tuple[str, str, str, str, str]]:
    rows: list[tuple[str, str, str, str, str]] = []
    for path in sorted(base.rglob("*")):
        if not path.is_file() or path.suffix not in (".crt", ".pem"):
            continue
        rel = path.relative_to(base).as_posix()
        data = path.read_bytes()
        try:
            certs = x509.load_pem_x509_certificates(data)
        except ValueError:
            try:
                certs = [x509.load_der_x509_certificate(data)]
            except ValueError:
                rows.append((rel, "(unreadable)", "", "", ""))
                continue
        for i, cert in enumerate(certs):
            name = rel if len(certs) == 1 else f"{rel}[{i}]"
            rows.append(
                (
                    name,
                    cert.subject.rfc4514_string(),
                    cert.issuer.rfc4514_string(),
                    f"{cert.serial_number:x}",
                    cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
                )
            )
    return rows


def run_show(args: argparse.Namespace) -> int:
    base = Path(args.dir)
    if not base.is_dir():
        _err(f"{base} is not a directory (create one with `brski pki init --out {base}`)")
        return 1
    rows = _rows(base)
    if not rows:
        _err(f"no certificates under {base}")
        return 1
    header = ("file", "subject", "issuer", "serial", "notAfter")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(col.ljust(w) for col, w in zip(row, widths, strict=True)).rstrip())
    return 0
