"""Nothing lost: SIGKILL the registrar and the MASA at random moments during
many concurrent enrolments, restart them each time, then audit the stores.

Default run: 10 pledges, 200 registrar kills (100-300 ms after each start)
and 80 MASA kills (200-600 ms), about a minute on the 2-core CI machine. BRSKI_SLOW=1 runs
a longer one (30 pledges, 1000 + 400 kills).

Twice: one process per role on SQLite, and two worker processes per role
on PostgreSQL (``workers = 2``; 60 registrar and 24 MASA kills by default). With workers, the kills alternate between
SIGKILL of one worker (its supervisor replaces it while the other worker
keeps serving) and SIGKILL of every process of the role at once (a crash of
the whole service).

How the kills stay fast: a restart is a fork of a *zygote* process that
already imported the server code, so after a kill only the store open, the
key load and the bind remain (about 50 ms); each child runs the role's real
``serve`` command, nothing is stubbed.

Checked afterwards, against the SQLite files and with the real CLI:

* no certificate serial was issued twice, and no two pledges received the
  same one;
* every certificate any pledge received is in the registrar database, byte
  for byte, and is 'issued' or revoked as 'superseded' by a later issuance for
  the same device (a device holds one valid LDevID: an enrolment retried after
  a kill supersedes the earlier one, even when its answer was lost); every
  device holds an issued LDevID in the end;
* both event chains verify (``brski registrar|masa audit verify``);
* every pledge eventually enrols (failed ones are retried after the kills);
* every voucher the registrar stored, and every voucher a pledge accepted,
  has a MASA audit-log entry with its serial and nonce (RFC 8995 5.8.1: the
  MASA commits the entry before it answers).

Reservations orphaned by a kill (certificate rows left in state 'reserved')
are expected and harmless: the row is written before signing and completed
only after, so such a certificate never left the registrar. They are
counted and checked to be unknown to every pledge.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from brski_cli.lab import Lab, ensure_dev_pki, free_port
from pledge_sim.config import load_config
from pledge_sim.service import enroll_one
from tests.e2e.labtools import engine_databases, rows
from tests.store_helpers import as_bytes, as_int

SLOW = os.environ.get("BRSKI_SLOW") == "1"
PLEDGES = 30 if SLOW else 10
REGISTRAR_KILLS = 1000 if SLOW else 200
MASA_KILLS = 400 if SLOW else 80
# With two workers a restart forks a supervisor and two workers (about a
# second on the loaded 2-core CI machine, against 50 ms for one process), so
# the default run kills less often to stay near a minute and a half.
WORKER_KILLS = {"registrar": 1000 if SLOW else 60, "masa": 400 if SLOW else 24}

# A zygote: imports everything heavy once, then forks a fresh server for each
# "go" line on stdin and reports the child's pid. Children are reaped by the
# kernel (SIGCHLD ignored); each runs the role's real `serve` command.
_ZYGOTE = """
import os, signal, sys
role, config, ready, log = sys.argv[1:5]
if role == "registrar":
    import registrar.app, registrar.cli as cli
else:
    import masa.app, masa.cli as cli
