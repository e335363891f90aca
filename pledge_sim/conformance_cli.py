"""``brski pledge conformance``: the command line of the suite in :mod:`pledge_sim.conformance`.

Exit codes: 0 when no case failed (passes, skips, inconclusive and reported
cases), 1 when one did, 2 for a configuration error.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from brski.errors import ConfigError
from brski.pki import load_certs
from pledge_sim.config import load_config
from pledge_sim.conformance import Suite, make_stranger, run_suite
from pledge_sim.conformance_report import format_table, junit_xml
from pledge_sim.fleet import load_idevid_dir

__all__ = ["add_parser", "cmd_conformance"]


def add_parser(sub: Any) -> None:
    p = sub.add_parser("conformance", help="run the registrar conformance suite (a judged table of cases)")
    p.add_argument("--registrar", metavar="URL", required=True, help="registrar base URL")
    p.add_argument("--idevid", metavar="DIR", required=True, help="pledge dir, or a pledges/ dir (2+ devices)")
    p.add_argument("--anchor", metavar="PEM", action="append", required=True, help="manufacturer trust anchor")
    p.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS", help="per-request timeout")
    p.add_argument("--server-hostname", metavar="NAME", help="TLS SNI (default: URL host)")
    p.add_argument("--junit", metavar="FILE", help="write JUnit XML")
    p.add_argument("--json", metavar="FILE", help="write the results as JSON")
    p.set_defaults(func=cmd_conformance)


def cmd_conformance(args: Any) -> int:
    try:
        cfg = load_config(
            None,
            {"registrar": args.registrar, "anchor": args.anchor, "timeout": args.timeout, "server_hostname": args.server_hostname},
            purpose="reenroll",
        )
        anchors = [c for a in cfg.anchors for c in load_certs(a.read_bytes())]
        pledges = load_idevid_dir(Path(args.idevid))
    except (ConfigError, OSError) as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    suite = Suite(
        cfg=cfg, anchors=anchors, device=pledges[0],
        second=pledges[1] if len(pledges) > 1 else None, stranger=make_stranger(),
    )
    print(f"conformance against {cfg.registrar_url} with device {suite.device.serial}", file=sys.stderr)
    results = asyncio.run(run_suite(suite))
    print(format_table(results))
    if args.junit:
        Path(args.junit).write_bytes(junit_xml(results, registrar=cfg.registrar_url))
    if args.json:
        doc = {"registrar": cfg.registrar_url, "results": [r.__dict__ for r in results]}
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
    return 1 if any(r.outcome == "fail" for r in results) else 0
