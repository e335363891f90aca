"""Several worker processes serving one port (``workers = N``, ``--workers N``).

A role's server is one asyncio process; crypto and TLS keep one core busy,
so a registrar or a MASA scales across cores with processes. The supervisor
(this module, in the process the operator started) binds the port once,
then forks N workers; each worker opens its own listening socket on the same
port with ``SO_REUSEPORT`` and the kernel spreads incoming connections
across them. The workers share nothing but the store, which must then be a
server (PostgreSQL): every guarantee the store gives holds across processes
(see brski_storage/postgres.py).

The supervisor keeps its own socket bound (not listening) on each port, so
the port stays reserved while workers come and go, and it never accepts a
connection itself (only listening sockets join the kernel's reuseport group).

Signals, to the supervisor:

* SIGTERM / SIGINT: every worker stops gracefully (stops accepting, finishes
  the requests in flight, closes the store), then the supervisor exits 0;
* SIGHUP: rolling restart, one worker at a time: its replacement is started
  and listening before the old one is told to stop, so capacity never drops
  and no in-flight onboarding fails;
* a worker that dies (crash, OOM kill, SIGKILL) is replaced at once; a
  worker that keeps dying within a second of its start stops the service
  (exit 1) rather than looping.

A stopping worker closes its listening socket; connections the kernel had
already queued on that socket, not yet accepted, are reset unless
``net.ipv4.tcp_migrate_req = 1`` (Linux 5.14+), which moves them to a sibling
listener. The supervisor warns at start when it is off: a rolling restart
then loses the few connections that arrive in that instant.

Workers receive SIGTERM if the supervisor dies (PR_SET_PDEATHSIG), so no
worker outlives it. The ready file (``ready_file``) is written by the
supervisor once every worker listens: ``{url, port, pid, workers: [pids]}``,
rewritten whenever the set of workers changes.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar

from brski.errors import ConfigError
from brski_web.cli import run_command
from brski_web.logs import configure_logging, kv

__all__ = ["WorkerPorts", "check_workers", "serve_command", "serve_workers"]

log = logging.getLogger("brski.workers")

_PR_SET_PDEATHSIG = 1
_SIGNALS = (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 90.0
# A worker that dies this soon after starting is failing, not crashing now and then.
_FLAP_S = 1.0
_MAX_FLAPS = 5


@dataclass(frozen=True, kw_only=True)
class WorkerPorts:
    """What a worker serves on: the supervisor's bound ports, and where it says it is ready."""

    port: int
    http_port: int | None
    ready_file: Path


