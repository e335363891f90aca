"""``brski lab up|down|status|demo``: the network lab in Linux network namespaces.

Namespaces (prefix ``brski-``): one per pledge, each joined by a veth to
``edge`` (the join proxy), which is joined to ``domain`` (the registrar) and
``vendor`` (the MASA). Pledges have only link-local IPv6 and find the proxy by
mDNS; the edge forwards nothing from a pledge port (nftables). ``demo`` then
has every onboarded pledge join the network with its LDevID (802.1X EAP-TLS:
wpa_supplicant, hostapd on the edge, FreeRADIUS in ``domain``, the registrar
deciding) and, with ``--revoke K``, revokes K of them and times their cut-off.

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
from brski_cli.netlab.access import LabAccess
from brski_cli.netlab.run import NetLab, load_state
from brski_cli.netlab.topology import Topology
from brski_netaccess.netns import have_netns

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


def _picture(topo: Topology, *, network_access: bool = False) -> str:
    ports = ", ".join(p.edge_if for p in topo.pledge_ports())
    lines = [
        f"  {topo.pledge_ns(1)}..{topo.pledges}  eth0 (link-local only) --veth-- edge ports {ports}",
        f"  {topo.edge:<16} join proxy [::]:{topo.proxy_port}, announces _brski-proxy._tcp on {ports} (fe80::1);"
        " forwards nothing from pledge ports" + (" until 802.1X authorised the station" if network_access else ""),
        f"  {topo.domain:<16} registrar [{topo.domain_address}]:{topo.registrar_port}, announces"
        " _brski-registrar._tcp on eth0",
        f"  {topo.vendor:<16} MASA [{topo.vendor_address}]:{topo.masa_port}",
    ]
    if network_access:
        lines[2:2] = [f"  {'':<16} hostapd (802.1X, wired) on {ports}, RFC 5176 DAS on {topo.edge_ipv4};"
                      " nftables gate per port and MAC"]
        lines[4:4] = [f"  {'':<16} FreeRADIUS (EAP-TLS) {topo.domain_ipv4}:1812 asking the registrar;"
                      f" service http://[{topo.domain_address}]:{topo.service_port}/"]
    return "\n".join(lines)


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
    if args.revoke and args.no_network_access:
        raise ValueError("--revoke needs network access (drop --no-network-access)")
    if not 0 <= args.revoke <= args.pledges:
        raise ValueError(f"--revoke must be 0..{args.pledges}")
    if not args.no_network_access and (why := have_netns()) is not None:
        raise netns.NetlabUnavailable(f"network access: {why} (or run with --no-network-access)")
    topo = _topology(args, pledges=args.pledges)
    nl = NetLab(topo=topo, workdir=args.workdir, discovery_timeout_s=args.discovery_timeout,
                network_access=not args.no_network_access)
    records: list[dict[str, Any]] = []
    t0 = time.monotonic()
    try:
        nl.up()
        _say(f"lab up in {time.monotonic() - t0:.1f} s:")
        _say(_picture(topo, network_access=nl.access is not None))
        _say(f"onboarding {topo.pledges} pledge(s) by discovery alone ...")
        records = nl.run_pledges(list(range(1, topo.pledges + 1)), concurrency=args.concurrency)
        for r in records:
            if r["ok"]:
                _say(f"pledge {r['serial']}: discovered {r['discovered']} {r['via']}, voucher and LDevID in"
                     f" {r['seconds']} s (process {r['process_seconds']} s)")
            else:
                _say(f"pledge {r['serial']}: FAILED [{r['failed_check']}] {r['detail']}")
            r.update(network_access=False, network_access_s=None, revoked=False, cut_off_after_revoke_s=None,
                     reachable_at_end=None)
        if nl.access is not None:
            _network_access(nl.access, records, revoke=args.revoke, concurrency=args.concurrency)
    finally:
        if not args.keep:
            nl.down()
    if args.json is not None:
        keys = ("serial", "discovered", "via", "voucher", "ldevid", "seconds",
                "network_access", "network_access_s", "revoked", "cut_off_after_revoke_s", "reachable_at_end")
        args.json.write_text(json.dumps([{k: r[k] for k in keys} for r in records], indent=2) + "\n")
        _say(f"wrote {args.json}")
    ok = sum(1 for r in records if r["ok"])
    good = ok == topo.pledges
    summary = f"{ok}/{topo.pledges} onboarded through the join proxy"
    if nl.access is not None:
        joined = sum(1 for r in records if r["network_access"])
        revoked = [r for r in records if r["revoked"]]
        cut = [r for r in revoked if r["cut_off_after_revoke_s"] is not None and r["reachable_at_end"] is False]
        kept = [r for r in records if r["network_access"] and not r["revoked"]]
        good = good and joined == topo.pledges and len(cut) == args.revoke and all(r["reachable_at_end"] for r in kept)
        summary += f", {joined}/{topo.pledges} got network access with their LDevID (802.1X EAP-TLS)"
        if args.revoke:
            secs = ", ".join(f"{r['serial']} {r['cut_off_after_revoke_s']} s" for r in cut)
            summary += (f", {len(cut)}/{args.revoke} revoked and cut off ({secs or 'none'} after revocation),"
                        f" {sum(1 for r in kept if r['reachable_at_end'])}/{len(kept)} others still reach the domain")
    _say(f"lab demo {'OK' if good else 'FAILED'} in {time.monotonic() - t0:.1f} s: {summary}"
         + ("" if args.keep else "; lab torn down"))
    return EXIT_OK if good else EXIT_FAILED


def _network_access(access: LabAccess, records: list[dict[str, Any]], *, revoke: int, concurrency: int) -> None:
    """Join every onboarded pledge with its LDevID, revoke the last ``revoke``
    of those that joined, then probe every joined pledge's reach once more."""
    onboarded = {i: (r["serial"], r["ldevid_dir"]) for i, r in enumerate(records, 1) if r["ok"]}
    _say(f"joining the network with the LDevID (802.1X EAP-TLS): {len(onboarded)} pledge(s) ...")
    for i, res in access.join_all(onboarded, concurrency=concurrency).items():
        r = records[i - 1]
        r.update(network_access=res["network_access"], network_access_s=res["network_access_s"])
        _say(f"pledge {r['serial']}: {'network access' if r['network_access'] else 'NO network access'} after"
             f" {r['network_access_s']} s (port {access.topo.pledge_ports()[i - 1].edge_if}, MAC {res['mac']})")
    joined = [i for i, r in enumerate(records, 1) if r["network_access"]]
    for i in joined[len(joined) - revoke:] if revoke else []:
        r = records[i - 1]
        r["revoked"] = True
        try:
            r["cut_off_after_revoke_s"] = access.cut_off(i, r["serial"])
        except TimeoutError as exc:
            _say(f"pledge {r['serial']}: revoked (admin API) but NOT cut off: {exc}")
            continue
        _say(f"pledge {r['serial']}: revoked (admin API); its port closed {r['cut_off_after_revoke_s']} s later"
             " (RFC 5176 Disconnect-Request to the edge's hostapd)")
    for i in joined:
        records[i - 1]["reachable_at_end"] = access.reach(i)


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
    demo = cmds.add_parser("demo", help="up, onboard every pledge by discovery through the proxy, join the network"
                                        " with the LDevID (802.1X), down")
    common(demo)
    demo.add_argument("--pledges", type=int, default=3)
    demo.add_argument("--json", type=Path, metavar="FILE", help="write per-pledge results here")
    demo.add_argument("--discovery-timeout", type=float, default=5.0, metavar="S", help="each pledge's browse budget")
    demo.add_argument("--concurrency", type=int, default=8, metavar="N", help="pledge processes at a time (8)")
    demo.add_argument("--keep", action="store_true", help="leave the lab up afterwards")
    demo.add_argument("--revoke", type=int, default=0, metavar="K",
                      help="revoke K pledges once they joined and time their cut-off (0)")
    demo.add_argument("--no-network-access", action="store_true",
                      help="onboarding only: no 802.1X (FreeRADIUS, hostapd, wpa_supplicant not needed)")
    demo.set_defaults(func=lambda a: _guarded(cmd_demo, a))
