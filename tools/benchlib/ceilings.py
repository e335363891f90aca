"""The ceilings our servers are measured against, in the same run: the CPU
``openssl s_server`` spends per mutual-TLS handshake (driven by ``openssl
s_time -new``), ``openssl speed`` for P-256, and a bare aiohttp exchange on
our TLS transport (the framework's floor)."""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchlib.procs import cpu_seconds
from brski_cli.lab import Lab, free_port


def _client_pem(certs: Path) -> tuple[Path, Path]:
    """An IDevID (with its chain) as s_time's client certificate, and its key."""
    pledge = next(p for p in sorted((certs / "pledges").iterdir()) if p.is_dir())
    client = certs.parent / "bench-client.pem"
    client.write_bytes((pledge / "idevid.crt").read_bytes() + (pledge / "chain.pem").read_bytes())
    return client, pledge / "idevid.key"


def pinned(core: int | None) -> list[str]:
    """Argv prefix that runs a command on one core (``taskset``), or nothing."""
    return [] if core is None else ["taskset", "-c", str(core)]


def s_time_cpu(
    certs: Path, port: int, server_pid: int, seconds: float, *, client_core: int | None = None
) -> dict[str, float]:
    """Drive full mutual-TLS handshakes (``openssl s_time -new``: connect,
    handshake, hang up) at a server and charge its CPU to them."""
    client, key = _client_pem(certs)
    c0 = cpu_seconds(server_pid)
    out = subprocess.run(
        [
            *pinned(client_core), "openssl", "s_time", "-connect", f"127.0.0.1:{port}", "-new",
            "-time", str(max(1, int(seconds))), "-cert", str(client), "-key", str(key),
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    ).stdout
    c1 = cpu_seconds(server_pid)
    m = re.search(r"(\d+) connections in ([\d.]+) real seconds", out)
    n = int(m.group(1)) if m else 0
    return {
        "handshakes": n,
        "handshakes_per_s": round(n / float(m.group(2)), 1) if m else 0.0,
        "server_cpu_ms_per_handshake": round((c1 - c0) * 1000 / n, 4) if n else 0.0,
    }


def openssl_mtls(
    certs: Path, seconds: float, *, server_core: int | None = None, client_core: int | None = None
) -> dict[str, float]:
    """CPU that ``openssl s_server`` spends per full mutual-TLS handshake
    (optionally the server on one core and ``s_time`` on another)."""
    port = free_port()
    chain = certs.parent / "bench-server-verify.pem"
    chain.write_bytes((certs / "manufacturer/root-ca.crt").read_bytes() + (certs / "manufacturer/idevid-ca.crt").read_bytes())
    server = subprocess.Popen(
        [
            *pinned(server_core), "openssl", "s_server", "-quiet", "-accept", f"127.0.0.1:{port}",
            "-cert", str(certs / "registrar/tls.crt"), "-key", str(certs / "registrar/tls.key"),
            "-Verify", "3", "-verify_return_error", "-CAfile", str(chain),
            "-no_ticket", "-num_tickets", "0", "-naccept", "1000000",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.5)
        return s_time_cpu(certs, port, server.pid, seconds, client_core=client_core)
    finally:
        server.terminate()
        server.wait(timeout=10)


def handshake_rounds(lab: Lab, seconds: float, rounds: int = 3) -> tuple[dict[str, Any], dict[str, Any]]:
    """The openssl ceiling and the registrar's own handshake cost, measured in
    alternating rounds (the servers idle in between) and reported as medians
    with every round kept: this VM's speed drifts by tens of percent within
    minutes, and a ratio of two figures taken minutes apart drifted with it."""
    ossl: list[dict[str, float]] = []
    reg: list[dict[str, float]] = []
    per = max(1.0, seconds / rounds)
    for _ in range(rounds):
        ossl.append(openssl_mtls(lab.certs, per))
        # The same s_time handshakes, against the registrar's port: its TLS
        # cost apart from BRSKI.
        reg.append(s_time_cpu(lab.certs, lab.registrar_port, lab.pid("registrar"), per))

    return median_rounds(ossl), median_rounds(reg)


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def median_rounds(runs: list[dict[str, float]]) -> dict[str, Any]:
    """The median handshake cost and rate of ``s_time`` rounds, every round kept."""
    return {
        "server_cpu_ms_per_handshake": median([r["server_cpu_ms_per_handshake"] for r in runs]),
        "handshakes_per_s": median([r["handshakes_per_s"] for r in runs]),
        "rounds_ms": [r["server_cpu_ms_per_handshake"] for r in runs],
    }


def openssl_versions() -> dict[str, str]:
    """The system OpenSSL (s_server, s_time) and the one our servers link
    (cryptography's bundled build): the ceiling and the registrar do not run
    the same library, and their handshake costs differ with it."""
    from OpenSSL import SSL

    system = subprocess.run(["openssl", "version"], capture_output=True, text=True).stdout.strip()
    bundled = SSL.OpenSSL_version(SSL.OPENSSL_VERSION).decode()
    return {"system": system, "servers": bundled}


def openssl_p256(seconds: int) -> dict[str, float]:
    out = subprocess.run(
        ["openssl", "speed", "-seconds", str(seconds), "ecdsap256"], capture_output=True, text=True, timeout=120
    ).stdout
    # The per-op columns print 0.0000s on fast machines: use the rates.
    m = re.search(r"256 bits ecdsa \(nistp256\)\s+\S+\s+\S+\s+([\d.]+)\s+([\d.]+)", out)
    if not m:
        return {}
    return {"sign_us": round(1e6 / float(m.group(1)), 2), "verify_us": round(1e6 / float(m.group(2)), 2)}


def _bare_server(certs: Path, ready: Any) -> None:
    """An aiohttp app on the registrar's TLS transport whose one handler reads the
    body and answers 600 bytes: the framework's floor, no BRSKI in it."""
    from aiohttp import web

    from brski_web.tls import TlsServerConfig, bound_port, start_tls_server

    async def handler(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=b"x" * 600, content_type="application/pkcs7-mime")

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/bare", handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        assert runner.server is not None
        cfg = TlsServerConfig(
            cert_chain_pem=(certs / "registrar/tls.crt").read_bytes(),
            key_pem=(certs / "registrar/tls.key").read_bytes(),
            client_auth="optional",
            accept_untrusted_clients=True,
        )
        server = await start_tls_server(runner.server, host="127.0.0.1", port=0, cfg=cfg)
        ready.put(bound_port(server))
        await asyncio.sleep(3600)

    asyncio.run(main())


def bare_http_cpu(certs: Path, requests: int = 3000) -> float:
    """Server CPU (ms) per bare HTTP/1.1 exchange (500-byte POST, 600-byte answer)
    on one keep-alive mutual-TLS connection, through aiohttp and brski_web.tls."""
    import multiprocessing as mp
    import socket
    import ssl

    ready: Any = mp.get_context("fork").Queue()
    proc = mp.get_context("fork").Process(target=_bare_server, args=(certs, ready), daemon=True)
    proc.start()
    assert proc.pid is not None  # started
    pid: int = proc.pid
    try:
        port = ready.get(timeout=30)
        client, key = _client_pem(certs)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # the figure is the server's cost, not a trust check
        ctx.load_cert_chain(str(client), str(key))
        body = b"y" * 500
        req = b"POST /bare HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n" + body
        with ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=30)) as conn:

            def exchange() -> None:
                conn.sendall(req)
                buf = b""
                while b"\r\n\r\n" not in buf:
                    buf += conn.recv(65536)
                head, _, rest = buf.partition(b"\r\n\r\n")
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))
                while len(rest) < length:
                    rest += conn.recv(65536)

            for _ in range(200):  # warm up
                exchange()
            c0 = cpu_seconds(pid)
            for _ in range(requests):
                exchange()
            c1 = cpu_seconds(pid)
        return round((c1 - c0) * 1000 / requests, 4)
    finally:
        proc.kill()
        proc.join(timeout=10)
