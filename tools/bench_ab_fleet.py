"""A/B of the pledge simulator: two source trees' fleets against one lab, alternating.

``python tools/bench_ab_fleet.py BASE_DIR NEW_DIR [--pairs 6] [--pledges 300]``

One MASA and one registrar (this tree's, SQLite, as ``make bench`` runs them)
serve every round; each round is ``brski pledge fleet`` run from one tree
(``git archive REV | tar -x -C DIR``; ``python -m`` imports from its working
directory first) on fresh IDevIDs, one process, concurrency 50. Rounds
alternate A, B then B, A so that the machine's drift falls on both. The figure
is the fleet's own CPU per successful onboarding (``fleet_cpu_ms_per_enrollment``
in its summary: user + system time of the fleet process over the run); read the
median over pairs of B over A. An A/A run (one tree twice) shows the noise.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

from bench import start_lab  # noqa: E402
from benchlib.ceilings import median  # noqa: E402


def fleet_round(lab: Any, tree: Path, idevids: Path, count: int, concurrency: int, out: Path) -> dict[str, Any]:
    out.unlink(missing_ok=True)
    cmd = [
        lab.python, "-m", "brski_cli", "pledge", "fleet",
        "--registrar", lab.registrar_url, "--count", str(count), "--concurrency", str(concurrency),
        "--processes", "1", "--idevid-dir", str(idevids), "--anchor", str(lab.certs / "manufacturer/root-ca.crt"),
        "--json", str(out), "--no-progress",
    ]
    proc = subprocess.run(cmd, cwd=tree, capture_output=True, text=True, timeout=600)
    if not out.exists():
        raise SystemExit(f"fleet from {tree} produced no summary (exit {proc.returncode}): {proc.stderr[-2000:]}")
    summary: dict[str, Any] = json.loads(out.read_text())
    if summary["failures"]:
        raise SystemExit(f"fleet from {tree}: {summary['failures']} failures: {summary.get('failures_by_check')}")
    return summary


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("base", type=Path)
    ap.add_argument("new", type=Path)
    ap.add_argument("--pairs", type=int, default=6)
    ap.add_argument("--pledges", type=int, default=300, help="onboardings per round")
    ap.add_argument("--concurrency", type=int, default=50)
    ap.add_argument("--workdir", type=Path, default=Path("var/bench-ab-fleet"))
    args = ap.parse_args()
    work = args.workdir.resolve()
    lab = start_lab(work)
    trees = {"A": args.base.resolve(), "B": args.new.resolve()}
    res: dict[str, list[float]] = {"A": [], "B": []}
    try:
        rounds = [("A", "B") if i % 2 == 0 else ("B", "A") for i in range(args.pairs)]
        warm = [("A", "B")]
        for i, order in enumerate(warm + rounds):
            for name in order:
                idevids = lab.fleet_idevids(args.pledges if i else 100)
                s = fleet_round(lab, trees[name], idevids, args.pledges if i else 100, args.concurrency,
                                work / "fleet.json")
                if i:
                    res[name].append(s["fleet_cpu_ms_per_enrollment"])
                    print(f"{name} {s['fleet_cpu_ms_per_enrollment']:.3f} ms  ({s['enrollments_per_s']}/s)", flush=True)
    finally:
        lab.stop_all()
    a, b = median(res["A"]), median(res["B"])
    pair = median([y / x for x, y in zip(res["A"], res["B"], strict=True)])
    print(json.dumps(res))
    print(f"A {a:.3f} ms  B {b:.3f} ms  B/A per pair, median {pair:.3f} (range "
          f"{min(y / x for x, y in zip(res['A'], res['B'], strict=True)):.3f}-"
          f"{max(y / x for x, y in zip(res['A'], res['B'], strict=True)):.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
