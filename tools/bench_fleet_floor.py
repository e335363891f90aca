"""The pledge simulator's floor: what one mutual-TLS client handshake costs the client.

``python tools/bench_fleet_floor.py [--rounds 3] [--seconds 3]``

``openssl s_server`` runs pinned to one core (as in ``make bench``'s ceiling) with
the dev PKI's registrar certificate, asking for a client certificate. Against it,
on the other core, in alternating rounds:

* ``openssl s_time -new`` with a pledge's IDevID: full handshakes, hang up; the
  client's CPU (its rusage) and the server's (``/proc``) per handshake;
* this tree's pledge TLS client (:func:`brski_tls.client.open_tls_connection`,
  the IDevID, a new connection each time, closed at once): its own CPU per
  handshake (``time.process_time``) and the server's.

A fleet onboarding makes two such handshakes (IDevID, then the LDevID for
enrollstatus, RFC 8995 5.9.4), so twice the client figure over the server's is
the part of the fleet's ratio that no code above the handshake can remove.
Nothing here asserts anything; it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

from benchlib.ceilings import _client_pem, median, pinned  # noqa: E402
from benchlib.procs import cpu_seconds  # noqa: E402

from brski.pki import load_cert, load_certs, load_private_key  # noqa: E402
from brski_cli.lab import ensure_dev_pki, free_port  # noqa: E402
from brski_tls.client import ClientCredentials, open_tls_connection  # noqa: E402

SERVER_CORE, CLIENT_CORE = 0, 1


def s_server(certs: Path, port: int) -> subprocess.Popen[bytes]:
    chain = certs.parent / "floor-server-verify.pem"
    chain.write_bytes((certs / "manufacturer/root-ca.crt").read_bytes() + (certs / "manufacturer/idevid-ca.crt").read_bytes())
    return subprocess.Popen(
        [
            *pinned(SERVER_CORE), "openssl", "s_server", "-quiet", "-accept", f"127.0.0.1:{port}",
            "-cert", str(certs / "registrar/tls.crt"), "-key", str(certs / "registrar/tls.key"),
            "-Verify", "3", "-verify_return_error", "-CAfile", str(chain),
            "-no_ticket", "-num_tickets", "0", "-naccept", "100000000",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def s_time_round(certs: Path, port: int, server_pid: int, seconds: float) -> dict[str, float]:
    client, key = _client_pem(certs)
    r0, c0 = resource.getrusage(resource.RUSAGE_CHILDREN), cpu_seconds(server_pid)
    out = subprocess.run(
        [*pinned(CLIENT_CORE), "openssl", "s_time", "-connect", f"127.0.0.1:{port}", "-new",
         "-time", str(max(1, int(seconds))), "-cert", str(client), "-key", str(key)],
        capture_output=True, text=True, timeout=seconds + 60,
    ).stdout
    r1, c1 = resource.getrusage(resource.RUSAGE_CHILDREN), cpu_seconds(server_pid)
    m = re.search(r"(\d+) connections in ([\d.]+) real seconds", out)
    n = int(m.group(1)) if m else 0
    client_cpu = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
    return {"handshakes": n, "client_ms": client_cpu * 1000 / max(n, 1), "server_ms": (c1 - c0) * 1000 / max(n, 1)}


def pledge_round(certs: Path, port: int, server_pid: int, seconds: float) -> dict[str, float]:
    pledge = next(p for p in sorted((certs / "pledges").iterdir()) if p.is_dir())
    cred = ClientCredentials(
        certs=(load_cert((pledge / "idevid.crt").read_bytes()), *load_certs((pledge / "chain.pem").read_bytes())),
        key=load_private_key((pledge / "idevid.key").read_bytes()),
    )

    async def run() -> tuple[int, float, float]:
        n = 0
        c0, t0 = cpu_seconds(server_pid), time.process_time()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            _r, writer, _p = await open_tls_connection("127.0.0.1", port, credentials=cred)
            writer.close()
            await writer.wait_closed()
            n += 1
        return n, time.process_time() - t0, cpu_seconds(server_pid) - c0

    os.sched_setaffinity(0, {CLIENT_CORE})
    n, mine, server = asyncio.run(run())
    return {"handshakes": n, "client_ms": mine * 1000 / max(n, 1), "server_ms": server * 1000 / max(n, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--workdir", type=Path, default=Path("var/bench-fleet-floor"))
    args = ap.parse_args()
    certs = args.workdir.resolve() / "certs"
    ensure_dev_pki(certs, pledges=1, masa_url="https://localhost:1")
    port = free_port()
    server = s_server(certs, port)
    res: dict[str, list[dict[str, float]]] = {"s_time": [], "pledge": []}
    try:
        time.sleep(0.5)
        for i in range(args.rounds):
            for name in (("s_time", "pledge") if i % 2 == 0 else ("pledge", "s_time")):
                fn = s_time_round if name == "s_time" else pledge_round
                res[name].append(fn(certs, port, server.pid, args.seconds))
    finally:
        server.terminate()
        server.wait(timeout=10)
    out: dict[str, Any] = {"rounds": res}
    for name, rows in res.items():
        out[name] = {k: round(median([r[k] for r in rows]), 3) for k in ("client_ms", "server_ms")}
    server_ms = out["s_time"]["server_ms"]
    out["two_handshakes_over_s_server"] = {
        name: round(2 * out[name]["client_ms"] / server_ms, 2) for name in ("s_time", "pledge")
    }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
