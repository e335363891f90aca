"""``brski pledge fleet``: many pledges onboarding at once, with the figures a lab needs.

Why a separate module from :mod:`pledge_sim.service`: one pledge is a protocol
client; a fleet is a load generator.  It owns what a single pledge does not
need: distinct IDevIDs (generated on the fly from the manufacturer's IDevID
CA, or read from a directory of dev-PKI pledge dirs), a concurrency limit,
worker processes so that the generator is not the bottleneck on a multi-core
machine, a progress line on stderr, and the summary (failures by the check
that failed, rate, latency percentiles per phase).

Each enrolment is :func:`pledge_sim.service.enroll_one`, the same full BRSKI +
EST flow as ``brski pledge enroll``; nothing is skipped to look faster.

The MASA vouches only for devices it made (RFC 8995 5.5.4 / 5.6), so a
fleet's IDevIDs are made and registered before the run, each step by the role
that owns it: ``brski pledge fleet-idevids`` issues them from the
manufacturer's IDevID CA into a directory of pledge directories plus one PEM
bundle of the certificates (``idevids.pem``); the manufacturer records that
bundle with ``brski masa devices import`` (its own store, its own CLI); then
``brski pledge fleet --idevid-dir`` runs. The simulator never touches a
server's database.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import multiprocessing as mp
import os
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from rich import progress as rich_progress
from rich.console import Console

from brski.devpki import NO_EXPIRY, idevid_masa_url_extension
from brski.errors import BrskiError, ConfigError
from brski.pki import PrivateKey, load_cert, load_certs, load_private_key
from pledge_sim.config import PledgeConfig
from pledge_sim.service import Identity, enroll_one

__all__ = [
    "PHASES",
    "FleetPledge",
    "Sample",
    "generate_idevids",
    "load_idevid_dir",
    "percentile",
    "run_fleet",
    "summarize",
    "write_idevid_dir",
]

PHASES = ("tls", "voucher", "enroll", "total")

_T = TypeVar("_T")

_uvloop_factory: Callable[[], asyncio.AbstractEventLoop] | None
try:  # not on Windows (pyproject's marker): there the fleet runs on asyncio's own loop
    from uvloop import new_event_loop as _uvloop_factory
except ImportError:  # pragma: no cover
    _uvloop_factory = None
_quiet = logging.getLogger("pledge_sim.fleet.quiet")
_quiet.disabled = True  # per-step lines from thousands of pledges help nobody


@dataclass(frozen=True)
class FleetPledge:
    """One device of the fleet: serial, IDevID, its key and intermediates."""

    serial: str
    cert: x509.Certificate
    key: PrivateKey
    chain: tuple[x509.Certificate, ...] = ()


@dataclass(frozen=True)
class Sample:
    """The outcome of one enrolment, small and picklable (crosses processes)."""

    ok: bool
    check: str | None
    timings_ms: dict[str, float]


# --- identities -------------------------------------------------------------------


def generate_idevids(
    *,
    ca_cert: x509.Certificate,
    ca_key: PrivateKey,
    masa_url: str,
    count: int,
    now: datetime,
    prefix: str | None = None,
) -> list[FleetPledge]:
    """``count`` fresh IDevIDs under the manufacturer's IDevID CA, shaped like
    :mod:`brski.devpki`'s (802.1AR: serialNumber in the subject, no SAN/EKU,
    notAfter 99991231235959Z, id-pe-masa-url of RFC 8995 2.3.2).

    The serial prefix is random per run so two fleets against the same
    registrar never collide with each other or with the dev-PKI pledges."""
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ConfigError("the manufacturer CA key must be an EC key", check="fleet.ca-key")
    prefix = prefix or f"FLT-{os.urandom(3).hex()}"
    ext = idevid_masa_url_extension(masa_url)
    ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    org = next(
        (a.value for a in ca_cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)),
        "brski fleet",
    )
    out: list[FleetPledge] = []
    for i in range(1, count + 1):
        serial = f"{prefix}-{i:07d}"
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, f"fleet pledge {serial}"),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, str(org)),
                x509.NameAttribute(NameOID.SERIAL_NUMBER, serial),
            ]
        )
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(hours=1))
            .not_valid_after(NO_EXPIRY)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .add_extension(aki, False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
            .add_extension(ext, False)
            .sign(ca_key, hashes.SHA256())
        )
        out.append(FleetPledge(serial, cert, key, (ca_cert,)))
    return out


def load_idevid_dir(path: Path) -> list[FleetPledge]:
    """A dev-PKI ``pledges/`` directory (one sub-directory per device), or one
    pledge directory: ``idevid.crt``, ``idevid.key`` and optional ``chain.pem``."""
    dirs = [path] if (path / "idevid.crt").is_file() else sorted(
        d for d in path.iterdir() if (d / "idevid.crt").is_file()
    )
    if not dirs:
        raise ConfigError(f"{path}: no pledge directories (idevid.crt) found", check="fleet.idevid-dir")
    out = []
    for d in dirs:
        try:
            cert = load_cert((d / "idevid.crt").read_bytes())
            key = load_private_key((d / "idevid.key").read_bytes())
            chain = load_certs((d / "chain.pem").read_bytes()) if (d / "chain.pem").is_file() else []
        except (OSError, BrskiError) as exc:
            raise ConfigError(f"{d}: unusable IDevID: {exc}", check="fleet.idevid-dir") from exc
        out.append(FleetPledge(d.name, cert, key, tuple(chain)))
    return out


def idevid_bundle(pledges: Sequence[FleetPledge]) -> bytes:
    """All IDevID certificates as one PEM file (``brski masa devices import`` reads it)."""
    return b"".join(p.cert.public_bytes(serialization.Encoding.PEM) for p in pledges)


#: The certificates-only bundle :func:`write_idevid_dir` leaves next to the pledge dirs.
BUNDLE_NAME = "idevids.pem"


def write_idevid_dir(pledges: Sequence[FleetPledge], path: Path) -> Path:
    """Write ``pledges`` as pledge directories under ``path`` (the dev-PKI
    layout :func:`load_idevid_dir` reads: ``idevid.crt``, ``idevid.key``
    (mode 0600), ``chain.pem``) and their certificates as one PEM bundle for
    ``brski masa devices import``; returns the bundle's path."""
    pem = serialization.Encoding.PEM
    path.mkdir(parents=True, exist_ok=True)
    for p in pledges:
        d = path / p.serial
        d.mkdir()
        (d / "idevid.crt").write_bytes(p.cert.public_bytes(pem))
        key = p.key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        fd = os.open(d / "idevid.key", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key)
        (d / "chain.pem").write_bytes(b"".join(c.public_bytes(pem) for c in p.chain))
    bundle = path / BUNDLE_NAME
    bundle.write_bytes(idevid_bundle(pledges))
    return bundle


