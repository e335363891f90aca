"""A running registrar's CPU and fsyncs per onboarding, over a window.

``python tools/profile_window.py PID REGISTRAR_DB [--seconds 8]``: reads the
CPU of each thread of ``PID`` from ``/proc`` and counts its ``fsync`` and
``fdatasync`` calls (``perf stat`` on the syscall tracepoints) for
``--seconds``, and divides both by the certificates the registrar issued in
that window (counted in its SQLite file, read-only). Run it beside ``make
profile`` (PROFILE_SECONDS=10) on the registrar's pid once the fleet runs; it
does not depend on the fleet's own rate estimate. Needs root (perf). Nothing
here asserts anything; it measures.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of the main thread and of all the others together."""
    out: dict[str, float] = {"main": 0.0, "other threads": 0.0}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        out["main" if task.name == str(pid) else "other threads"] += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return out


def issued(db: Path) -> int:
    conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT count(*) FROM certificates WHERE state = 'issued'").fetchone()[0])
    finally:
        conn.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("pid", type=int)
    ap.add_argument("db", type=Path)
    ap.add_argument("--seconds", type=float, default=8.0)
    args = ap.parse_args()
    n0, c0 = issued(args.db), thread_cpu(args.pid)
    perf = subprocess.run(
        ["perf", "stat", "-x,", "-e", "syscalls:sys_enter_fsync,syscalls:sys_enter_fdatasync",
         "-p", str(args.pid), "--", "sleep", str(args.seconds)],
        capture_output=True, text=True, check=False,
    )
    n1, c1 = issued(args.db), thread_cpu(args.pid)
    n = max(n1 - n0, 1)
    syncs = sum(int(line.split(",")[0]) for line in perf.stderr.splitlines() if line[:1].isdigit())
    per = {k: (c1[k] - c0[k]) * 1000 / n for k in c1}
    print(f"onboardings {n1 - n0} in {args.seconds:g} s; ms per onboarding: "
          + ", ".join(f"{k} {v:.2f}" for k, v in per.items())
          + f", total {sum(per.values()):.2f}; fsyncs per onboarding {syncs / n:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
