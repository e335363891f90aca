"""``brski proxy serve``: the BRSKI join proxy (RFC 8995 4.1, 4.3).

Relays TCP from pledges on the link(s) it announces ``_brski-proxy._tcp`` on to
a registrar it is configured with or finds by mDNS (``_brski-registrar._tcp``).
TLS stays end to end between pledge and registrar.

Exit codes: 0 stopped cleanly (SIGTERM/SIGINT), 1 it could not run (no
registrar found, cannot listen or announce), 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from brski_web.cli import run_command
from brski_web.logs import configure_logging

__all__ = ["add_parser", "main"]

_FLAGS = (
    "listen_host", "listen_port", "announce_interfaces", "announce_addresses", "instance", "registrar",
    "registrar_interfaces", "discovery_timeout_s", "max_circuits", "max_circuits_per_source",
    "connect_timeout_s", "idle_timeout_s", "max_circuit_s", "max_circuit_bytes", "ready_file", "log_level",
)


def cmd_serve(args: argparse.Namespace) -> int:
    from join_proxy.config import load_config
    from join_proxy.service import serve

    async def main() -> int:
        overrides: dict[str, Any] = {k: getattr(args, k, None) for k in _FLAGS}
        for k in ("announce_interfaces", "announce_addresses", "registrar_interfaces"):
            if not overrides[k]:
                overrides[k] = None
        cfg = load_config(args.config, overrides)
        configure_logging(cfg.log_level, role="proxy")
        return await serve(cfg)

    return run_command("brski proxy", main)


def _build(p: argparse.ArgumentParser) -> None:
    cmds = p.add_subparsers(dest="proxy_command", required=True, metavar="COMMAND")
    s = cmds.add_parser("serve", help="relay pledges to the registrar (circuit proxy)", description=__doc__,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("--config", type=Path, help="TOML file with a [proxy] table (flags override it)")
    s.add_argument("--listen-host", help='address to listen on (default "::", every link)')
    s.add_argument("--listen-port", type=int, help="TCP port pledges connect to (default 8443)")
    s.add_argument("--announce", dest="announce_interfaces", action="append", metavar="IFACE",
                   help="pledge-facing interface to announce _brski-proxy._tcp on (repeatable)")
    s.add_argument("--announce-address", dest="announce_addresses", action="append", metavar="IPV6",
                   help="address to put in the announcement (default: the interfaces' own)")
    s.add_argument("--instance", help="DNS-SD instance name (default brski-join-proxy)")
    s.add_argument("--registrar", metavar="HOST:PORT|auto",
                   help='the registrar, "[addr]:port" or "host:port"; "auto" browses for it (default)')
    s.add_argument("--registrar-interface", dest="registrar_interfaces", action="append", metavar="IFACE",
                   help="interface to browse for _brski-registrar._tcp on (repeatable)")
    s.add_argument("--discovery-timeout", dest="discovery_timeout_s", type=float, metavar="S")
    s.add_argument("--max-circuits", type=int, metavar="N", help="concurrent circuits in total (256)")
    s.add_argument("--max-circuits-per-source", type=int, metavar="N", help="concurrent circuits per pledge address (8)")
    s.add_argument("--connect-timeout", dest="connect_timeout_s", type=float, metavar="S", help="to the registrar (5)")
    s.add_argument("--idle-timeout", dest="idle_timeout_s", type=float, metavar="S", help="no byte either way (30)")
    s.add_argument("--max-circuit-time", dest="max_circuit_s", type=float, metavar="S", help="a circuit's life (300)")
    s.add_argument("--max-circuit-bytes", type=int, metavar="N", help="both directions together (4 MiB)")
    s.add_argument("--ready-file", type=Path, help="write {port, pid, registrar} here once listening")
    s.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    s.set_defaults(func=cmd_serve)

    example = cmds.add_parser("config-example", help="print the documented example config (proxy.toml)")
    example.set_defaults(func=_print_example)


def _print_example(_args: argparse.Namespace) -> int:
    from join_proxy.config import example_config

    print(example_config(), end="")
    return 0


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("proxy", help="BRSKI join proxy (circuit relay + mDNS)", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    _build(p)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m join_proxy", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    _build(parser)
    args = parser.parse_args(argv)
    return int(args.func(args))