signal.signal(signal.SIGCHLD, signal.SIG_IGN)
for line in sys.stdin:
    if line.strip() != "go":
        break
    pid = os.fork()
    if pid == 0:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os._exit(cli.main(["serve", "--config", config, "--ready-file", ready]))
    print(pid, flush=True)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class WarmServer:
    """One role's server, restarted by forking a pre-imported zygote."""

    def __init__(self, lab: Lab, role: str) -> None:
        self.role = role
        self.workers = lab.workers
        self.ready = lab.workdir / f"{role}.ready"
        log = lab.workdir / f"{role}.log"
        self.zygote = subprocess.Popen(
            [sys.executable, "-c", _ZYGOTE, role, str(lab.workdir / f"{role}.toml"), str(self.ready), str(log)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log.open("ab"), text=True,
        )
        self.pid: int | None = None
        self.replaced = False
        self.kills = 0
        self.restart_s: list[float] = []

    def activate(self, timeout: float = 30.0) -> None:
        assert self.zygote.stdin is not None and self.zygote.stdout is not None
        began = time.monotonic()
        self.ready.unlink(missing_ok=True)
        self.zygote.stdin.write("go\n")
        self.zygote.stdin.flush()
        self.pid = int(self.zygote.stdout.readline())
        deadline = time.monotonic() + timeout
        while not self.ready.exists():
            if not _alive(self.pid):
                raise AssertionError(f"{self.role} exited while starting")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.role} did not start within {timeout} s")
            time.sleep(0.002)
        self.restart_s.append(time.monotonic() - began)

    def _wait_gone(self, timeout: float) -> bool:
        assert self.pid is not None
        deadline = time.monotonic() + timeout
        while _alive(self.pid):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.001)
        return True

    def _worker_pids(self) -> list[int]:
        try:
            return list(json.loads(self.ready.read_text()).get("workers", []))
        except (OSError, ValueError):
            return []

    def kill(self) -> None:
        assert self.pid is not None
        workers = self._worker_pids()
        if self.workers > 1 and self.kills % 2 == 0 and workers:
            self._kill_one_worker(random.choice(workers))
            return
        for pid in workers:  # the whole service at once
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        os.kill(self.pid, signal.SIGKILL)
        assert self._wait_gone(10), f"{self.role} survived SIGKILL"
        self.kills += 1

    def _kill_one_worker(self, pid: int, timeout: float = 30.0) -> None:
        """SIGKILL one worker; come back once its supervisor has a replacement listening."""
        os.kill(pid, signal.SIGKILL)
        self.kills += 1
        began = time.monotonic()
        while True:
            now = self._worker_pids()
            if pid not in now and len(now) == self.workers:
                break
            assert time.monotonic() - began < timeout, f"{self.role} worker {pid} was not replaced"
            time.sleep(0.002)
        self.restart_s.append(time.monotonic() - began)
        self.replaced = True

    def stop(self) -> None:
        if self.pid is not None and _alive(self.pid):
            os.kill(self.pid, signal.SIGTERM)
            if not self._wait_gone(20):
                os.kill(self.pid, signal.SIGKILL)
                self._wait_gone(10)
        if self.zygote.stdin is not None:
            self.zygote.stdin.close()  # EOF: the zygote exits
        try:
            self.zygote.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.zygote.kill()
            self.zygote.wait()


@dataclass
class Outcomes:
    received: list[tuple[str, str, bytes]] = field(default_factory=list)  # (device, cert serial, DER)
    vouchers: list[tuple[str, str | None]] = field(default_factory=list)  # (device, nonce hex)
    enrolled: set[str] = field(default_factory=set)
    enrolled_under_fire: int = 0
    attempts: int = 0
    failures: int = 0


class _Quiet:
    def info(self, *a: object, **k: object) -> None: ...
    def debug(self, *a: object, **k: object) -> None: ...
    def warning(self, *a: object, **k: object) -> None: ...
    def log(self, *a: object, **k: object) -> None: ...
    def isEnabledFor(self, *a: object) -> bool:
        return False


async def _pledge_loop(pledge_dir: Path, url: str, out: Outcomes, stop: Any, *, until_enrolled: bool) -> None:
    cfg = load_config(None, {"dir": str(pledge_dir), "registrar": url, "timeout": 10.0})
    streak = 0
    for _ in range(300 if until_enrolled else 1_000_000):
        if stop.is_set() if not until_enrolled else pledge_dir.name in out.enrolled:
            return
        try:
            result = await enroll_one(cfg, log=_Quiet())
        except Exception:  # a dying server can fail a pledge in many ways; retry
            result = None
        out.attempts += 1
        if result is not None and result.voucher is not None:
            out.vouchers.append((pledge_dir.name, result.voucher.nonce))
        if result is not None and result.ldevid is not None:
            # Received, even if a later step (enrollstatus) failed: it must be on record.
            out.received.append((pledge_dir.name, format(result.ldevid.serial_number, "x"),
                                 result.ldevid.public_bytes(Encoding.DER)))
        if result is not None and result.ok and result.ldevid is not None:
            out.enrolled.add(pledge_dir.name)
            streak = 0
        else:
            out.failures += 1
            # Back off with jitter, as a real device would, so the pledges do not
            # keep a restarting server saturated with handshakes.
            streak += 1
            await asyncio.sleep(random.uniform(0.05, min(1.0, 0.1 * 2 ** min(streak, 4))))


