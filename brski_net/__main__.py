"""``python -m brski_net browse|announce``: see and make BRSKI mDNS announcements.

``browse`` shows what a pledge on these links would find, in the order it would
try them; ``announce`` announces a service by hand (a registrar or a relay that
cannot announce itself) until SIGTERM. Exit codes: 0 found / stopped cleanly,
1 nothing found, 2 usage error (no such interface).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from brski_net.mdns import (
    SERVICE_PROXY,
    SERVICE_REGISTRAR,
    Announcer,
    browse,
    link_local_interfaces,
)

SERVICES = {"proxy": SERVICE_PROXY, "registrar": SERVICE_REGISTRAR}


async def _browse(args: argparse.Namespace) -> int:
    found = await browse(args.interface or link_local_interfaces(), timeout=args.timeout)
    for c in found:
        print(f"{c.kind:<9} {c.name:<24} [{c.address}]:{c.port} priority={c.priority} weight={c.weight}")
    return 0 if found else 1


async def _announce(args: argparse.Namespace) -> int:
    a = Announcer(service=SERVICES[args.service], instance=args.instance, port=args.port,
                  interfaces=args.interface, addresses=args.address or (), priority=args.priority)
    try:
        await a.start()
    except LookupError as exc:
        print(f"brski_net announce: {exc}", file=sys.stderr)
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if args.ready_file:
        with open(args.ready_file, "w") as fh:
            fh.write("announced\n")
    try:
        await stop.wait()
    finally:
        await a.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m brski_net", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("browse", help="list join proxies and registrars announced on these links")
    b.add_argument("--interface", action="append", help="default: every link with a link-local address")
    b.add_argument("--timeout", type=float, default=3.0)
    a = sub.add_parser("announce", help="announce a service until SIGTERM")
    a.add_argument("service", choices=sorted(SERVICES))
    a.add_argument("--port", type=int, required=True)
    a.add_argument("--interface", action="append", required=True)
    a.add_argument("--address", action="append", help="default: the interfaces' own addresses")
    a.add_argument("--instance", default="brski")
    a.add_argument("--priority", type=int, default=0, help="SRV priority, lower is tried first")
    a.add_argument("--ready-file")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    return asyncio.run(_browse(args) if args.cmd == "browse" else _announce(args))


if __name__ == "__main__":
    sys.exit(main())
