"""Where each role's CPU goes during a fleet run: py-spy samples, attributed to parts.

Starts the MASA and the registrar as ``make bench`` does (SQLite, one worker each),
runs the fleet, and once the fleet prints its first progress line records the
registrar, the MASA and one fleet worker with ``py-spy record --format raw`` for
``--seconds``.  Each sample is charged to the first part (outermost-last: the
innermost frame that names one wins) in :data:`PARTS`; the table per role is the
share of its samples per part.  The raw stacks stay in ``--workdir`` for a closer
look (``grep``, or any flame-graph tool that reads collapsed stacks).

Usage: ``python tools/profile_roles.py [--seconds 15] [--native] [--role registrar]``.
Needs ``py-spy`` (dev extra) and the right to attach to the processes (root, or
``ptrace_scope`` 0).  Nothing here asserts anything; it measures.
"""

from __future__ import annotations

import argparse
import collections
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

from bench import start_lab  # noqa: E402
from benchlib.procs import CLK_TCK, role_pids  # noqa: E402

# (part, substrings of a frame): the innermost frame matching any substring names the part.
PARTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("idle (event loop waiting)", ("select (selectors.py", "epoll_wait", "_run_once (asyncio/base_events.py:1", "wait (threading.py", "get (queue.py")),
    ("TLS handshake", ("do_handshake", "SSL_do_handshake", "_handshake")),
    ("TLS records (read/write)", ("SSL_read", "SSL_write", "bio_read", "bio_write", "recv_into (OpenSSL", "send (OpenSSL", "(brski_web/tls.py")),
    ("socket I/O", ("sock_recv", "sock_send", "_read_ready", "_write_ready", "sock_accept", "accept (socket.py", "close (socket.py", "socket.py")),
    ("CMS sign/verify", ("brski/cms", "cms_verify", "cms_sign", "SignedData")),
    ("voucher encode/parse", ("brski/voucher", "brski/formats", "cbor2", "json/")),
    ("chain / path checks", ("brski/pki", "verify_chain", "x509/verification", "build_chain")),
    ("CSR / issuance", ("brski/est", "issue_ldevid", "parse_csr", "csrattrs", "CertificateBuilder", "x509/base.py")),
    ("key generation", ("generate_private_key",)),
    ("asn1crypto", ("asn1crypto/",)),
    ("storage", ("brski_storage/", "sqlite3", "psycopg")),
    ("HTTP client (pledge/registrar->MASA)", ("aiohttp/client", "aiohttp/connector", "pledge_sim/http", "brski_web/client")),
    ("aiohttp server framing", ("aiohttp/web_protocol", "aiohttp/http_parser", "aiohttp/http_writer", "aiohttp/web_response", "aiohttp/web_request", "aiohttp/helpers", "multidict", "yarl")),
    ("middleware", ("brski_web/middleware", "brski_web/errors", "brski_web/app")),
    ("logging", ("logging/", "brski_web/logs")),
    ("metrics", ("prometheus_client",)),
    ("handlers / services", ("registrar/", "masa/", "pledge_sim/")),
    ("event loop", ("asyncio/",)),
)


def part_of(stack: str) -> str:
    frames = stack.split(";")
    for frame in reversed(frames):
        for part, needles in PARTS:
            if any(n in frame for n in needles):
                return part
    return "other"


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of ``pid``'s main thread (the event loop) and of all its other
    threads together (store writer, reader pool), from ``/proc/<pid>/task/*/stat``."""
    out: dict[str, float] = collections.defaultdict(float)
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = "MainThread" if task.name == str(pid) else "other threads"
            out[name] += cpu_seconds_of(task / "stat")
        except OSError:
            continue
    return dict(out)


def cpu_seconds_of(stat_path: Path) -> float:
    stat = stat_path.read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def summarize(raw: Path, thread: str = "MainThread") -> list[tuple[str, int, float]]:
    """Share of ``thread``'s busy samples per part (samples in the selector's wait excluded)."""
    counts: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit() or f": {thread};" not in stack.split(";", 1)[0] + ";":
            continue
        part = part_of(stack)
        if part.startswith("idle"):
            continue
        counts[part] += int(n)
        total += int(n)
    return [(part, n, 100.0 * n / max(total, 1)) for part, n in counts.most_common()]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--fleet-seconds", type=float, default=0.0, help="default: --seconds + 5")
    ap.add_argument("--native", action="store_true", help="py-spy --native (C frames too)")
    ap.add_argument("--rate", type=int, default=250)
    ap.add_argument("--workdir", default="var/profile")
    args = ap.parse_args()
    work = Path(args.workdir).resolve()
    args.fleet_seconds = args.fleet_seconds or args.seconds + 5
    lab = start_lab(work)
    try:
        cmd = lab.fleet_command(count=int(args.fleet_seconds * 200) + 500, concurrency=50, processes=1,
                                json_path=work / "fleet.json", extra=("--duration", str(args.fleet_seconds)))
        fleet = subprocess.Popen(cmd, text=True, stderr=subprocess.PIPE)
        assert fleet.stderr is not None
        fleet.stderr.read(1)  # the first progress line: IDevIDs issued, enrolments running
        time.sleep(2.0)
        targets = {"registrar": role_pids(lab, "registrar")[0], "masa": role_pids(lab, "masa")[0]}
        kids = subprocess.run(["pgrep", "-P", str(fleet.pid)], capture_output=True, text=True).stdout.split()
        targets["fleet"] = int(kids[0]) if kids else fleet.pid
        spies = {}
        for name, pid in targets.items():
            out = work / f"{name}.raw"
            spy = [str(Path(sys.executable).with_name("py-spy")), "record", "--format", "raw", "--rate", str(args.rate), "--duration", str(int(args.seconds)),
                   "--pid", str(pid), "-o", str(out), "--nonblocking", "--threads"]
            if args.native:
                spy.append("--native")
            spies[name] = (subprocess.Popen(spy, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), out)
        before = {name: thread_cpu(pid) for name, pid in targets.items()}
        t0 = time.monotonic()
        for proc, _ in spies.values():
            proc.wait()
        elapsed = time.monotonic() - t0
        after = {name: thread_cpu(pid) for name, pid in targets.items()}
        fleet.stderr.read()
        fleet.wait(timeout=args.fleet_seconds + 120)
    finally:
        lab.stop_all()
    summary = json.loads((work / "fleet.json").read_text()) if (work / "fleet.json").exists() else {}
    rate = summary.get("enrollments_per_s") or 0.0
    onboardings = max(rate * elapsed, 1.0)
    print(f"\nfleet: {rate} onboardings/s; CPU in ms per onboarding over {elapsed:.1f} s (~{onboardings:.0f} onboardings)")
    for name, (_, out) in spies.items():
        threads = {t: (after[name].get(t, 0.0) - cpu) * 1000 / onboardings for t, cpu in before[name].items()}
        print(f"\n{name}: {sum(threads.values()):.2f} ms  (" +
              ", ".join(f"{t} {ms:.2f}" for t, ms in sorted(threads.items(), key=lambda kv: -kv[1]) if ms >= 0.01) + ")")
        if not out.exists():
            print("  no samples")
            continue
        main_ms = threads.get("MainThread", 0.0)
        for part, n, share in summarize(out):
            print(f"  {share:5.1f}%  {share * main_ms / 100:5.2f} ms  {n:6d}  {part}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
