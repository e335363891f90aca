"""``brski lab up|down|status|demo``: the network lab in Linux network namespaces.

Namespaces (prefix ``brski-``): one per pledge, each joined by a veth to
``edge`` (the join proxy), which is joined to ``domain`` (the registrar) and
``vendor`` (the MASA). Pledges have only link-local IPv6 and find the proxy by
mDNS; the edge forwards nothing from a pledge port (nftables).

Exit codes: 0 success, 1 the lab failed (a pledge did not onboard, a server did
not start), 2 usage error or the lab cannot run here (not root, no namespaces).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from brski_cli.lab import LabError
from brski_cli.netlab import netns
from brski_cli.netlab.run import NetLab, load_state
from brski_cli.netlab.topology import Topology

__all__ = ["add_parser"]

EXIT_OK, EXIT_FAILED, EXIT_UNAVAILABLE = 0, 1, 2


def _say(text: str = "") -> None:
    print(text, flush=True)


def _topology(args: argparse.Namespace, *, pledges: int | None = None) -> Topology:
    state = load_state(args.workdir)
    prefix = args.prefix or state.get("prefix") or "brski-"
    n = pledges or getattr(args, "pledges", None) or state.get("pledges") or 3
    return Topology(prefix=prefix, pledges=n)


def _guarded(fn: Any, args: argparse.Namespace) -> int:
    try:
        return int(fn(args))
    except netns.NetlabUnavailable as exc:
        print(f"brski lab: cannot run here: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except ValueError as exc:
        print(f"brski lab: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except (LabError, RuntimeError) as exc:
        print(f"brski lab: {exc}", file=sys.stderr)
        return EXIT_FAILED


def _picture(topo: Topology) -> str:
    ports = ", ".join(p.edge_if for p in topo.pledge_ports())
    return "\n".join([
        f"  {topo.pledge_ns(1)}..{topo.pledges}  eth0 (link-local only) --veth-- edge ports {ports}",
        f"  {topo.edge:<16} join proxy [::]:{topo.proxy_port}, announces _brski-proxy._tcp on {ports} (fe80::1);"
        " forwards nothing from pledge ports",
        f"  {topo.domain:<16} registrar [{topo.domain_address}]:{topo.registrar_port}, announces"
        " _brski-registrar._tcp on eth0",
        f"  {topo.vendor:<16} MASA [{topo.vendor_address}]:{topo.masa_port}",
    ])


def cmd_up(args: argparse.Namespace) -> int:
    netns.preflight()  # before anything that could touch an existing lab
    topo = _topology(args)
    nl = NetLab(topo=topo, workdir=args.workdir)
    t0 = time.monotonic()
    try:
        nl.up(detach=True)
    except BaseException:
        nl.down()
        raise
    _say(f"lab up in {time.monotonic() - t0:.1f} s (logs: {nl.lab.workdir}/):")
    _say(_picture(topo))
    brski = Path(sys.executable).with_name("brski")
    _say(f"onboard pledge 1: ip netns exec {topo.pledge_ns(1)} {brski} pledge enroll --dir {nl.pledge_dir(1)}")
    _say(f"tear down:        {brski} lab down" + (f" --prefix {topo.prefix}" if topo.prefix != "brski-" else ""))
    return EXIT_OK


def cmd_down(args: argparse.Namespace) -> int:
    netns.preflight()
    topo = _topology(args)
    removed = netns.teardown(topo)
    _say(f"removed {len(removed)} namespace(s){': ' + ', '.join(removed) if removed else ''}")
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    netns.preflight()
    topo = _topology(args)
    rows = netns.status(topo)
    if not rows:
        _say(f"no lab namespaces ({topo.prefix}*) exist")
        return EXIT_OK
    for row in rows:
        _say(row.name)
        for a in row.addresses:
            _say(f"  addr  {a}")
        for t in row.nft_tables:
            _say(f"  nft   {t}")
        for p in row.processes:
            _say(f"  proc  {p}")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    netns.preflight()
    topo = _topology(args, pledges=args.pledges)
    nl = NetLab(topo=topo, workdir=args.workdir, discovery_timeout_s=args.discovery_timeout)
    records: list[dict[str, Any]] = []
    try:
        t0 = time.monotonic()
        nl.up()
        _say(f"lab up in {time.monotonic() - t0:.1f} s:")
        _say(_picture(topo))
        _say(f"onboarding {topo.pledges} pledge(s) by discovery alone ...")
        records = nl.run_pledges(list(range(1, topo.pledges + 1)), concurrency=args.concurrency)
    finally:
        if not args.keep:
            nl.down()
    for r in records:
        if r["ok"]:
            _say(f"pledge {r['serial']}: discovered {r['discovered']} {r['via']}, voucher and LDevID in {r['seconds']} s"
                 f" (process {r['process_seconds']} s)")
        else:
            _say(f"pledge {r['serial']}: FAILED [{r['failed_check']}] {r['detail']}")
    if args.json is not None:
        keys = ("serial", "discovered", "via", "voucher", "ldevid", "seconds")
        args.json.write_text(json.dumps([{k: r[k] for k in keys} for r in records], indent=2) + "\n")
        _say(f"wrote {args.json}")
    ok = sum(1 for r in records if r["ok"])
    _say(f"lab demo {'OK' if ok == topo.pledges else 'FAILED'}: {ok}/{topo.pledges} onboarded through the join proxy"
         + ("" if args.keep else "; lab torn down"))
    return EXIT_OK if ok == topo.pledges else EXIT_FAILED


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    lab = subparsers.add_parser("lab", help="network lab in Linux namespaces (root)", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    cmds = lab.add_subparsers(dest="lab_command", required=True, metavar="COMMAND")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--workdir", type=Path, default=Path("var/lab"), help="PKI, configs, stores, logs (var/lab)")
        p.add_argument("--prefix", help="namespace name prefix, starting with brski- (default brski-)")

    up = cmds.add_parser("up", help="build the namespaces and start MASA, registrar, join proxy")
    common(up)
    up.add_argument("--pledges", type=int, help="pledge namespaces (3)")
    up.set_defaults(func=lambda a: _guarded(cmd_up, a))
    down = cmds.add_parser("down", help="stop everything and delete the namespaces (idempotent)")
    common(down)
    down.set_defaults(func=lambda a: _guarded(cmd_down, a))
    st = cmds.add_parser("status", help="namespaces, addresses, nftables tables, processes")
    common(st)
    st.set_defaults(func=lambda a: _guarded(cmd_status, a))
    demo = cmds.add_parser("demo", help="up, onboard every pledge by discovery through the proxy, down")
    common(demo)
    demo.add_argument("--pledges", type=int, default=3)
    demo.add_argument("--json", type=Path, metavar="FILE", help="write per-pledge results here")
    demo.add_argument("--discovery-timeout", type=float, default=5.0, metavar="S", help="each pledge's browse budget")
    demo.add_argument("--concurrency", type=int, default=8, metavar="N", help="pledge processes at a time (8)")
    demo.add_argument("--keep", action="store_true", help="leave the lab up afterwards")
    demo.set_defaults(func=lambda a: _guarded(cmd_demo, a))