# --- running ----------------------------------------------------------------------

Progress = Callable[[Sample], None]


async def run_fleet(
    pledges: Sequence[FleetPledge],
    cfg: PledgeConfig,
    anchors: list[x509.Certificate],
    *,
    concurrency: int,
    deadline: float | None = None,
    on_done: Progress | None = None,
) -> list[Sample]:
    """Enrol ``pledges`` with at most ``concurrency`` in flight.  After
    ``deadline`` (a ``time.monotonic()`` value) no new enrolment starts;
    those in flight finish and count."""
    it = iter(pledges)
    samples: list[Sample] = []

    async def worker() -> None:
        for p in it:
            if deadline is not None and time.monotonic() >= deadline:
                return
            identity: Identity = (p.cert, p.key, list(p.chain), anchors)
            t0 = time.perf_counter()
            try:
                res = await enroll_one(cfg, log=_quiet, identity=identity)
                timings = dict(res.timings_ms)
                timings["total"] = round((time.perf_counter() - t0) * 1000, 2)
                sample = Sample(res.ok, None if res.ok else (res.failed_check or "unknown"), timings)
            except BrskiError as exc:
                sample = Sample(False, exc.check, {})
            except Exception as exc:  # a bug or an OS limit: count it, keep the fleet going
                sample = Sample(False, f"exception.{type(exc).__name__}", {})
            samples.append(sample)
            if on_done is not None:
                on_done(sample)

    await asyncio.gather(*(worker() for _ in range(max(1, concurrency))))
    return samples


