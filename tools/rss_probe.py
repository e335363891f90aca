"""Where the registrar's memory goes during a fleet run: RSS over time, per mapping, per allocator.

Starts the MASA and the registrar as ``make bench`` does (SQLite, one worker each),
runs the fleet at concurrency 50 for ``--seconds`` (or for exactly ``--count``
onboardings, so that two trees compare on the same work), and every ``--interval``
seconds reads the registrar's ``/proc/<pid>/status`` (VmRSS, RssAnon, RssFile,
VmHWM) beside the onboardings it has answered (enrollstatus lines in its log).
At the end, with the fleet stopped but the registrar still up, it prints the
registrar's CPU per onboarding (``/proc/<pid>/stat``) and:

* its mappings from ``/proc/<pid>/smaps`` grouped by kind (the brk heap, anonymous
  mappings, each shared library): Rss / Anonymous / Private_Dirty per group;
* with ``--gdb`` (needs gdb and the right to attach): glibc's ``malloc_info``
  (arenas, memory held free in each) and RSS before and after ``malloc_trim(0)``,
  which tells memory malloc holds free from memory in use;
* with ``--inject SCRIPT``: SCRIPT run inside the idle registrar through gdb
  (``PyRun_SimpleString`` under the GIL), e.g. to empty one cache, run
  ``gc.collect()`` with ``gc.DEBUG_SAVEALL`` and count what it found, and read
  RSS after each step. A debug attribution, never a benchmark figure.

``--registrar-env KEY=VALUE`` (repeatable) sets variables for the registrar only
(e.g. ``MALLOC_ARENA_MAX=2``); ``--src TREE`` runs another source tree's servers
and fleet (its ``.venv``; the probe works from that directory) for A/B.
Nothing here asserts anything; it measures.

Usage: ``python tools/rss_probe.py [--seconds 45 | --count 1500] [--interval 5]
[--gdb] [--inject SCRIPT] [--json out.json]``.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

from benchlib.procs import cpu_seconds  # noqa: E402
from benchlib.stores import create_registrar_store  # noqa: E402

from brski_cli.lab import Lab, ensure_dev_pki, free_port  # noqa: E402

STATUS_KEYS = ("VmRSS", "RssAnon", "RssFile", "VmHWM")


def status_mb(pid: int) -> dict[str, float]:
    text = Path(f"/proc/{pid}/status").read_text()
    out = {}
    for key in STATUS_KEYS:
        m = re.search(rf"^{key}:\s+(\d+) kB", text, re.M)
        out[key] = round(int(m.group(1)) / 1024, 1) if m else 0.0
    return out


def smaps_groups(pid: int) -> dict[str, dict[str, float]]:
    """Rss, Anonymous and Private_Dirty (MB) per kind of mapping."""
    groups: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    kind = "?"
    size_kb = 0
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split()
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            name = head[5] if len(head) > 5 else ""
            lo, hi = (int(x, 16) for x in head[0].split("-"))
            size_kb = (hi - lo) // 1024
            if name == "[heap]":
                kind = "[heap] (brk: main arena)"
            elif name.startswith("["):
                kind = name
            elif name:
                kind = "file: " + Path(name).name
            else:
                kind = "anonymous"
            groups[kind]["mappings"] += 1
            groups[kind]["Size"] += size_kb
        elif head and head[0].rstrip(":") in ("Rss", "Anonymous", "Private_Dirty"):
            groups[kind][head[0].rstrip(":")] += int(head[1])
    return {k: {f: round(v / 1024, 1) if f != "mappings" else v for f, v in c.items()}
            for k, c in sorted(groups.items(), key=lambda kv: -kv[1]["Rss"])}


def gdb_calls(pid: int, calls: list[str]) -> str:
    cmd = ["gdb", "-p", str(pid), "-batch", "-nx", "-q"]
    for call in calls:
        cmd += ["-ex", call]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout


def malloc_report(pid: int) -> dict[str, Any]:
    """glibc malloc_info, then malloc_trim(0) and the RSS it gives back."""
    out = Path(tempfile.mkdtemp()) / "malloc_info.xml"
    gdb_calls(pid, [f'call (void*)fopen("{out}", "w")', "call (int)malloc_info(0, $1)", "call (int)fclose($1)"])
    xml = out.read_text() if out.exists() else ""
    arenas = re.findall(r'<heap nr="\d+">(.*?)</heap>', xml, re.S)
    per_arena = []
    for body in arenas:
        fast = re.search(r'<total type="fast" count="\d+" size="(\d+)"', body)
        rest = re.search(r'<total type="rest" count="\d+" size="(\d+)"', body)
        cur = re.search(r'<system type="current" size="(\d+)"', body)
        per_arena.append({
            "system_mb": round(int(cur.group(1)) / 2**20, 1) if cur else 0.0,
            "free_mb": round((int(fast.group(1)) if fast else 0) / 2**20 + (int(rest.group(1)) if rest else 0) / 2**20, 1),
        })
    tail = xml[xml.rfind("</heap>"):]
    total = re.search(r'<system type="current" size="(\d+)"', tail)
    mmap = re.search(r'<total type="mmap" count="(\d+)" size="(\d+)"', tail)
    before = status_mb(pid)
    gdb_calls(pid, ["call (int)malloc_trim(0)"])
    after = status_mb(pid)
    return {
        "arenas": len(arenas), "per_arena": per_arena,
        "system_current_mb": round(int(total.group(1)) / 2**20, 1) if total else None,
        "mmapped_chunks": int(mmap.group(1)) if mmap else None,
        "mmapped_mb": round(int(mmap.group(2)) / 2**20, 1) if mmap else None,
        "rss_before_trim_mb": before["VmRSS"], "rss_after_trim_mb": after["VmRSS"],
    }


def run_in_process(pid: int, script: Path) -> str:
    """Run ``script`` inside the (idle) process under the GIL, through gdb:
    a debug measurement (e.g. clear one cache, ``gc.collect``, ``malloc_trim``,
    read RSS again), never part of a benchmark figure."""
    code = f"exec(open({str(script.resolve())!r}).read(), {{'__name__': 'rss_probe'}})"
    return gdb_calls(pid, [
        "call (int)PyGILState_Ensure()",
        f"call (int)PyRun_SimpleString({json.dumps(code)})",
        "call (void)PyGILState_Release($1)",
    ])


def start_lab(work: Path, python: str, registrar_env: dict[str, str]) -> Lab:
    shutil.rmtree(work, ignore_errors=True)
    certs = work / "certs"
    ensure_dev_pki(certs, pledges=1, masa_url=f"https://localhost:{(masa_port := free_port())}")
    lab = Lab(workdir=work / "run", certs=certs, masa_port=masa_port, registrar_port=free_port(), python=python)
    lab.write_configs()
    lab.import_devices()
    create_registrar_store(lab.db_url("registrar"))
    lab.start("masa", timeout=120)
    saved = dict(os.environ)
    os.environ.update(registrar_env)
    try:
        lab.start("registrar", timeout=120)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return lab


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=45.0)
    ap.add_argument("--count", type=int, default=0,
                    help="onboard exactly this many pledges instead of running for --seconds "
                         "(runs to compare then serve the same number)")
    ap.add_argument("--interval", type=float, default=5.0)
    ap.add_argument("--concurrency", type=int, default=50)
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--gdb", action="store_true", help="malloc_info and malloc_trim(0) through gdb at the end")
    ap.add_argument("--inject", default="", metavar="SCRIPT",
                    help="at the end, run SCRIPT inside the registrar through gdb (debug attribution)")
    ap.add_argument("--registrar-env", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--src", default=str(ROOT), help="source tree whose servers run (its .venv's python)")
    ap.add_argument("--workdir", default="var/rss_probe")
    ap.add_argument("--json", default="", help="write the samples and the final report here")
    args = ap.parse_args()
    src = Path(args.src).resolve()
    python = str(src / ".venv" / "bin" / "python")
    env = dict(kv.split("=", 1) for kv in args.registrar_env)
    saved_path = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(src)  # the servers' and the fleet's code come from --src
    work = Path(args.workdir).resolve()
    json_out = Path(args.json).resolve() if args.json else None
    os.chdir(src)  # ``python -m`` puts the working directory first on sys.path
    lab = start_lab(work, python, env)
    samples: list[dict[str, Any]] = []
    report: dict[str, Any] = {"src": str(src), "registrar_env": env}
    try:
        pid = lab.pid("registrar")
        cpu0 = cpu_seconds(pid)
        summary = work / "fleet.json"
        count = args.count or int(args.seconds * 200) + 500
        cmd = lab.fleet_command(count=count, concurrency=args.concurrency, processes=args.processes,
                                json_path=summary, extra=() if args.count else ("--duration", str(args.seconds)))
        fleet = subprocess.Popen(cmd, text=True, stderr=subprocess.PIPE)
        assert fleet.stderr is not None
        fleet.stderr.read(1)  # first progress line: the IDevIDs are issued, enrolments run
        cpu0, masa_cpu0 = cpu_seconds(pid), cpu_seconds(lab.pid("masa"))
        t0 = time.monotonic()
        log = lab.workdir / "registrar.log"
        seen = {"offset": log.stat().st_size, "done": 0}

        def onboarded() -> int:
            """enrollstatus answers (the last request of an onboarding) logged since the start."""
            with log.open("rb") as f:
                f.seek(seen["offset"])
                chunk = f.read()
            cut = chunk.rfind(b"\n") + 1
            seen["offset"] += cut
            seen["done"] += chunk[:cut].count(b"path=/.well-known/brski/enrollstatus status=200")
            return seen["done"]

        assert fleet.stderr is not None
        drain = fleet.stderr
        threading.Thread(target=lambda: drain.read(), daemon=True).start()
        while fleet.poll() is None:
            time.sleep(args.interval)
            s = {"t": round(time.monotonic() - t0, 1), "onboarded": onboarded(), **status_mb(pid)}
            samples.append(s)
            print(json.dumps(s), flush=True)
        cpu1, masa_cpu1 = cpu_seconds(pid), cpu_seconds(lab.pid("masa"))
        fleet_summary = json.loads(summary.read_text()) if summary.exists() else {}
        ok = max(int(fleet_summary.get("successes", 0)), 1)
        report["onboardings"] = fleet_summary.get("successes")
        report["errors"] = fleet_summary.get("failures")
        report["rate_per_s"] = fleet_summary.get("enrollments_per_s")
        report["registrar_cpu_ms_per_onboarding"] = round((cpu1 - cpu0) * 1000 / ok, 2)
        report["masa_cpu_ms_per_onboarding"] = round((masa_cpu1 - masa_cpu0) * 1000 / ok, 2)
        report["final"] = status_mb(pid)
        report["masa_final"] = status_mb(lab.pid("masa"))
        report["smaps"] = smaps_groups(pid)
        if args.inject:
            report["inject"] = run_in_process(pid, Path(args.inject))[-2000:]
            report["after_inject"] = status_mb(pid)
        if args.gdb:
            report["malloc"] = malloc_report(pid)
    finally:
        lab.stop_all()
        if saved_path is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved_path
    report["samples"] = samples
    top = dict(list(report["smaps"].items())[:8])
    print(json.dumps({k: v for k, v in report.items() if k not in ("samples", "smaps")}, indent=1))
    print("smaps (largest Rss first):")
    for kind, fields in top.items():
        print(f"  {kind:40s} {fields}")
    if json_out is not None:
        json_out.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
