"""``make bench-est``: our registrar's EST ``/simpleenroll`` against a bare
``openssl s_server`` handshake, server CPU per request, in alternating rounds.

The set-up the peers were measured with (globalsign/est, libest): the server
pinned to one core (``taskset``), the load on the other, a new mutual-TLS
connection per request (the IDevID as client certificate), one first
enrolment per request. Ours is durable: the serial and key are reserved
before signing and the certificate is recorded (fsync) before the answer.

Devices that may enrol must hold a voucher from this registrar (RFC 8995
5.9). Onboarding thousands of them through the MASA first would measure the
voucher path as well, so the IDevIDs are generated here and their rows
written into the registrar's store in state ``voucher-obtained`` with the
pinned IDevID fingerprint, then adopted as a recorded baseline (as an
operator would with ``audit adopt``), before the registrar starts. Each
request then takes exactly the path a pledge's first ``/simpleenroll`` takes.

Per round: ``s_server`` handshakes (``s_time -new``), the registrar's own
bare handshakes (``s_time`` at its port) and the EST requests, each for the
round's seconds; server CPU from ``/proc/<pid>/stat`` around each. Medians of
the rounds are reported with every round kept.
"""

from __future__ import annotations

import asyncio
import base64
import multiprocessing as mp
import os
import shutil
import socket
import sqlite3
import ssl
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from benchlib.ceilings import median, openssl_mtls, s_time_cpu
from benchlib.procs import cpu_seconds, peak_rss_mb
from brski_cli.lab import Lab, ensure_dev_pki, free_port

SERVER_CORE, CLIENT_CORE = 0, 1
PATH = "/.well-known/est/simpleenroll"


