"""A/B of the EST path: two source trees' registrars, alternating rounds.

``python tools/bench_ab_est.py BASE_DIR NEW_DIR [--pairs 8] [--seconds 3]``

Each tree (e.g. ``git archive REV | tar -x -C DIR``) runs its own registrar,
both pinned to the same core, the load on the other (:mod:`benchlib.est`).
Rounds alternate A, B then B, A so that the machine's drift falls on both;
the figure to read is the median over pairs of B's CPU per enrolment over
A's. An A/A run (one tree twice) shows how far that ratio strays on its own.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchlib.ceilings import median, openssl_mtls  # noqa: E402
from benchlib.est import CLIENT_CORE, SERVER_CORE, est_lab, est_round, write_devices  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("base", type=Path)
    ap.add_argument("new", type=Path)
    ap.add_argument("--pairs", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--workdir", type=Path, default=Path("var/bench-ab"))
    args = ap.parse_args()
    here = Path.cwd()
    labs, clients = {}, {}
    for name, tree in (("A", args.base), ("B", args.new)):
        work = (args.workdir / name).resolve()
        lab = est_lab(work)
        clients[name] = write_devices(lab, int(args.pairs * args.seconds * 250) + 200, work)
        os.chdir(tree)  # ``python -m registrar`` imports from its working directory first
        try:
            lab.start("registrar", timeout=120)
        finally:
            os.chdir(here)
        labs[name] = lab
    res: dict[str, list[Any]] = {"A": [], "B": [], "openssl": []}
    try:
        for name in "AB":  # warm-up
            est_round(labs[name], clients[name][:200], 2.0)
        per = (len(clients["A"]) - 200) // args.pairs
        for i in range(args.pairs):
            for name in ("AB" if i % 2 == 0 else "BA"):
                share = clients[name][200 + i * per : 200 + (i + 1) * per]
                r = est_round(labs[name], share, args.seconds)
                if r["errors"]:
                    raise SystemExit(f"{name}: {r['errors']} failed enrolments (see {labs[name].workdir}/registrar.log)")
                res[name].append(r["server_cpu_ms_per_enrollment"])
            res["openssl"].append(openssl_mtls(labs["A"].certs, args.seconds, server_core=SERVER_CORE,
                                               client_core=CLIENT_CORE)["server_cpu_ms_per_handshake"])
    finally:
        for lab in labs.values():
            lab.stop_all()
    a, b, o = median(res["A"]), median(res["B"]), median(res["openssl"])
    pair = median([y / x for x, y in zip(res["A"], res["B"], strict=True)])
    print(json.dumps(res))
    print(f"A {a:.3f} ms ({a / o:.2f}x openssl)  B {b:.3f} ms ({b / o:.2f}x)  B/A per pair, median {pair:.3f}"
          f"  openssl {o:.3f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
