"""``brski masa ...``: serve the MASA and manage what it knows.

Exit codes: 0 success, 1 the operation was refused or failed, 2 usage or
configuration error.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from brski.pki import (
    device_serial,
    fingerprint_sha256,
    load_cert,
    load_certs,
    spki_sha256,
)
from brski_storage import open_masa_store
from brski_web.audit_cli import add_audit_commands
from brski_web.cli import run_command
from brski_web.logs import configure_logging
from brski_web.serve import run_server, server_tls
from brski_web.store_cli import add_store_commands
from brski_web.workers import WorkerPorts, serve_command
from masa.config import MasaConfig, database_url, example_config, load_config
from masa.owners import add_owner, remove_owner

__all__ = ["add_parser", "main"]


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="TOML config file ([server] and [masa] tables)")
    p.add_argument("--database", help="store URL, e.g. sqlite:///var/masa.db")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    keys = [
        "host", "port", "tls_backend", "tls_cert", "tls_key", "client_cas", "database", "signer_cert", "signer_key",
        "signer_chain", "manufacturer_anchors", "ownership", "ready_file", "log_level", "metrics_port",
        "allow_inconsistent", "workers",
    ]
    return {k: getattr(args, k, None) for k in keys}


def _config(args: argparse.Namespace) -> MasaConfig:
    return load_config(args.config, _overrides(args))


def _database(args: argparse.Namespace) -> str:
    """Management commands touch only the store: --database, else the config's."""
    return database_url(args.config, args.database)


def _run(fn: Callable[[], Awaitable[int]]) -> int:
    return run_command("brski masa", fn)