def fleet_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop a fleet runs on: uvloop's where it is installed.

    A load generator's own CPU is load it cannot send.  Per onboarding the fleet
    makes two connections, seven exchanges and some forty loop callbacks; on
    asyncio's pure-Python selector loop that bookkeeping (the loop's iterations,
    its handles, the socket transports' reads and writes) was about a seventh of
    the fleet's CPU, which uvloop's loop and transports (libuv, in C) mostly take
    away (measured: docs/performance.md, "The pledge simulator, fourth part").
    The pledges' protocol code and every check they make are the same on either
    loop; ``brski pledge enroll`` (one pledge) keeps asyncio's.
    """
    return _uvloop_factory


def run_on_fleet_loop(coro: Coroutine[Any, Any, _T]) -> _T:
    """``asyncio.run`` on :func:`fleet_loop_factory`'s loop."""
    with asyncio.Runner(loop_factory=fleet_loop_factory()) as runner:
        return runner.run(coro)


def _worker_main(
    pledges: Sequence[FleetPledge],
    cfg: PledgeConfig,
    anchors: list[x509.Certificate],
    concurrency: int,
    deadline: float | None,
    queue: Any,
) -> None:
    """One worker process: run its share and stream samples to the parent.

    Samples travel in batches, at most BATCH_S apart: one queue put per sample
    (pickle, feeder-thread wake-up, pipe write, and the parent's read) cost the
    load generator CPU that the servers it measures should have had.
    """
    batch: list[tuple[bool, str | None, dict[str, float]]] = []
    last = time.monotonic()

    def done(sample: Sample) -> None:
        nonlocal last
        batch.append((sample.ok, sample.check, sample.timings_ms))
        now = time.monotonic()
        if now - last >= BATCH_S:
            queue.put(batch.copy())
            batch.clear()
            last = now

    try:
        run_on_fleet_loop(
            run_fleet(pledges, cfg, anchors, concurrency=concurrency, deadline=deadline, on_done=done)
        )
    finally:
        if batch:
            queue.put(batch)
        queue.put(None)


BATCH_S = 0.1  # how stale the parent's progress line may get


class ProgressBar:
    """A rich progress bar on stderr: bar, count, rate, errors, elapsed time."""

    def __init__(self, total: int, *, stream: Any = sys.stderr, width: int = 30) -> None:
        self.total = total
        self.done = self.errors = 0
        self.enabled = True
        # Rich redraws in place on a terminal and prints the final line elsewhere (logs).
        console = Console(file=stream, width=100)
        self._progress = rich_progress.Progress(
            rich_progress.BarColumn(bar_width=width),
            rich_progress.MofNCompleteColumn(),
            rich_progress.TextColumn("{task.fields[rate]:>7.1f}/s  errors {task.fields[errors]}"),
            rich_progress.TimeElapsedColumn(),
            console=console,
            auto_refresh=False,
            transient=False,
        )
        self._task = self._progress.add_task("fleet", total=total, rate=0.0, errors=0)
        self._started_display = False
        self.started = time.monotonic()
        self._last = 0.0

    def add(self, ok: bool) -> None:
        self.done += 1
        self.errors += 0 if ok else 1
        now = time.monotonic()
        if now - self._last >= 0.25 or self.done == self.total:
            self._last = now
            self.draw()

    def draw(self) -> None:
        if not self.enabled:
            return
        if not self._started_display:
            self._progress.start()
            self._started_display = True
        elapsed = max(time.monotonic() - self.started, 1e-9)
        self._progress.update(
            self._task, completed=self.done, rate=self.done / elapsed, errors=self.errors
        )
        self._progress.refresh()

    def close(self) -> None:
        if self.enabled:
            self.draw()
            self._progress.stop()
            self.enabled = False


def run(
    pledges: Sequence[FleetPledge],
    cfg: PledgeConfig,
    anchors: list[x509.Certificate],
    *,
    concurrency: int,
    processes: int = 1,
    duration: float | None = None,
    progress: bool = True,
) -> tuple[list[Sample], float, float]:
    """Run the fleet in this process or across ``processes`` forked workers
    (each with ``concurrency / processes`` in flight); returns the samples and
    the wall-clock seconds from the first start to the last finish, and the CPU
    seconds the load generator itself spent (this process and its workers), so
    a benchmark can tell how much of the machine the fleet took."""
    bar = ProgressBar(len(pledges))
    bar.enabled = progress
    started = time.monotonic()
    deadline = started + duration if duration else None
    # One plain line marks the start of the timed part (a benchmark samples the
    # servers' CPU when it appears); rich draws nothing until the end when
    # stderr is not a terminal.
    sys.stderr.write(f"fleet: {len(pledges)} pledges, concurrency {concurrency}, {processes} process(es)\n")
    sys.stderr.flush()
    bar.draw()
    # Everything loaded so far (the identities, the libraries) lives to the end of
    # the run: frozen, the collector no longer walks it.  A full collection
    # traversed all of it (35-42 ms of CPU with 300 IDevIDs loaded, once every
    # few hundred onboardings: 0.13 ms an onboarding, measured); forked workers
    # inherit the frozen set and leave its pages shared.
    gc.freeze()
    cpu0 = os.times()
    try:
        samples = _run_samples(pledges, cfg, anchors, bar, concurrency=concurrency, processes=processes,
                               deadline=deadline)
    finally:
        gc.unfreeze()
    wall = time.monotonic() - started
    cpu1 = os.times()
    cpu = sum(cpu1[:4]) - sum(cpu0[:4])  # user, system, children's user and system
    bar.close()
    return samples, wall, cpu