def _load_process(pledges: list[str], url: str, stop: Any, result_path: str) -> None:
    """The pledges, in their own process so their CPU work never delays the killers.

    Phase 1 runs until ``stop`` (the kills are over), re-enrolling over and
    over; phase 2 retries every pledge that has not enrolled yet."""
    out = Outcomes()
    dirs = [Path(p) for p in pledges]

    async def main() -> None:
        await asyncio.gather(*(_pledge_loop(p, url, out, stop, until_enrolled=False) for p in dirs))
        out.enrolled_under_fire = len(out.enrolled)
        await asyncio.gather(*(_pledge_loop(p, url, out, stop, until_enrolled=True) for p in dirs))

    asyncio.run(main())
    Path(result_path).write_text(json.dumps({
        "received": [(d, s, der.hex()) for d, s, der in out.received],
        "vouchers": out.vouchers, "enrolled": sorted(out.enrolled),
        "enrolled_under_fire": out.enrolled_under_fire, "attempts": out.attempts, "failures": out.failures,
    }))


def _outcomes(path: Path) -> Outcomes:
    doc = json.loads(path.read_text())
    return Outcomes(
        received=[(d, s, bytes.fromhex(h)) for d, s, h in doc["received"]],
        vouchers=[(d, n) for d, n in doc["vouchers"]], enrolled=set(doc["enrolled"]),
        enrolled_under_fire=doc["enrolled_under_fire"], attempts=doc["attempts"], failures=doc["failures"],
    )


def _killer(server: WarmServer, kills: int, spacing: tuple[float, float], rng: random.Random, errors: list[str]) -> None:
    try:
        while server.kills < kills:
            time.sleep(rng.uniform(*spacing))
            server.replaced = False
            server.kill()
            if not server.replaced:
                server.activate()
    except Exception as exc:  # surfaced by the test
        errors.append(f"{server.role}: {exc!r}")


@pytest.fixture(params=[("sqlite", 1), ("postgresql", 2)], ids=["sqlite-1-worker", "postgresql-2-workers"])
def fault_lab(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Lab]:
    engine, workers = request.param
    masa_port, registrar_port = free_port(), free_port()
    certs = tmp_path / "certs"
    ensure_dev_pki(certs, pledges=PLEDGES, masa_url=f"https://localhost:{masa_port}")
    lab = Lab(workdir=tmp_path / "run", certs=certs, masa_port=masa_port, registrar_port=registrar_port,
              workers=workers, **engine_databases(engine, request))
    lab.write_configs()
    lab.import_devices()
    yield lab