def cmd_serve(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from masa.app import create_app

    async def serve(cfg: MasaConfig, ports: WorkerPorts | None) -> int:
        if ports is not None:  # one of several workers on the supervisor's port
            cfg = replace(cfg, port=ports.port, ready_file=ports.ready_file)
        configure_logging(cfg.log_level, role="masa")
        # RFC 8995 5.5.2: registrars may be unknown in advance; with the
        # pyOpenSSL backend any registrar client certificate is accepted and
        # the voucher-request's own chain is what gets checked.
        tls = server_tls(
            cfg.tls_backend,
            cert=cfg.tls_cert,
            key=cfg.tls_key,
            client_cas=[*(cfg.client_cas or cfg.manufacturer_anchors), *cfg.admin_ca],  # + console admins
            client_auth=cfg.client_auth,
        )
        await run_server(create_app(cfg), host=cfg.host, port=cfg.port, tls=tls, ready_file=cfg.ready_file, role="masa",
                         reuse_port=ports is not None)
        return 0

    return serve_command("brski masa", "masa", lambda: _config(args), serve)


def _idevid_files(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(sorted(p.glob("**/idevid.crt")))
        else:
            out.append(p)
    return out


#: Devices recorded per transaction by ``devices import``: one commit (one
#: flush to stable storage) per batch instead of one per device.
IMPORT_BATCH = 1000
_PEM_END = b"-----END CERTIFICATE-----"


def _pem_chunks(path: Path, per_chunk: int) -> Iterator[bytes]:
    """``path`` as pieces of at most ``per_chunk`` whole PEM certificates, read
    as a stream so a bundle of a factory's production is never held at once
    (each piece stays under :func:`brski.pki.load_certs`'s size bound). A DER
    file is one piece."""
    with path.open("rb") as f:
        head = f.read(2)
        f.seek(0)
        if head[:1] == b"\x30" and head[1:2] in (b"\x81", b"\x82", b"\x83"):  # a DER SEQUENCE
            yield f.read()
            return
        piece: list[bytes] = []
        count = 0
        for line in f:
            piece.append(line)
            if line.startswith(_PEM_END):
                count += 1
                if count == per_chunk:
                    yield b"".join(piece)
                    piece, count = [], 0
        if count:
            yield b"".join(piece)


def _device_batches(paths: list[Path], batch: int) -> Iterator[list[tuple[str, str]]]:
    """``(serial, IDevID fingerprint)`` pairs from PEM bundles, DER files and
    dev-PKI pledge directories, ``batch`` at a time."""
    pairs: list[tuple[str, str]] = []
    for path in _idevid_files(paths):
        for chunk in _pem_chunks(path, per_chunk=batch):
            for cert in load_certs(chunk):
                serial = device_serial(cert)
                if not serial:
                    print(f"{path}: certificate has no subject serialNumber, skipped", file=sys.stderr)
                    continue
                pairs.append((serial, fingerprint_sha256(cert)))
                if len(pairs) == batch:
                    yield pairs
                    pairs = []
    if pairs:
        yield pairs


def cmd_devices_import(args: argparse.Namespace) -> int:
    db = _database(args)

    async def main() -> int:
        now = datetime.now(UTC)
        added = known = 0
        conflicts: list[str] = []
        async with await open_masa_store(db) as store:
            for pairs in _device_batches(args.paths, IMPORT_BATCH):
                result = await store.add_manufactured_devices(pairs, at=now)
                added, known = added + result.added, known + result.already_known
                conflicts.extend(result.conflicts)
            total = await store.count_devices()
        for serial in conflicts:
            print(f"{serial}: already recorded with a different IDevID, left unchanged", file=sys.stderr)
        print(f"imported {added} device(s), {known} already known; the MASA now knows {total}")
        return 1 if conflicts else 0

    return _run(main)


def cmd_owners(args: argparse.Namespace) -> int:
    db = _database(args)

    async def main() -> int:
        now = datetime.now(UTC)
        async with await open_masa_store(db) as store:
            if args.owners_cmd == "list":
                rows = await store.owners(args.serial) if args.serial else await store.list_owners()
                for o in rows:
                    subject = load_cert(o.domain_ca_der).subject.rfc4514_string()
                    print(f"{o.serial}\t{o.domain_ca_spki_sha256.hex()}\t{subject}\t{o.added_at.isoformat()}")
                return 0
            if args.domain_ca is None:
                print("brski masa owners: --domain-ca PEM is required", file=sys.stderr)
                return 2
            ca = load_cert(args.domain_ca.read_bytes())
            who = f"cli:{getpass.getuser()}"
            if args.owners_cmd == "add":
                await add_owner(store, args.serial, ca, now=now, by=who)
                print(f"{args.serial}: owner {ca.subject.rfc4514_string()} added")
            else:
                await remove_owner(store, args.serial, spki_sha256(ca), subject=ca.subject.rfc4514_string(), now=now, by=who)
                print(f"{args.serial}: owner {ca.subject.rfc4514_string()} removed")
        return 0

    return _run(main)


def _build(sub: argparse.ArgumentParser) -> None:
    cmds = sub.add_subparsers(dest="masa_cmd", required=True, metavar="COMMAND")
    serve = cmds.add_parser("serve", help="run the MASA HTTPS server")
    _common(serve)
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--tls-backend", dest="tls_backend", choices=["pyopenssl", "stdlib"])
    serve.add_argument("--tls-cert", dest="tls_cert")
    serve.add_argument("--tls-key", dest="tls_key")
    serve.add_argument("--client-ca", dest="client_cas", action="append", help="CA trusted for registrar TLS client certs (repeatable)")
    serve.add_argument("--signer-cert", dest="signer_cert")
    serve.add_argument("--signer-key", dest="signer_key")
    serve.add_argument("--signer-chain", dest="signer_chain", action="append")
    serve.add_argument("--manufacturer-anchor", dest="manufacturer_anchors", action="append")
    serve.add_argument("--ownership", choices=["open", "sales-records"])
    serve.add_argument(
        "--metrics-port", dest="metrics_port", type=int, help="plain-HTTP port serving /metrics, /healthz, /readyz"
    )
    serve.add_argument("--ready-file", dest="ready_file", help="write {url, port, pid} here once listening")
    serve.add_argument(
        "--allow-inconsistent", dest="allow_inconsistent", action="store_true", default=None,
        help="serve although the store disagrees with its own event log (logged and recorded as an event)",
    )
    serve.add_argument("--workers", type=int, help="worker processes sharing the port (> 1 needs PostgreSQL)")
    serve.set_defaults(func=cmd_serve)

    example = cmds.add_parser("config-example", help="print the documented example config (masa.toml)")
    example.set_defaults(func=lambda _args: print(example_config(), end="") or 0)
    devices = cmds.add_parser("devices", help="the devices this manufacturer made")
    dcmds = devices.add_subparsers(dest="devices_cmd", required=True, metavar="COMMAND")
    imp = dcmds.add_parser("import", help="record IDevID certificates (files or dev-PKI pledge directories)")
    _common(imp)
    imp.add_argument("paths", nargs="+", type=Path)
    imp.set_defaults(func=cmd_devices_import)

    owners = cmds.add_parser("owners", help="sales records: which domain CA owns which device")
    ocmds = owners.add_subparsers(dest="owners_cmd", required=True, metavar="COMMAND")
    for name in ("add", "remove", "list"):
        p = ocmds.add_parser(name, help=f"{name} owner records")
        _common(p)
        p.add_argument("serial", nargs="?" if name == "list" else None)
        p.add_argument("--domain-ca", dest="domain_ca", type=Path, help="the owner's domain CA certificate (PEM)")
        p.set_defaults(func=cmd_owners)
    # audit verify|export over the hash-chained event log.
    add_audit_commands(cmds, role="masa", common=_common, open_store=lambda a: open_masa_store(_database(a)))
    add_store_commands(cmds, role="masa", common=_common, database=_database, opener=open_masa_store, run=_run)


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    _build(subparsers.add_parser("masa", help="the manufacturer's MASA", description=__doc__))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m masa", description=__doc__)
    _build(parser)
    args = parser.parse_args(argv)
    return int(args.func(args))