def _reserve(host: str, port: int) -> socket.socket:
    info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(info[0], socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(info[4])
    return sock


MIGRATE_REQ = Path("/proc/sys/net/ipv4/tcp_migrate_req")


def _check_migrate_req(role: str) -> None:
    try:
        value = MIGRATE_REQ.read_text().strip()
    except OSError:
        value = "unsupported"
    if value != "1":
        log.warning(kv(
            "workers.tcp-migrate-req", role=role, value=value,
            detail="a stopping worker resets connections queued on its socket;"
                   " set sysctl net.ipv4.tcp_migrate_req=1 for restarts that lose none",
        ))


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: workers then outlive a killed supervisor
        pass


@dataclass
class _Worker:
    index: int
    pid: int
    ready: Path
    started: float
    listening: bool = False


@dataclass
class _Supervisor:
    role: str
    count: int
    url_host: str
    port: int
    http_port: int | None
    ready_file: Path | None
    run_worker: Callable[[WorkerPorts], int]
    rundir: Path
    workers: dict[int, _Worker] = field(default_factory=dict)  # by pid
    generation: int = 0
    flaps: int = 0
    keep: list[socket.socket] = field(default_factory=list)

    # --- processes ---------------------------------------------------------

    def spawn(self, index: int) -> _Worker:
        self.generation += 1
        ready = self.rundir / f"worker-{index}-{self.generation}.ready"
        ready.unlink(missing_ok=True)
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                _die_with_parent()
                for sock in self.keep:
                    sock.close()
                for sig in _SIGNALS:
                    signal.signal(sig, signal.SIG_DFL)
                signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
                code = self.run_worker(WorkerPorts(port=self.port, http_port=self.http_port, ready_file=ready))
            finally:
                os._exit(code)
        worker = _Worker(index=index, pid=pid, ready=ready, started=time.monotonic())
        self.workers[pid] = worker
        log.info(kv("worker.started", role=self.role, index=index, pid=pid))
        return worker

    def poll_ready(self) -> bool:
        """Mark workers whose ready file appeared; True if any changed."""
        changed = False
        for w in self.workers.values():
            if not w.listening and w.ready.exists():
                w.listening = True
                changed = True
        return changed

    def reap(self) -> list[_Worker]:
        gone: list[_Worker] = []
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            worker = self.workers.pop(pid, None)
            if worker is not None:
                worker.ready.unlink(missing_ok=True)
                log.info(kv("worker.exited", role=self.role, index=worker.index, pid=pid,
                            status=os.waitstatus_to_exitcode(status)))
                gone.append(worker)
        return gone

    def wait_signal(self, timeout: float) -> int | None:
        info = signal.sigtimedwait(_SIGNALS, timeout)
        return None if info is None else info.si_signo

    def write_ready(self) -> None:
        if self.ready_file is None:
            return
        doc = {
            "url": f"https://{self.url_host}:{self.port}",
            "port": self.port,
            "pid": os.getpid(),
            "workers": sorted(w.pid for w in self.workers.values() if w.listening),
        }
        if self.http_port is not None:
            doc["http_port"] = self.http_port
        tmp = self.ready_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc))
        tmp.replace(self.ready_file)

    def wait_listening(self, worker: _Worker, deadline: float) -> bool:
        """Wait for ``worker`` to listen; False if it died or time ran out."""
        while time.monotonic() < deadline:
            self.poll_ready()
            if worker.listening:
                return True
            sig = self.wait_signal(0.02)
            if sig == signal.SIGCHLD:
                for gone in self.reap():
                    if gone is worker:
                        return False
                    self.replace(gone)
            elif sig in (signal.SIGTERM, signal.SIGINT):
                signal.raise_signal(sig)  # handled after the current step
                return False
        return worker.listening

    def replace(self, gone: _Worker) -> None:
        quick = time.monotonic() - gone.started < _FLAP_S
        self.flaps = self.flaps + 1 if quick else 0
        if self.flaps >= _MAX_FLAPS:
            raise RuntimeError(f"worker {gone.index} keeps dying right after it starts")
        if quick:
            time.sleep(0.2 * self.flaps)
        self.spawn(gone.index)

    def stop_all(self) -> None:
        for w in list(self.workers.values()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(w.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while self.workers and time.monotonic() < deadline:
            self.reap()
            if self.workers:
                self.wait_signal(0.1)
        for w in list(self.workers.values()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(w.pid, signal.SIGKILL)
        while self.workers:
            pid, _ = os.waitpid(-1, 0)
            self.workers.pop(pid, None)

    def rolling_restart(self) -> None:
        """Each worker in turn: start its replacement, wait until it listens,
        then stop the old one gracefully (it finishes what it has in flight)."""
        for old in sorted(self.workers.values(), key=lambda w: w.index):
            if old.pid not in self.workers:
                continue
            new = self.spawn(old.index)
            if not self.wait_listening(new, time.monotonic() + START_TIMEOUT_S):
                log.error(kv("worker.restart-failed", role=self.role, index=old.index))
                return
            with contextlib.suppress(ProcessLookupError):
                os.kill(old.pid, signal.SIGTERM)
            deadline = time.monotonic() + STOP_TIMEOUT_S
            while old.pid in self.workers and time.monotonic() < deadline:
                sig = self.wait_signal(0.05)
                if sig == signal.SIGCHLD or sig is None:
                    for gone in self.reap():
                        if gone is not old:
                            self.replace(gone)
            self.write_ready()
        log.info(kv("workers.restarted", role=self.role, workers=len(self.workers)))

    # --- the loop ----------------------------------------------------------

    def run(self) -> int:
        for i in range(self.count):
            self.spawn(i)
        deadline = time.monotonic() + START_TIMEOUT_S
        for w in list(self.workers.values()):
            if not self.wait_listening(w, deadline):
                log.error(kv("workers.start-failed", role=self.role, index=w.index))
                self.stop_all()
                return 1
        self.write_ready()
        log.info(kv("listening", role=self.role, url=f"https://{self.url_host}:{self.port}",
                    pid=os.getpid(), workers=self.count, http_port=self.http_port))
        while True:
            sig = self.wait_signal(0.05 if any(not w.listening for w in self.workers.values()) else 1.0)
            if sig in (signal.SIGTERM, signal.SIGINT):
                log.info(kv("stopping", role=self.role, workers=len(self.workers)))
                self.stop_all()
                log.info(kv("stopped", role=self.role))
                return 0
            if sig == signal.SIGHUP:
                self.rolling_restart()
            if sig == signal.SIGCHLD:
                try:
                    for gone in self.reap():
                        self.replace(gone)
                except RuntimeError as exc:
                    log.error(kv("workers.failing", role=self.role, error=str(exc)))
                    self.stop_all()
                    return 1
            if self.poll_ready():
                self.write_ready()


def serve_workers(
    *,
    role: str,
    workers: int,
    host: str,
    port: int,
    http_port: int | None,
    ready_file: Path | None,
    run_worker: Callable[[WorkerPorts], int],
) -> int:
    """Supervise ``workers`` processes each running ``run_worker`` on the same
    port(s); returns the exit code. Call it before any event loop or thread
    exists in this process (it forks)."""
    keep = [_reserve(host, port)]
    bound = keep[0].getsockname()[1]
    http_bound: int | None = None
    if http_port is not None:
        keep.append(_reserve(host, http_port))
        http_bound = keep[1].getsockname()[1]
    _check_migrate_req(role)
    signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    url_host = f"[{host}]" if ":" in host else host
    with tempfile.TemporaryDirectory(prefix=f"brski-{role}-workers-") as rundir:
        sup = _Supervisor(role=role, count=workers, url_host=url_host, port=bound, http_port=http_bound,
                          ready_file=ready_file, run_worker=run_worker, rundir=Path(rundir), keep=keep)
        try:
            return sup.run()
        finally:
            if sup.workers:
                sup.stop_all()
            for sock in keep:
                sock.close()
            if ready_file is not None:
                ready_file.unlink(missing_ok=True)


class _ServeConfig(Protocol):
    @property
    def workers(self) -> int: ...
    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def ready_file(self) -> Path | None: ...
    @property
    def log_level(self) -> str: ...


Cfg = TypeVar("Cfg", bound=_ServeConfig)


def serve_command(
    prog: str,
    role: str,
    load: Callable[[], Cfg],
    serve: Callable[[Cfg, WorkerPorts | None], Awaitable[int]],
) -> int:
    """A role's ``serve``: one process, or a supervisor and ``workers`` processes.

    ``serve(cfg, ports)`` runs one server; with ``ports`` it is a worker and
    listens with SO_REUSEPORT on the supervisor's ports.
    """
    try:
        cfg = load()
        check_worker_metrics(cfg.workers, getattr(cfg, "metrics_port", None), os.environ)
    except ConfigError as exc:
        print(f"{prog}: configuration error: {exc.detail}", file=sys.stderr)
        return 2
    if cfg.workers <= 1:
        return run_command(prog, lambda: serve(cfg, None))
    configure_logging(cfg.log_level, role=role)
    return serve_workers(
        role=role,
        workers=cfg.workers,
        host=cfg.host,
        port=cfg.port,
        http_port=getattr(cfg, "http_port", None),
        ready_file=cfg.ready_file,
        run_worker=lambda ports: run_command(prog, lambda: serve(cfg, ports)),
    )


def check_worker_metrics(workers: int, metrics_port: int | None, environ: Mapping[str, str]) -> None:
    """Several workers share one metrics port only in prometheus-client's
    multiprocess mode (brski_web.metrics): without PROMETHEUS_MULTIPROC_DIR the
    second worker could not bind the port, and a scrape would see one worker's
    counts. Refused before any worker starts."""
    if workers > 1 and metrics_port is not None and not environ.get("PROMETHEUS_MULTIPROC_DIR"):
        raise ConfigError(
            "workers > 1 with metrics_port need PROMETHEUS_MULTIPROC_DIR set to an empty directory "
            "(each worker writes its samples there; any worker answers a scrape with their sum)",
            check="config.metrics-multiprocess",
        )


def check_workers(workers: object, database: str) -> None:
    """``workers`` is 1..64, and more than one needs a store server."""
    if not isinstance(workers, int) or isinstance(workers, bool) or not 1 <= workers <= 64:
        raise ConfigError("workers must be an integer from 1 to 64", check="config.workers")
    if workers > 1 and not database.startswith(("postgresql://", "postgres://")):
        raise ConfigError(
            "workers > 1 share one store: use a postgresql:// database (SQLite has a single writer)",
            check="config.workers",
        )
