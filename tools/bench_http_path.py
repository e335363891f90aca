"""Server CPU per request of the HTTP path alone, for A/B of source trees.

``python tools/bench_http_path.py TREE[@LEVEL] [TREE[@LEVEL] ...] [--pairs 6] [--seconds 3] [--mode keepalive|close]``

Each tree serves one small app the way the roles do (``brski_web.serve.run_server``
over the pyOpenSSL transport, the request middleware with its log line and
metrics, ``peer_identity`` read by the handler, logging at info to a file),
pinned to core 0; the client runs on core 1.  The handler does no work of its
own (it reads the body and answers 1 KiB), so what is measured is what every
request of the MASA and the registrar pays outside its handler: TLS records,
aiohttp framing, middleware, the log line, metrics.  ``--mode close`` opens a
new mutual-TLS connection per request and asks ``Connection: close`` (as the
EST benchmark does), so the handshake and the connection's set-up and
teardown are in it as well.

Rounds alternate over the trees (A, B, then B, A, ...); each tree's server CPU
per request is read from ``/proc/<pid>/stat`` around its round.  ``TREE@warning``
serves with the log threshold at warning (no request line): the line's cost
end to end is the ratio of ``TREE@warning`` to ``TREE``; ``TREE@info-buffered``
writes the same lines 64 KiB at a time (the cost of one write per line).  Prints each
round and the median over pairs of every tree's ratio to the first.
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_SERVER = r'''
import asyncio, os, sys
from pathlib import Path
os.sched_setaffinity(0, {0})
from aiohttp import web
from brski_web.identity import peer_identity
from brski_web.logs import configure_logging
from brski_web.metrics import install as metrics_install
from brski_web.middleware import BODY_READ_TIMEOUT, request_middleware
from brski_web.serve import run_server, server_tls

certs, port, ready, log_path, level = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]), sys.argv[4], sys.argv[5]
sys.stderr = open(log_path, "w", buffering=1)
configure_logging(level.removesuffix("-buffered"), role="bench")
if level.endswith("-buffered"):  # the same lines, written 64 KiB at a time: what the write per line costs
    import logging
    logging.getLogger().handlers[0].setStream(open(log_path + ".buffered", "w", buffering=65536))
BODY = b"x" * 1024

async def enroll(request):
    await request.read()
    peer_identity(request).device_serial
    return web.Response(body=BODY, content_type="application/pkcs7-mime")

app = web.Application(middlewares=[request_middleware])
app[BODY_READ_TIMEOUT] = 10.0
metrics_install(app, role="bench", host="127.0.0.1", port=None, checks={})
app.router.add_post("/.well-known/est/simpleenroll", enroll)
tls = server_tls("pyopenssl", cert=certs / "registrar/tls.crt", key=certs / "registrar/tls.key",
                 client_cas=[certs / "manufacturer/anchors.pem"])
asyncio.run(run_server(app, host="127.0.0.1", port=port, tls=tls, ready_file=ready, role="bench"))
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _client_ctx(certs: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the server's cost is measured, not the client's trust
    pledge = certs / "pledges" / "PLG-000001"
    combined = certs.parent / "client.pem"  # the IDevID, then its chain, as a pledge sends them
    combined.write_bytes((pledge / "idevid.crt").read_bytes() + (pledge / "chain.pem").read_bytes())
    ctx.load_cert_chain(str(combined), str(pledge / "idevid.key"))
    return ctx


def _round(port: int, ctx: ssl.SSLContext, seconds: float, mode: str, threads: int = 4) -> int:
    deadline = time.monotonic() + seconds
    body = b"y" * 600
    counts = [0] * threads

    def keepalive(i: int) -> None:
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx)
        while time.monotonic() < deadline:
            conn.request("POST", "/.well-known/est/simpleenroll", body, {"Content-Type": "application/pkcs10"})
            resp = conn.getresponse()
            resp.read()
            if resp.status == 200:
                counts[i] += 1
        conn.close()

    def close(i: int) -> None:
        while time.monotonic() < deadline:
            conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx)
            conn.request("POST", "/.well-known/est/simpleenroll", body,
                         {"Content-Type": "application/pkcs10", "Connection": "close"})
            resp = conn.getresponse()
            resp.read()
            if resp.status == 200:
                counts[i] += 1
            conn.close()

    work = [threading.Thread(target=keepalive if mode == "keepalive" else close, args=(i,)) for i in range(threads)]
    for t in work:
        t.start()
    for t in work:
        t.join()
    return sum(counts)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("trees", nargs="+")
    ap.add_argument("--pairs", type=int, default=6)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--mode", choices=("keepalive", "close"), default="keepalive")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from brski_cli.lab import ensure_dev_pki

    os.sched_setaffinity(0, {1})
    tmp = Path(tempfile.mkdtemp(prefix="bench-http-"))
    certs = tmp / "certs"
    ensure_dev_pki(certs, pledges=1, masa_url="https://localhost:1")
    ctx = _client_ctx(certs)
    servers = []
    try:
        for i, spec in enumerate(args.trees):
            tree, _, level = spec.partition("@")
            port, ready = _free_port(), tmp / f"ready-{i}.json"
            proc = subprocess.Popen(
                [str(Path(tree).resolve() / ".venv/bin/python"), "-c", _SERVER, str(certs), str(port), str(ready),
                 str(tmp / f"server-{i}.log"), level or "info"],
                cwd=tree,
            )
            servers.append((spec, proc, port))
            for _ in range(300):
                if ready.exists():
                    break
                time.sleep(0.1)
            else:
                raise SystemExit(f"{tree}: server did not start (see {tmp})")
            _round(port, ctx, 1.0, args.mode)  # warm-up
        per: list[list[float]] = [[] for _ in servers]
        for p in range(args.pairs):
            order = list(range(len(servers)))
            if p % 2:
                order.reverse()
            for i in order:
                tree, proc, port = servers[i]
                c0 = _cpu(proc.pid)
                n = _round(port, ctx, args.seconds, args.mode)
                us = (_cpu(proc.pid) - c0) * 1e6 / n
                per[i].append(us)
                print(f"pair {p} {tree}: {n} requests, {us:.0f} us server CPU per request", flush=True)
        for i, (tree, _, _) in enumerate(servers):
            line = f"{tree}: median {statistics.median(per[i]):.0f} us per request"
            if i:
                ratios = [b / a for a, b in zip(per[0], per[i], strict=True)]
                line += f"; pair ratios to the first {' '.join(f'{r:.3f}' for r in ratios)}"
                line += f", median {statistics.median(ratios):.3f}"
            print(line)
    finally:
        for _, proc, _ in servers:
            proc.terminate()
            proc.wait(timeout=20)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