def _run_samples(
    pledges: Sequence[FleetPledge],
    cfg: PledgeConfig,
    anchors: list[x509.Certificate],
    bar: ProgressBar,
    *,
    concurrency: int,
    processes: int,
    deadline: float | None,
) -> list[Sample]:
    """The enrolments of :func:`run`, in this process or in forked workers."""
    samples: list[Sample] = []
    if processes <= 1:

        def done(sample: Sample) -> None:
            bar.add(sample.ok)

        samples = run_on_fleet_loop(
            run_fleet(pledges, cfg, anchors, concurrency=concurrency, deadline=deadline, on_done=done)
        )
    else:
        # fork: keys need no pickling and the workers start in milliseconds.
        ctx = mp.get_context("fork")
        queue = ctx.Queue()
        shares = [pledges[i::processes] for i in range(processes)]
        per = [concurrency // processes + (1 if i < concurrency % processes else 0) for i in range(processes)]
        procs = [
            ctx.Process(target=_worker_main, args=(s, cfg, anchors, max(1, c), deadline, queue), daemon=True)
            for s, c in zip(shares, per, strict=True)
        ]
        for p in procs:
            p.start()
        finished = 0
        while finished < len(procs):
            items = queue.get()
            if items is None:
                finished += 1
                continue
            for item in items:
                sample = Sample(*item)
                samples.append(sample)
                bar.add(sample.ok)
        for p in procs:
            p.join()
    return samples


# --- figures ----------------------------------------------------------------------


def percentile(values: Sequence[float], q: int) -> float | None:
    """The q-th percentile (``statistics.quantiles``, inclusive method: the range of the
    samples, linear between them)."""
    if not values:
        return None
    if len(values) == 1:
        return float(values[0])
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if q < 100 else float(max(values))


def summarize(samples: Sequence[Sample], wall_s: float) -> dict[str, Any]:
    """Successes, failures by the check that failed, rate, latency per phase."""
    ok = [s for s in samples if s.ok]
    failures = Counter(s.check or "unknown" for s in samples if not s.ok)
    latency: dict[str, dict[str, float | None]] = {}
    for phase in PHASES:
        values = [s.timings_ms[phase] for s in ok if phase in s.timings_ms]
        latency[phase] = {f"p{q}": percentile(values, q) for q in (50, 95, 99)}
    return {
        "attempted": len(samples),
        "successes": len(ok),
        "failures": sum(failures.values()),
        "failures_by_check": dict(failures.most_common()),
        "wall_s": round(wall_s, 3),
        "enrollments_per_s": round(len(ok) / wall_s, 2) if wall_s > 0 else 0.0,
        "latency_ms": latency,
    }


def format_summary(summary: dict[str, Any]) -> str:
    lines = [
        f"successes:      {summary['successes']} of {summary['attempted']}",
        f"failures:       {summary['failures']}",
    ]
    for check, n in summary["failures_by_check"].items():
        lines.append(f"  {n:6d}  {check}")
    lines.append(f"rate:           {summary['enrollments_per_s']} enrolments/s over {summary['wall_s']} s")
    lines.append("latency (ms)        p50       p95       p99")
    for phase, q in summary["latency_ms"].items():
        cells = "".join(f"{'-' if v is None else f'{v:.1f}':>10}" for v in q.values())
        lines.append(f"  {phase:<12}{cells}")
    return "\n".join(lines)


def write_json(path: Path, summary: dict[str, Any]) -> None:
    path.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")


# --- command line -----------------------------------------------------------------


def add_parser(sub: Any) -> None:
    """``fleet`` and ``fleet-idevids`` under ``brski pledge`` / ``python -m pledge_sim``."""
    p = sub.add_parser("fleet", help="onboard many pledges concurrently and report rate and latency")
    p.add_argument("--registrar", metavar="URL", required=True, help="registrar base URL")
    p.add_argument("--count", type=int, required=True, metavar="N", help="pledges to onboard")
    p.add_argument("--concurrency", type=int, default=10, metavar="C", help="enrolments in flight")
    p.add_argument("--processes", type=int, default=1, metavar="P", help="worker processes")
    p.add_argument("--duration", type=float, metavar="SECONDS", help="start no enrolment after this")
    p.add_argument(
        "--idevid-dir", metavar="DIR", required=True,
        help="pledge dirs: a dev-PKI pledges/ dir, one pledge dir, or what fleet-idevids wrote",
    )
    p.add_argument("--anchor", metavar="PEM", action="append", help="manufacturer trust anchor (repeatable)")
    p.add_argument("--format", choices=("cms", "cose", "jws"), default="cms", help="voucher format")
    p.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS", help="per-request timeout")
    p.add_argument("--json", metavar="FILE", help="write the summary as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    p.set_defaults(func=cmd_fleet)

    g = sub.add_parser(
        "fleet-idevids",
        help="issue N IDevIDs for a fleet: pledge dirs plus a PEM bundle for `brski masa devices import`",
    )
    g.add_argument("--count", type=int, required=True, metavar="N", help="IDevIDs to issue")
    g.add_argument("--manufacturer-ca", metavar="CERT", required=True, help="IDevID CA certificate to issue from")
    g.add_argument("--manufacturer-key", metavar="KEY", required=True, help="its private key")
    g.add_argument("--masa-url", metavar="URL", required=True, help="id-pe-masa-url of the IDevIDs")
    g.add_argument("--out", metavar="DIR", required=True, help="new directory to write them to")
    g.set_defaults(func=cmd_fleet_idevids)


def cmd_fleet_idevids(args: Any) -> int:
    out = Path(args.out)
    try:
        if args.count < 1:
            raise ConfigError("--count must be >= 1", check="fleet.count")
        if out.exists() and any(out.iterdir()):
            raise ConfigError(f"{out} exists and is not empty", check="fleet.out")
        ca_cert = load_cert(Path(args.manufacturer_ca).read_bytes())
        ca_key = load_private_key(Path(args.manufacturer_key).read_bytes())
        pledges = generate_idevids(
            ca_cert=ca_cert, ca_key=ca_key, masa_url=args.masa_url, count=args.count, now=datetime.now(UTC)
        )
        bundle = write_idevid_dir(pledges, out)
    except (OSError, BrskiError) as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    print(f"{len(pledges)} IDevIDs in {out}; register them: brski masa devices import {bundle}")
    return 0


def _pledges(args: Any) -> list[FleetPledge]:
    pledges = load_idevid_dir(Path(args.idevid_dir))
    if args.count > len(pledges):
        raise ConfigError(
            f"--count {args.count} but {args.idevid_dir} holds {len(pledges)} pledges",
            check="fleet.count",
        )
    return pledges[: args.count]


def cmd_fleet(args: Any) -> int:
    from pledge_sim.config import load_config

    if args.count < 1 or args.concurrency < 1 or args.processes < 1:
        print("fleet: --count, --concurrency and --processes must be >= 1", file=sys.stderr)
        return 2
    try:
        if not args.anchor:
            raise ConfigError("at least one --anchor is required", check="fleet.config")
        cfg = load_config(
            None,
            {"registrar": args.registrar, "anchor": args.anchor, "format": args.format, "timeout": args.timeout},
            purpose="reenroll",
        )
        anchors = [c for a in cfg.anchors for c in load_certs(a.read_bytes())]
        pledges = _pledges(args)
    except (ConfigError, OSError) as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    samples, wall, cpu = run(
        pledges,
        cfg,
        anchors,
        concurrency=args.concurrency,
        processes=args.processes,
        duration=args.duration,
        progress=not args.no_progress,
    )
    summary = summarize(samples, wall)
    summary.update(
        concurrency=args.concurrency,
        processes=args.processes,
        registrar=args.registrar,
        fleet_cpu_ms_per_enrollment=round(cpu * 1000 / max(summary["successes"], 1), 3),
    )
    print(format_summary(summary))
    if args.json:
        write_json(Path(args.json), summary)
    return 0 if summary["failures"] == 0 and summary["successes"] > 0 else 1