def test_sigkill_during_concurrent_enrolments_loses_nothing(fault_lab: Lab) -> None:
    lab = fault_lab
    started = time.monotonic()
    rng = random.Random(int(os.environ.get("BRSKI_FAULT_SEED", "5")))
    masa, registrar = WarmServer(lab, "masa"), WarmServer(lab, "registrar")
    reg_kills, masa_kills = (
        (REGISTRAR_KILLS, MASA_KILLS) if lab.workers == 1 else (WORKER_KILLS["registrar"], WORKER_KILLS["masa"]))
    masa.activate()
    registrar.activate()
    pledges = sorted(p for p in (lab.certs / "pledges").iterdir() if p.is_dir())
    errors: list[str] = []
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    result_path = lab.workdir / "pledge-outcomes.json"
    load = ctx.Process(target=_load_process, args=([str(p) for p in pledges], lab.registrar_url, stop, str(result_path)))
    try:
        load.start()
        killers = [
            threading.Thread(target=_killer, args=(registrar, reg_kills, (0.1, 0.3), random.Random(rng.random()), errors)),
            threading.Thread(target=_killer, args=(masa, masa_kills, (0.2, 0.6), random.Random(rng.random()), errors)),
        ]
        for k in killers:
            k.start()
        for k in killers:
            k.join()
        kill_phase = time.monotonic() - started
        stop.set()  # kills are over: the pledges now retry until each has enrolled
        load.join(timeout=300)
        assert load.exitcode == 0, f"pledge load process exit {load.exitcode}"
        assert not errors, errors
    finally:
        stop.set()
        if load.is_alive():
            load.terminate()
        registrar.stop()
        masa.stop()
    out = _outcomes(result_path)
    enrolled_under_fire = out.enrolled_under_fire

    reg_db, masa_db = lab.db_url("registrar"), lab.db_url("masa")
    certs = {str(s): (str(d), str(st), as_bytes(der) if der is not None else None)
             for s, d, st, der in rows(reg_db, "SELECT cert_serial, device_serial, state, der FROM certificates")}
    reasons = {str(s): r for s, r in rows(reg_db, "SELECT cert_serial, revocation_reason FROM certificates WHERE state = 'revoked'")}
    order = {str(s): as_int(i) for s, i in rows(reg_db, "SELECT cert_serial, id FROM certificates")}
    duplicates = rows(reg_db, "SELECT cert_serial FROM certificates GROUP BY cert_serial HAVING count(*) > 1")
    received_serials = [s for _, s, _ in out.received]
    orphans = [s for s, (_, st, _) in certs.items() if st == "reserved"]
    issued = [s for s, (_, st, _) in certs.items() if st == "issued"]
    print(
        f"\nfault test: registrar kills={registrar.kills} masa kills={masa.kills} pledges={len(pledges)}"
        f" attempts={out.attempts} failed attempts={out.failures} enrolments={len(out.received)}"
        f" (enrolled during kills: {enrolled_under_fire}/{len(pledges)} devices)"
        f" issued serials={len(issued)} orphaned reservations={len(orphans)}"
        f" duplicate serials={len(duplicates) + len(received_serials) - len(set(received_serials))}"
        f" kill phase={kill_phase:.1f}s total={time.monotonic() - started:.1f}s"
        f" median restart: registrar {statistics.median(registrar.restart_s) * 1000:.0f} ms,"
        f" masa {statistics.median(masa.restart_s) * 1000:.0f} ms"
    )
    assert registrar.kills >= reg_kills and masa.kills >= masa_kills
    # No serial issued twice (the UNIQUE constraint, and what pledges hold).
    assert duplicates == []
    assert len(received_serials) == len(set(received_serials))
    # Every certificate a pledge received is recorded, byte for byte, and is issued
    # or superseded by a later issuance for the same device (RFC 5280 5.3.1).
    for device, serial, der in out.received:
        assert serial in certs, f"{device} holds {serial}, unknown to the registrar"
        owner, state, stored_der = certs[serial]
        assert (owner, stored_der) == (device, der)
        if state != "issued":
            assert (state, reasons[serial]) == ("revoked", "superseded"), (serial, state)
            later = [s for s, (d, st, _) in certs.items() if d == device and st != "reserved" and order[s] > order[serial]]
            assert later, f"{device}'s {serial} was superseded by nothing"
    assert {d for d, st, _ in certs.values() if st == "issued"} >= {p.name for p in pledges}
    # Orphaned reservations never reached anyone.
    assert not set(orphans) & set(received_serials)
    # Every pledge eventually enrolled.
    assert out.enrolled == {p.name for p in pledges}
    # Both hash chains verify, checked by the real CLI.
    for role, db in (("registrar", reg_db), ("masa", masa_db)):
        proc = subprocess.run(
            [sys.executable, "-m", "brski_cli", role, "audit", "verify", "--database", db],
            capture_output=True, text=True, timeout=120,
        )
        print(proc.stdout.strip())
        assert proc.returncode == 0, proc.stdout + proc.stderr
    # Every voucher the registrar got, and every voucher a pledge accepted, is in the MASA audit log.
    audited = {(str(s), as_bytes(n).hex() if n is not None else None)
               for s, n in rows(masa_db, "SELECT serial, nonce FROM audit_log")}
    stored = {(str(s), as_bytes(n).hex() if n is not None else None)
              for s, n in rows(reg_db, "SELECT serial, nonce FROM vouchers")}
    assert stored and stored <= audited, stored - audited
    accepted = set(out.vouchers)
    assert accepted and accepted <= audited, accepted - audited
