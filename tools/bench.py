"""``make bench``: how many devices per second one registrar onboards, and at what cost.

Everything runs on this machine, on loopback: the MASA and the registrar as
real processes (``brski_cli.lab``), the fleet (``brski pledge fleet``) as
worker processes beside them.  Figures are measured, printed and written to
``bench-results.json``; nothing here asserts a target (timings are not tests).

What is measured, and how:

* the sustained rate and latency: the fleet at concurrency 50 for
  ``BENCH_SECONDS`` (default 60) against an empty registrar store;
* CPU per enrolment of the registrar and the MASA from their own process
  accounting (``/proc/<pid>/stat`` utime + stime, before and after), and their
  peak RSS (``VmHWM``);
* the ceilings, in the same run with the same certificate types: the CPU
  ``openssl s_server`` spends per mutual-TLS handshake (registrar TLS
  certificate, a pledge IDevID as client certificate, tickets off) driven by
  ``openssl s_time -new``, and ``openssl speed ecdsap256`` sign and verify;
* the same fleet again after 1,000,000 device rows were inserted straight
  into the registrar's store (schema created by the store's own migrations);
* the web console's device list on that store: every keyset page of
  ``/console/devices`` walked over one keep-alive HTTPS connection with the
  admin certificate (wall time per page, registrar CPU per page), a page deep
  in the list and a serial-prefix search. ``--console-only N`` measures just
  this, on a fresh lab with N preloaded devices (e.g. 10000).

* the store engines and worker counts side by side (``--database``,
  ``--workers``): by default SQLite with one worker per role, then
  PostgreSQL (a throw-away cluster, fsync on) with 1 and with 2 workers per
  role, each on fresh stores; the CPU per onboarding there adds up every
  worker of a role, and the PostgreSQL server's own CPU is reported beside.

* EST ``/simpleenroll`` against ``openssl s_server`` on pinned cores, a new
  mutual-TLS connection per request (:mod:`benchlib.est`); ``--est-only``
  (``make bench-est``) runs just that.

Usage: ``python tools/bench.py [--seconds S] [--concurrency C] [--skip-1m]
[--database sqlite,postgresql] [--workers 1,2] [--console-only N] [--est-only]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchlib.ceilings import bare_http_cpu, handshake_rounds, openssl_p256, openssl_versions  # noqa: E402
from benchlib.est import est_comparison, print_est  # noqa: E402
from benchlib.procs import cpu_model, group_cpu, peak_rss_mb, postgres_pids, role_pids  # noqa: E402
from benchlib.stores import console_paging, create_registrar_store, preload_registrar  # noqa: E402

from brski_cli.lab import Lab, ensure_dev_pki, free_port  # noqa: E402

# What a pledge asks the registrar per onboarding (pledge_sim.service): requestvoucher,
# voucher_status, cacerts, csrattrs, simpleenroll, enrollstatus (RFC 8995 5.2-5.9).
PLEDGE_REQUESTS = 6


# --- the fleet ----------------------------------------------------------------------


def run_fleet(
    lab: Lab, out: Path, *, count: int, concurrency: int, processes: int, seconds: float, cluster: Any = None
) -> dict[str, Any]:
    """One timed fleet run on IDevIDs the lab issued and the MASA imported
    (``Lab.fleet_command``) before the fleet's clock starts."""
    groups = {name: role_pids(lab, name) for name in ("registrar", "masa")}
    summary_path = out / "fleet.json"
    summary_path.unlink(missing_ok=True)
    cmd = lab.fleet_command(
        count=count, concurrency=concurrency, processes=processes, json_path=summary_path,
        extra=("--duration", str(seconds)),
    )
    # CPU is sampled when the fleet prints its first progress line (the
    # IDevIDs were issued and imported before it started), and again when it exits.
    proc = subprocess.Popen(cmd, text=True, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    first = proc.stderr.read(1)
    if cluster is not None:
        groups["postgresql"] = postgres_pids(cluster)  # backends exist once the fleet runs
    before = {name: group_cpu(p) for name, p in groups.items()}
    sys.stderr.write(first)
    while chunk := proc.stderr.read(256):
        sys.stderr.write(chunk)
        sys.stderr.flush()
    proc.wait(timeout=seconds * 4 + 300)
    after = {name: group_cpu(p) for name, p in groups.items()}
    if not summary_path.exists():
        raise SystemExit(f"the fleet produced no summary (exit {proc.returncode})")
    summary: dict[str, Any] = json.loads(summary_path.read_text())
    ok = max(summary["successes"], 1)
    # A process present at both samples counts (a backend that came or went
    # in between is missed: the figure is a lower bound for PostgreSQL).
    summary["cpu_ms_per_enrollment"] = {
        name: round(sum(after[name][p] - before[name][p] for p in before[name] if p in after[name]) * 1000 / ok, 3)
        for name in groups
    }
    return summary


def voucher_bench() -> dict[str, Any] | None:
    script = ROOT / "tools" / "bench_vouchers.py"
    if not script.exists():
        return None
    proc = subprocess.run([sys.executable, str(script), "--json"], capture_output=True, text=True, timeout=600)
    try:
        result: dict[str, Any] = json.loads(proc.stdout)
        return result
    except ValueError:
        return {"error": proc.stderr.strip()[-500:]}


# --- main ---------------------------------------------------------------------------


def start_lab(work: Path, *, workers: int = 1, cluster: Any = None) -> Lab:
    """MASA and registrar on fresh stores: SQLite files, or new schemas in ``cluster``."""
    shutil.rmtree(work, ignore_errors=True)
    masa_port, registrar_port = free_port(), free_port()
    certs = work / "certs"
    ensure_dev_pki(certs, pledges=1, masa_url=f"https://localhost:{masa_port}")
    stores = {} if cluster is None else {
        "registrar_database": cluster.new_schema("registrar"), "masa_database": cluster.new_schema("masa")}
    lab = Lab(workdir=work / "run", certs=certs, masa_port=masa_port, registrar_port=registrar_port,
              workers=workers, **stores)
    lab.write_configs()
    lab.import_devices()  # also creates the MASA store through its migrations
    create_registrar_store(lab.db_url("registrar"))
    lab.start("masa", timeout=120)
    lab.start("registrar", timeout=120)
    return lab


def console_only(work: Path, devices: int) -> int:
    lab = start_lab(work)
    try:
        lab.stop("registrar")
        preload_registrar(lab.workdir / "registrar.db", devices)
        lab.start("registrar")
        result = console_paging(lab, devices)
    finally:
        lab.stop_all()
    print(json.dumps(result, indent=2))
    return 0


def configurations(databases: str, workers: str) -> list[tuple[str, int]]:
    """(engine, workers) pairs to run; SQLite only with one worker (one writer)."""
    dbs = [d.strip() for d in databases.split(",") if d.strip()]
    counts = [int(w) for w in workers.split(",") if w.strip()]
    bad = set(dbs) - {"sqlite", "postgresql"}
    if bad or not dbs or not counts or min(counts) < 1:
        raise SystemExit(f"--database takes sqlite,postgresql and --workers positive integers (got {databases!r}, {workers!r})")
    return [(d, w) for d in dbs for w in counts if not (d == "sqlite" and w > 1)]


def engine_runs(work: Path, configs: list[tuple[str, int]], args: argparse.Namespace, count: int) -> list[dict[str, Any]]:
    """One fleet run per (engine, workers) on fresh stores; PostgreSQL on a
    throw-away cluster with fsync on, as in production."""
    from brski_cli.pgcluster import pg_cluster

    runs: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        cluster = stack.enter_context(pg_cluster(durable=True)) if any(d == "postgresql" for d, _ in configs) else None
        for database, workers in configs:
            print(f"\n== {database}, {workers} worker(s) per role ==", flush=True)
            lab = start_lab(work / f"{database}-{workers}", workers=workers,
                            cluster=cluster if database == "postgresql" else None)
            try:
                fleet = run_fleet(lab, work, count=count, concurrency=args.concurrency, processes=args.processes,
                                  seconds=args.seconds, cluster=cluster if database == "postgresql" else None)
            finally:
                lab.stop_all()
            cpu = fleet["cpu_ms_per_enrollment"]
            runs.append({
                "database": database, "workers": workers, "enrollments_per_s": fleet["enrollments_per_s"],
                "errors": fleet["failures"], "p50_ms": fleet["latency_ms"]["total"]["p50"],
                "p99_ms": fleet["latency_ms"]["total"]["p99"],
                "registrar_cpu_ms_per_enrollment": cpu["registrar"], "masa_cpu_ms_per_enrollment": cpu["masa"],
                "postgresql_cpu_ms_per_enrollment": cpu.get("postgresql"),
            })
    return runs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=float(os.environ.get("BENCH_SECONDS", 60)))
    ap.add_argument("--concurrency", type=int, default=50)
    ap.add_argument("--processes", type=int, default=int(os.environ.get("BENCH_FLEET_PROCESSES", 2)))
    ap.add_argument("--preload", type=int, default=int(os.environ.get("BENCH_PRELOAD", 1_000_000)))
    ap.add_argument("--skip-1m", action="store_true", help="skip the preloaded-store run")
    ap.add_argument("--workdir", default="var/bench")
    ap.add_argument("--out", default="bench-results.json")
    ap.add_argument("--console-only", type=int, metavar="N", help="only the console paging, N preloaded devices")
    ap.add_argument("--database", default=os.environ.get("BENCH_DATABASE", "sqlite,postgresql"),
                    help="store engines to compare: sqlite, postgresql or both (comma-separated)")
    ap.add_argument("--workers", default=os.environ.get("BENCH_WORKERS", "1,2"),
                    help="worker processes per role to compare, e.g. 1,2 (SQLite runs with 1 only)")
    ap.add_argument("--engines-only", action="store_true",
                    help="only the engine/worker comparison (no ceilings, no 1M store)")
    ap.add_argument("--est-only", action="store_true",
                    help="only the EST /simpleenroll comparison with openssl s_server (make bench-est)")
    ap.add_argument("--est-seconds", type=float, default=float(os.environ.get("BENCH_EST_SECONDS", 30)),
                    help="seconds of the EST comparison, split over its 3 alternating rounds")
    args = ap.parse_args()
    configs = configurations(args.database, args.workers)
    work = Path(args.workdir).resolve()
    if args.console_only:
        return console_only(work, args.console_only)
    count = int(args.seconds * 300) + 500  # more IDevIDs than the fleet can use in the time
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores; Python {platform.python_version()}")
    if args.est_only:
        est = est_comparison(work / "est", seconds=args.est_seconds)
        Path(args.out).write_text(json.dumps(est, indent=2) + "\n")
        print()
        print_est(est)
        print(f"\nwritten: {args.out}")
        return 0
    print(f"fleet: concurrency {args.concurrency}, {args.processes} processes, {args.seconds:g} s per run")
    if args.engines_only:
        runs = engine_runs(work, configs, args, count)
        Path(args.out).write_text(json.dumps({"engines": runs}, indent=2) + "\n")
        print_engines(runs)
        return 0

    lab = start_lab(work)
    try:
        print("\n== empty registrar store ==", flush=True)
        empty = run_fleet(lab, work, count=count, concurrency=args.concurrency, processes=args.processes, seconds=args.seconds)
        rss = {name: peak_rss_mb(lab.pid(name)) for name in ("registrar", "masa")}
        big: dict[str, Any] | None = None
        console: dict[str, Any] | None = None
        preload_s = None
        if not args.skip_1m:
            lab.stop("registrar")
            preload_s = preload_registrar(lab.workdir / "registrar.db", args.preload)
            lab.start("registrar")
            print(f"\n== {args.preload:,} devices preloaded into the registrar store ({preload_s:.1f} s) ==", flush=True)
            big = run_fleet(lab, work, count=count, concurrency=args.concurrency, processes=args.processes, seconds=args.seconds)
            rss["registrar_after_preload"] = peak_rss_mb(lab.pid("registrar"))
            console = console_paging(lab, args.preload)
        print("\n== ceilings (same machine, same certificate types) ==", flush=True)
        mtls, reg_tls = handshake_rounds(lab, min(10.0, max(3.0, args.seconds / 6)))
    finally:
        lab.stop_all()

    # The baseline above is SQLite with one worker; the other engine/worker
    # configurations run next, each on fresh stores.
    runs = engine_runs(work, [c for c in configs if c != ("sqlite", 1)], args, count)
    runs.insert(0, {
        "database": "sqlite", "workers": 1, "enrollments_per_s": empty["enrollments_per_s"],
        "errors": empty["failures"], "p50_ms": empty["latency_ms"]["total"]["p50"],
        "p99_ms": empty["latency_ms"]["total"]["p99"],
        "registrar_cpu_ms_per_enrollment": empty["cpu_ms_per_enrollment"]["registrar"],
        "masa_cpu_ms_per_enrollment": empty["cpu_ms_per_enrollment"]["masa"],
        "postgresql_cpu_ms_per_enrollment": None,
    })
    print("\n== EST /simpleenroll against openssl s_server (pinned cores) ==", flush=True)
    est = est_comparison(work / "est", seconds=args.est_seconds)
    bare_ms = bare_http_cpu(lab.certs)
    p256 = openssl_p256(3)
    vouchers = voucher_bench()

    reg_cpu = empty["cpu_ms_per_enrollment"]["registrar"]
    ossl = mtls["server_cpu_ms_per_handshake"]
    reg_hs = reg_tls["server_cpu_ms_per_handshake"]
    results: dict[str, Any] = {
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version()},
        "seconds": args.seconds,
        "concurrency": args.concurrency,
        "fleet_processes": args.processes,
        "enrollments_per_s": empty["enrollments_per_s"],
        "errors": empty["failures"],
        "failures_by_check": empty["failures_by_check"],
        "p50_ms": empty["latency_ms"]["total"]["p50"],
        "p95_ms": empty["latency_ms"]["total"]["p95"],
        "p99_ms": empty["latency_ms"]["total"]["p99"],
        "latency_ms": empty["latency_ms"],
        "registrar_cpu_ms_per_enrollment": reg_cpu,
        "masa_cpu_ms_per_enrollment": empty["cpu_ms_per_enrollment"]["masa"],
        "fleet_cpu_ms_per_enrollment": empty.get("fleet_cpu_ms_per_enrollment"),
        "openssl_mtls_cpu_ms_per_handshake": ossl,
        "openssl_mtls_handshakes_per_s": mtls["handshakes_per_s"],
        "openssl_mtls_cpu_ms_rounds": mtls["rounds_ms"],
        "p256_sign_us": p256.get("sign_us"),
        "p256_verify_us": p256.get("verify_us"),
        "registrar_ratio_vs_openssl": round(reg_cpu / ossl, 2) if ossl else None,
        "masa_ratio_vs_openssl": round(empty["cpu_ms_per_enrollment"]["masa"] / ossl, 2) if ossl else None,
        "fleet_ratio_vs_openssl": (
            round(empty["fleet_cpu_ms_per_enrollment"] / ossl, 2)
            if ossl and empty.get("fleet_cpu_ms_per_enrollment") else None
        ),
        # EST /simpleenroll, its own alternating rounds on pinned cores (benchlib/est.py).
        **est,
        # An onboarding is two mutual-TLS handshakes at the registrar (IDevID,
        # then the LDevID for enrollstatus, RFC 8995 5.9.4): what those alone
        # cost it, and what they alone put into the ratio above.
        "registrar_tls_cpu_ms_per_handshake": reg_hs,
        "registrar_tls_handshakes_per_s": reg_tls["handshakes_per_s"],
        "registrar_tls_cpu_ms_rounds": reg_tls["rounds_ms"],
        "registrar_handshakes_ratio_vs_openssl": round(2 * reg_hs / ossl, 2) if ossl else None,
        "registrar_cpu_ms_per_enrollment_beyond_tls": round(reg_cpu - 2 * reg_hs, 3),
        "openssl_versions": openssl_versions(),
        # A lower bound of the registrar's CPU per onboarding that no BRSKI code
        # can go under: its two handshakes plus the pledge's six requests as
        # bare aiohttp exchanges (no crypto, storage, policy or MASA round trips).
        "bare_http_cpu_ms_per_request": bare_ms,
        "registrar_floor_cpu_ms_per_enrollment": round(2 * reg_hs + PLEDGE_REQUESTS * bare_ms, 3),
        "registrar_floor_ratio_vs_openssl": round((2 * reg_hs + PLEDGE_REQUESTS * bare_ms) / ossl, 2) if ossl else None,
        "registrar_peak_rss_mb": rss["registrar"],
        "masa_peak_rss_mb": rss["masa"],
        "rate_1m_vs_empty": round(big["enrollments_per_s"] / empty["enrollments_per_s"], 3) if big and empty["enrollments_per_s"] else None,
        "rate_1m_enrollments_per_s": big["enrollments_per_s"] if big else None,
        "errors_1m": big["failures"] if big else None,
        "registrar_peak_rss_mb_1m": rss.get("registrar_after_preload"),
        "preload_devices": None if args.skip_1m else args.preload,
        "preload_seconds": round(preload_s, 1) if preload_s is not None else None,
        "vouchers": vouchers,
        "console_paging": console,
        "engines": runs,
    }
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print_report(results)
    print(f"\nwritten: {args.out}")
    return 0


