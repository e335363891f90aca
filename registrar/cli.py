"""``brski registrar ...``: serve the registrar and look at its inventory.

Exit codes: 0 success, 1 the operation was refused or failed, 2 usage or
configuration error.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from brski.display import escape_controls
from brski_storage import open_registrar_store
from brski_storage.base import ApprovalDecision
from brski_web.audit_cli import add_audit_commands
from brski_web.cli import run_command
from brski_web.logs import configure_logging
from brski_web.serve import run_server, server_tls
from brski_web.store_cli import add_store_commands
from brski_web.workers import WorkerPorts, serve_command
from registrar.config import RegistrarConfig, database_url, example_config, load_config
from registrar.lifecycle_cli import network_json

__all__ = ["add_parser", "main"]

_OVERRIDE_KEYS = [
    "host", "port", "tls_backend", "tls_cert", "tls_key", "database", "ca_cert", "ca_key", "ra_cert", "ra_key",
    "manufacturer_anchors", "masa_trust", "masa_url_override", "public_url", "ready_file", "log_level",
    "http_port", "allow_crl_mismatch", "allow_inconsistent", "mdns_interfaces", "proxy_addresses", "metrics_port",
    "workers",
]


def _row(*fields: object) -> str:
    """A tab-separated line; fields a device supplied (serials) have controls escaped."""
    return "\t".join(escape_controls(format(f)) for f in fields)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="TOML config file ([server] and [registrar] tables)")
    p.add_argument("--database", help="store URL, e.g. sqlite:///var/registrar.db")
    p.add_argument("--log-level", dest="log_level", choices=["debug", "info", "warning", "error"])


def _config(args: argparse.Namespace) -> RegistrarConfig:
    return load_config(args.config, {k: getattr(args, k, None) for k in _OVERRIDE_KEYS})


def _run(fn: Callable[[], Awaitable[int]]) -> int:
    return run_command("brski registrar", fn)


def cmd_serve(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from registrar.admin import create_revocation_app
    from registrar.app import create_app

    async def serve(cfg: RegistrarConfig, ports: WorkerPorts | None) -> int:
        if ports is not None:  # one of several workers on the supervisor's ports
            cfg = replace(cfg, port=ports.port, http_port=ports.http_port, ready_file=ports.ready_file)
        configure_logging(cfg.log_level, role="registrar")
        # Pledges authenticate with IDevIDs (manufacturer anchors), renewing
        # devices with LDevIDs (the domain CA); nothing else is trusted.
        tls = server_tls(
            cfg.tls_backend,
            cert=cfg.tls_cert,
            key=cfg.tls_key,
            client_cas=[*(m.anchor for m in cfg.manufacturers if m.anchor is not None), cfg.ca_cert],
            client_auth="optional",
        )
        app = create_app(cfg)
        # CRL and OCSP over plain HTTP (RFC 5280 4.2.1.13, RFC 6960 A.1; registrar/revocation.py).
        plain = (create_revocation_app(app), cfg.http_port) if cfg.http_port else None
        await run_server(
            app, host=cfg.host, port=cfg.port, tls=tls, ready_file=cfg.ready_file, role="registrar", plain_http=plain,
            reuse_port=ports is not None,
        )
        return 0

    return serve_command("brski registrar", "registrar", lambda: _config(args), serve)


def _device_json(d: Any) -> dict[str, Any]:
    return {
        "serial": d.serial,
        "state": d.state,
        "manufacturer": d.manufacturer,
        "idevid_issuer": d.idevid_issuer,
        "first_seen": d.first_seen.isoformat(),
        "updated_at": d.updated_at.isoformat(),
    }


def cmd_devices(args: argparse.Namespace) -> int:
    db = database_url(args.config, args.database)

    async def main() -> int:
        async with await open_registrar_store(db) as store:
            if args.devices_cmd == "list":
                rows = await store.list_devices(
                    state=args.state, manufacturer=args.manufacturer, after_serial=args.after, limit=args.limit
                )
                if args.json:
                    print(json.dumps([_device_json(d) for d in rows], indent=2))
                else:
                    for d in rows:
                        print(_row(d.serial, d.state, d.updated_at.isoformat(), d.manufacturer))
                return 0
            device = await store.get_device(args.serial)
            if device is None:
                print(f"no device {args.serial}", file=sys.stderr)
                return 1
            out = _device_json(device)
            out["transitions"] = [
                {"from": t.from_state, "to": t.to_state, "at": t.at.isoformat(), "reason": t.reason}
                for t in await store.device_transitions(args.serial)
            ]
            out["certificates"] = [
                {"serial": c.cert_serial, "state": c.state, "not_after": c.not_after.isoformat() if c.not_after else None}
                for c in await store.list_certificates(args.serial)
            ]
            out.update(await network_json(store, args.serial))
            print(json.dumps(out, indent=2))
            return 0

    return _run(main)


def cmd_approval(args: argparse.Namespace) -> int:
    """RFC 8995 5.6 approval queue: the operator's decision, read by the running server."""
    import getpass
    from datetime import UTC, datetime

    from registrar.actions import decide_approval

    db = database_url(args.config, args.database)

    async def main() -> int:
        async with await open_registrar_store(db) as store:
            if args.devices_cmd == "pending":
                for a in await store.list_approvals(decision=None if args.all else "pending"):
                    asked = a.requested_at.isoformat() if a.requested_at else "-"
                    print(_row(a.serial, a.decision, asked, a.decided_by or ""))
                return 0
            decision: ApprovalDecision = "approved" if args.devices_cmd == "approve" else "rejected"
            now = datetime.now(UTC)
            who = args.by or getpass.getuser()
            rec = await decide_approval(store, args.serial, decision=decision, now=now, by=who, reason=args.reason)
            print(f"{rec.serial}\t{rec.decision}")
            return 0

    return _run(main)