def write_devices(lab: Lab, count: int, work: Path) -> list[tuple[Path, bytes]]:
    """``count`` IDevIDs, each a PEM file (certificate, chain, key) for the
    client and a base64 CSR for a fresh key, their devices vouched in the store."""
    from brski.pki import device_serial, fingerprint_sha256, load_cert, load_private_key
    from brski.pledge_checks import build_csr_der, device_subject
    from pledge_sim.fleet import generate_idevids

    certs = lab.certs / "manufacturer"
    ca_cert = load_cert((certs / "idevid-ca.crt").read_bytes())
    root = load_cert((certs / "root-ca.crt").read_bytes())
    pledges = generate_idevids(
        ca_cert=ca_cert, ca_key=load_private_key((certs / "idevid-ca.key").read_bytes()),
        masa_url="https://localhost:1", count=count, now=datetime.now(UTC), prefix=f"EST-{os.urandom(3).hex()}",
    )
    out_dir = work / "est-clients"
    out_dir.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC).isoformat(timespec="microseconds")
    rows, clients = [], []
    for p in pledges:
        serial = device_serial(p.cert) or p.serial
        pem = out_dir / f"{serial}.pem"
        pem.write_bytes(
            p.cert.public_bytes(serialization.Encoding.PEM)
            + ca_cert.public_bytes(serialization.Encoding.PEM)
            + p.key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        csr = build_csr_der(key=ec.generate_private_key(ec.SECP256R1()), subject=device_subject(serial))
        clients.append((pem, base64.encodebytes(csr)))
        rows.append((serial, ca_cert.subject.rfc4514_string(), fingerprint_sha256(p.cert),
                     root.subject.rfc4514_string(), now, now))
    con = sqlite3.connect(lab.workdir / "registrar.db")
    with con:
        con.executemany(
            "INSERT INTO devices (serial, idevid_issuer, idevid_fingerprint, manufacturer,"
            " state, first_seen, updated_at) VALUES (?, ?, ?, ?, 'voucher-obtained', ?, ?)",
            rows,
        )
    con.close()
    _adopt(lab, count)
    return clients


def _adopt(lab: Lab, count: int) -> None:
    from brski_storage import open_registrar_store

    async def main() -> None:
        store = await open_registrar_store(lab.db_url("registrar"))
        try:
            await store.adopt_state_baseline(at=None, reason=f"benchmark: {count} vouched devices for EST")
        finally:
            await store.close()

    asyncio.run(main())


def _enroll_once(port: int, ctx: ssl.SSLContext, csr_b64: bytes) -> bool:
    """One request on a new connection: handshake, POST, read the answer, hang up."""
    req = (
        f"POST {PATH} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/pkcs10\r\n"
        f"Content-Transfer-Encoding: base64\r\nConnection: close\r\nContent-Length: {len(csr_b64)}\r\n\r\n"
    ).encode() + csr_b64
    with socket.create_connection(("127.0.0.1", port), timeout=30) as raw, \
            ctx.wrap_socket(raw, server_hostname="localhost") as conn:
        conn.sendall(req)
        buf = b""
        while chunk := conn.recv(65536):
            buf += chunk
    return buf.startswith(b"HTTP/1.1 200")


def _load(port: int, clients: list[tuple[Path, bytes]], seconds: float, threads: int, out: Any) -> None:
    """The load process (on the other core): ``threads`` clients, each request
    a new device on a new connection, until the time or the devices run out."""
    os.sched_setaffinity(0, {CLIENT_CORE})
    contexts = []
    for pem, csr in clients:  # client-side set-up before the clock
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # the server's cost is measured, not the client's trust
        ctx.load_cert_chain(str(pem))
        contexts.append((ctx, csr))
    lock = threading.Lock()
    counts = {"ok": 0, "failed": 0}
    deadline = time.monotonic() + seconds
    it = iter(contexts)

    def worker() -> None:
        while time.monotonic() < deadline:
            with lock:
                item = next(it, None)
            if item is None:
                return
            try:
                ok = _enroll_once(port, *item)
            except OSError:
                ok = False
            with lock:
                counts["ok" if ok else "failed"] += 1

    out.put("ready")
    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    out.put(counts)


def est_round(lab: Lab, clients: list[tuple[Path, bytes]], seconds: float, threads: int = 6) -> dict[str, Any]:
    """Server CPU per enrolment over one round of EST requests."""
    ctx = mp.get_context("fork")
    q: Any = ctx.Queue()
    proc = ctx.Process(target=_load, args=(lab.registrar_port, clients, seconds, threads, q))
    proc.start()
    q.get(timeout=300)  # contexts loaded: start the clock
    pid = lab.pid("registrar")
    c0, t0 = cpu_seconds(pid), time.monotonic()
    counts = q.get(timeout=seconds + 300)
    c1, wall = cpu_seconds(pid), time.monotonic() - t0
    proc.join(timeout=30)
    ok = counts["ok"]
    return {
        "enrollments": ok, "errors": counts["failed"], "enrollments_per_s": round(ok / wall, 1),
        "server_cpu_ms_per_enrollment": round((c1 - c0) * 1000 / ok, 3) if ok else None,
    }


def est_lab(work: Path) -> Lab:
    """The registrar alone (no MASA is asked on the EST path), pinned to its core."""
    shutil.rmtree(work, ignore_errors=True)
    certs = work / "certs"
    ensure_dev_pki(certs, pledges=1, masa_url="https://localhost:1")
    lab = Lab(workdir=work / "run", certs=certs, masa_port=free_port(), registrar_port=free_port(),
              command_prefix={"registrar": ["taskset", "-c", str(SERVER_CORE)]})
    lab.write_configs()
    from benchlib.stores import create_registrar_store

    create_registrar_store(lab.db_url("registrar"))
    return lab


def est_comparison(work: Path, *, seconds: float, rounds: int = 3, max_rate: float = 400) -> dict[str, Any]:
    """Alternating rounds of ``s_server`` handshakes, the registrar's bare
    handshakes and EST enrolments; medians and every round."""
    per = max(2.0, seconds / rounds)
    lab = est_lab(work)
    # Enough devices that no round runs out (each enrols once); 200 warm up the server.
    clients = write_devices(lab, int(per * max_rate) * rounds + 200, work)
    lab.start("registrar", timeout=120)
    ossl: list[dict[str, float]] = []
    reg_tls: list[dict[str, float]] = []
    est: list[dict[str, Any]] = []
    try:
        est_round(lab, clients[:200], 2.0)  # imports, caches, the store's first pages
        rest = clients[200:]
        for r in range(rounds):
            share = rest[r * (len(rest) // rounds) : (r + 1) * (len(rest) // rounds)]
            ossl.append(openssl_mtls(lab.certs, per, server_core=SERVER_CORE, client_core=CLIENT_CORE))
            reg_tls.append(s_time_cpu(lab.certs, lab.registrar_port, lab.pid("registrar"), per, client_core=CLIENT_CORE))
            est.append(est_round(lab, share, per))
        rss = peak_rss_mb(lab.pid("registrar"))
    finally:
        lab.stop_all()
    est_ms = [r["server_cpu_ms_per_enrollment"] for r in est if r["server_cpu_ms_per_enrollment"]]
    ossl_ms = [r["server_cpu_ms_per_handshake"] for r in ossl]
    reg_ms = [r["server_cpu_ms_per_handshake"] for r in reg_tls]
    est_med, ossl_med = (median(est_ms) if est_ms else None), median(ossl_ms)
    return {
        "est_cpu_ms_per_enrollment": est_med,
        "est_openssl_cpu_ms_per_handshake": ossl_med,
        "est_ratio_vs_openssl": round(est_med / ossl_med, 2) if est_med and ossl_med else None,
        # The per-round ratios: each EST round against the s_server round just before it.
        "est_ratio_rounds": [round(e / o, 2) if o else None for e, o in zip(est_ms, ossl_ms, strict=False)],
        "est_cpu_ms_rounds": est_ms,
        "est_openssl_cpu_ms_rounds": ossl_ms,
        "est_registrar_tls_cpu_ms_per_handshake": median(reg_ms),
        "est_registrar_tls_cpu_ms_rounds": reg_ms,
        "est_enrollments_per_s": median([r["enrollments_per_s"] for r in est]),
        "est_errors": sum(r["errors"] for r in est),
        "est_registrar_peak_rss_mb": rss,
    }


def print_est(r: dict[str, Any]) -> None:
    print(f"EST /simpleenroll (registrar on core {SERVER_CORE}, load on core {CLIENT_CORE}, new mutual-TLS"
          " connection per request, durable):")
    print(f"  registrar CPU/enrolment:   {r['est_cpu_ms_per_enrollment']} ms (rounds {r['est_cpu_ms_rounds']};"
          f" {r['est_enrollments_per_s']}/s, errors {r['est_errors']})")
    print(f"  openssl s_server mTLS:     {r['est_openssl_cpu_ms_per_handshake']} ms CPU/handshake (rounds {r['est_openssl_cpu_ms_rounds']})")
    print(f"  registrar bare handshake:  {r['est_registrar_tls_cpu_ms_per_handshake']} ms (rounds {r['est_registrar_tls_cpu_ms_rounds']})")
    print(f"  EST / openssl:             {r['est_ratio_vs_openssl']}x (per round {r['est_ratio_rounds']})")