def print_engines(runs: list[dict[str, Any]]) -> None:
    print("\nstore engine / workers per role:  enrolments/s  errors  p50 ms  p99 ms  CPU ms per onboarding:"
          " registrar  MASA  PostgreSQL")
    for r in runs:
        pg = "-" if r["postgresql_cpu_ms_per_enrollment"] is None else r["postgresql_cpu_ms_per_enrollment"]
        print(f"  {r['database']:<10} {r['workers']:>2} worker(s) {r['enrollments_per_s']:>14} {r['errors']:>7}"
              f" {r['p50_ms']:>7.0f} {r['p99_ms']:>7.0f} {r['registrar_cpu_ms_per_enrollment']:>33}"
              f" {r['masa_cpu_ms_per_enrollment']:>5} {pg!s:>11}")


def print_report(r: dict[str, Any]) -> None:
    lat = r["latency_ms"]
    print(f"\nmachine:                     {r['machine']['cpu']}, {r['machine']['cores']} cores")
    print(f"enrolments/s (c={r['concurrency']}, {r['seconds']:g} s): {r['enrollments_per_s']}   errors: {r['errors']} {r['failures_by_check'] or ''}")
    print("latency ms        p50      p95      p99")
    for phase in ("tls", "voucher", "enroll", "total"):
        q = lat[phase]
        print(f"  {phase:<10}" + "".join(f"{'-' if q[k] is None else q[k]:>9}" for k in ("p50", "p95", "p99")))
    print(f"registrar CPU/enrolment:     {r['registrar_cpu_ms_per_enrollment']} ms   peak RSS {r['registrar_peak_rss_mb']} MB")
    print(f"MASA CPU/enrolment:          {r['masa_cpu_ms_per_enrollment']} ms   peak RSS {r['masa_peak_rss_mb']} MB")
    print(f"fleet (load generator) CPU:  {r['fleet_cpu_ms_per_enrollment']} ms/enrolment")
    print(f"openssl s_server mTLS:       {r['openssl_mtls_cpu_ms_per_handshake']} ms CPU/handshake ({r['openssl_mtls_handshakes_per_s']}/s via s_time;"
          f" median of rounds {r['openssl_mtls_cpu_ms_rounds']})")
    print(f"P-256 (openssl speed):       sign {r['p256_sign_us']} us, verify {r['p256_verify_us']} us")
    print(f"registrar / openssl mTLS:    {r['registrar_ratio_vs_openssl']}x   MASA / openssl: {r['masa_ratio_vs_openssl']}x"
          f"   fleet / openssl: {r['fleet_ratio_vs_openssl']}x")
    print(f"registrar TLS alone:         {r['registrar_tls_cpu_ms_per_handshake']} ms CPU/handshake (s_time, {r['registrar_tls_handshakes_per_s']}/s,"
          f" rounds {r['registrar_tls_cpu_ms_rounds']});"
          f" its 2 handshakes per onboarding = {r['registrar_handshakes_ratio_vs_openssl']}x openssl,"
          f" the rest of an onboarding {r['registrar_cpu_ms_per_enrollment_beyond_tls']} ms")
    print(f"bare HTTP exchange:          {r['bare_http_cpu_ms_per_request']} ms CPU (aiohttp on brski_web.tls, keep-alive, no BRSKI)")
    print(f"registrar floor:             {r['registrar_floor_cpu_ms_per_enrollment']} ms = 2 handshakes + {PLEDGE_REQUESTS} bare exchanges"
          f" = {r['registrar_floor_ratio_vs_openssl']}x openssl")
    v_ossl = r["openssl_versions"]
    print(f"OpenSSL:                     ceiling {v_ossl['system']}; servers {v_ossl['servers']}")
    if r["rate_1m_vs_empty"] is not None:
        print(f"1M-device store:             {r['rate_1m_enrollments_per_s']}/s = {r['rate_1m_vs_empty']} x empty (errors {r['errors_1m']}, registrar RSS {r['registrar_peak_rss_mb_1m']} MB)")
    c = r.get("console_paging")
    if c:
        print(f"console device list:         {c['devices']:,} devices, {c['pages_walked']} pages of {c['page_size']}: p50 {c['page_ms_p50']} ms,"
              f" max {c['page_ms_max']} ms, registrar CPU {c['registrar_cpu_ms_per_page']} ms/page;"
              f" deep page {c['deep_page_ms']} ms, prefix search {c['prefix_search_ms']} ms")
    print_engines(r.get("engines", []))
    print_est(r)
    v = r.get("vouchers")
    if isinstance(v, dict) and "error" not in v:
        print("voucher sign/verify (tools/bench_vouchers.py): " + json.dumps(v)[:400])


if __name__ == "__main__":
    raise SystemExit(main())