async def _revocation_checks(args: argparse.Namespace, store: Any) -> list[str]:
    """RFC 5280 3.3: the store against its last published CRL (signature checked with --config)."""
    from datetime import UTC, datetime

    from brski.pki import load_cert
    from registrar.revocation import crl_consistency, describe_disagreements

    ca = load_cert(_config(args).ca_cert.read_bytes()) if args.config else None
    return describe_disagreements(await crl_consistency(store, ca_cert=ca, now=datetime.now(UTC)))


def _build(sub: argparse.ArgumentParser) -> None:
    cmds = sub.add_subparsers(dest="registrar_cmd", required=True, metavar="COMMAND")
    serve = cmds.add_parser("serve", help="run the registrar (BRSKI + EST) HTTPS server")
    _common(serve)
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--tls-backend", dest="tls_backend", choices=["pyopenssl", "stdlib"])
    serve.add_argument("--tls-cert", dest="tls_cert")
    serve.add_argument("--tls-key", dest="tls_key")
    serve.add_argument("--ca-cert", dest="ca_cert", help="domain CA certificate (issues LDevIDs)")
    serve.add_argument("--ca-key", dest="ca_key")
    serve.add_argument("--ra-cert", dest="ra_cert", help="id-kp-cmcRA certificate that signs voucher-requests")
    serve.add_argument("--ra-key", dest="ra_key")
    serve.add_argument("--manufacturer-anchor", dest="manufacturer_anchors", action="append")
    serve.add_argument("--masa-trust", dest="masa_trust", action="append", help="CA that verifies MASA TLS certificates")
    serve.add_argument("--masa-url-override", dest="masa_url_override", help="send every voucher-request to this MASA")
    serve.add_argument("--public-url", dest="public_url", help="base URL written into LDevIDs (CRL, OCSP)")
    serve.add_argument("--http-port", dest="http_port", type=int, help="plain-HTTP port serving /crl and /ocsp")
    serve.add_argument(
        "--allow-crl-mismatch", dest="allow_crl_mismatch", action="store_true", default=None,
        help="serve although the store contradicts the last published CRL (logged; its revocations stay in force)",
    )
    serve.add_argument(
        "--metrics-port", dest="metrics_port", type=int, help="plain-HTTP port serving /metrics, /healthz, /readyz"
    )
    serve.add_argument(
        "--allow-inconsistent", dest="allow_inconsistent", action="store_true", default=None,
        help="serve although the store disagrees with its own event log (logged and recorded as an event)",
    )
    serve.add_argument("--ready-file", dest="ready_file", help="write {url, port, pid} here once listening")
    serve.add_argument("--announce", dest="mdns_interfaces", action="append", metavar="IFACE",
                       help="announce _brski-registrar._tcp over mDNS on this interface (repeatable)")
    serve.add_argument("--proxy-address", dest="proxy_addresses", action="append", metavar="ADDR",
                       help="a join proxy's address or network: its connections are logged via=proxy")
    serve.add_argument("--workers", type=int, help="worker processes sharing the port (> 1 needs PostgreSQL)")
    serve.set_defaults(func=cmd_serve)

    example = cmds.add_parser("config-example", help="print the documented example config (registrar.toml)")
    example.set_defaults(func=lambda _args: print(example_config(), end="") or 0)
    devices = cmds.add_parser("devices", help="the device inventory")
    dcmds = devices.add_subparsers(dest="devices_cmd", required=True, metavar="COMMAND")
    lst = dcmds.add_parser("list", help="list devices, paged by serial")
    _common(lst)
    lst.add_argument("--state")
    lst.add_argument("--manufacturer")
    lst.add_argument("--after", help="page: serials after this one")
    lst.add_argument("--limit", type=int, default=100)
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(func=cmd_devices)
    show = dcmds.add_parser("show", help="one device with its history and certificates")
    _common(show)
    show.add_argument("serial")
    show.set_defaults(func=cmd_devices)
    # Lifecycle and evidence commands live in their own modules.
    from registrar.lifecycle_cli import add_device_commands

    add_device_commands(dcmds, common=_common, database=lambda a: database_url(a.config, a.database), run=_run)
    add_audit_commands(
        cmds, role="registrar", common=_common,
        open_store=lambda a: open_registrar_store(database_url(a.config, a.database)),
        state_checks=_revocation_checks,
    )
    add_store_commands(
        cmds, role="registrar", common=_common, database=lambda a: database_url(a.config, a.database),
        opener=open_registrar_store, run=_run,
    )
    for verb, text in (("approve", "let a queued (or not yet seen) device join"), ("reject", "refuse a device")):
        p = dcmds.add_parser(verb, help=f"approval queue: {text}")
        _common(p)
        p.add_argument("serial")
        p.add_argument("--reason")
        p.add_argument("--by", help="operator name stored with the decision (default: login name)")
        p.set_defaults(func=cmd_approval)
    pending = dcmds.add_parser("pending", help="devices waiting in the approval queue")
    _common(pending)
    pending.add_argument("--all", action="store_true", help="also decided ones")
    pending.set_defaults(func=cmd_approval)


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    _build(subparsers.add_parser("registrar", help="the enterprise registrar and EST CA", description=__doc__))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m registrar", description=__doc__)
    _build(parser)
    args = parser.parse_args(argv)
    return int(args.func(args))
