"""`brski pki`: create and inspect the development PKI on disk.

The PKI itself is built in memory by :func:`brski.devpki.build_dev_pki`; this
module only decides where it goes, refuses to clobber an existing one by
accident (a regenerated root silently invalidates every enrolled pledge), and
keeps private keys unreadable by other users.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509

from brski.devpki import DevPki, build_dev_pki
from brski.errors import BrskiError

__all__ = ["add_parser", "run_init", "run_show"]

DEFAULT_OUT = "certs/dev"
# The subdirectories build_dev_pki writes; --force clears only what it owns.
_OWNED_DIRS = ("manufacturer", "masa", "registrar", "pledges")
_MARKER = "manufacturer/root-ca.crt"


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


def run_init(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if (out / _MARKER).exists() and not args.force:
        _err(f"{out} already holds a PKI ({_MARKER}); use --force to replace it")
        return 1
    try:
        pki = build_dev_pki(
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
    except OSError as exc:
        _err(f"cannot write {out}: {exc}")
        return 1
    print(
        f"wrote development PKI to {out}: {len(pki.files)} files, "
        f"{len(pki.pledge_serials)} pledges (development fixtures, not for production)"
    )
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
