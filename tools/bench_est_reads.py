"""The store reads of one EST request: one at a time, or ``est_facts`` once.

A real SQLite registrar store in a temporary directory, ``--devices``
devices, each with two certificates, an approval row and an audit log, and
one published CRL. Per request, the reads ``/simpleenroll`` made one by one
(device, approval, newest audit log, the device's certificates, the newest
row for the CSR's key) against ``est_facts`` with the same facts; and those
``/simplereenroll`` made (the LDevID's row, the newest CRL number, the device,
then the same four) against ``est_facts(cert_serial=...)``. With
``--write-between``, a small durable write (an event) precedes every request,
as under load, where the first read after a write revalidates the read
connection's page cache. Main-thread CPU (``time.thread_time``) of the reads
alone, in alternating blocks; medians per way and of the block pair ratios.

Usage: ``python tools/bench_est_reads.py [--devices 300] [--blocks 8]
[--write-between] [--database sqlite|postgresql]`` (PostgreSQL: a throw-away
server, as ``tools/bench_store.py`` starts it). Nothing is asserted; it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import tempfile
import time
from datetime import UTC, datetime, timedelta
from statistics import median
from typing import Any

from brski_storage import RegistrarStore, open_registrar_store

T0 = datetime(2026, 12, 1, tzinfo=UTC)


def _key(n: int) -> bytes:
    return hashlib.sha256(f"bench-key-{n}".encode()).digest()


async def _fill(store: RegistrarStore, count: int) -> list[tuple[str, str, bytes]]:
    """Devices with their rows; (serial, a certificate serial, its key) each."""
    out = []
    for i in range(count):
        serial = f"BENCH-{i:06d}"
        await store.upsert_device(serial, idevid_issuer="CN=m", idevid_fingerprint=f"{i:064x}", manufacturer="m", at=T0)
        for j in range(2):
            await store.record_issued_certificate(
                cert_serial=0x1000 + 2 * i + j, device_serial=serial, spki_sha256=_key(2 * i + j), der=b"\x30" * 500,
                not_before=T0, not_after=T0 + timedelta(days=30), at=T0,
            )
        await store.decide_approval(serial, decision="approved", at=T0, by="bench")
        await store.add_audit_log(serial=serial, fetched_at=T0, body=b"{}" * 300)
        out.append((serial, format(0x1000 + 2 * i + 1, "x"), _key(2 * i + 1)))
    await store.add_crl(number=1, this_update=T0, next_update=T0 + timedelta(days=1), revoked_count=0, der=b"\x30" * 200)
    return out


async def _separate_enroll(store: RegistrarStore, serial: str, cert: str, spki: bytes) -> Any:
    return (await store.get_device(serial), await store.get_approval(serial), await store.latest_audit_log(serial),
            await store.list_certificates(serial), await store.latest_certificate_for_key(spki))


async def _one_enroll(store: RegistrarStore, serial: str, cert: str, spki: bytes) -> Any:
    return await store.est_facts(device_serial=serial, spki_sha256=spki, gate=True, certificates=True)


async def _separate_renew(store: RegistrarStore, serial: str, cert: str, spki: bytes) -> Any:
    row = await store.get_certificate(cert)
    number = await store.latest_crl_number()
    assert row is not None
    device = row.device_serial
    return (row, number, await store.get_device(device), await store.get_approval(device),
            await store.latest_audit_log(device), await store.list_certificates(device),
            await store.latest_certificate_for_key(spki))


async def _one_renew(store: RegistrarStore, serial: str, cert: str, spki: bytes) -> Any:
    return await store.est_facts(cert_serial=cert, spki_sha256=spki, gate=True, certificates=True, crl_number=True)


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    ways = {"enroll": (_separate_enroll, _one_enroll), "renew": (_separate_renew, _one_renew)}
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        async with await open_registrar_store(args.url or f"sqlite:///{tmp}/registrar.db") as store:
            devices = await _fill(store, args.devices)
            for name, (separate, one) in ways.items():
                times: dict[str, list[float]] = {"separate": [], "one": []}
                for block in range(args.blocks):
                    order = (("separate", separate), ("one", one))
                    for way, fn in order if block % 2 == 0 else order[::-1]:
                        spent = 0.0
                        for serial, cert, spki in devices:
                            if args.write_between:
                                await store.append_event(at=T0, kind="bench", device_serial=None, outcome="info",
                                                         check=None, detail={})
                            t0 = time.thread_time()
                            await fn(store, serial, cert, spki)
                            spent += time.thread_time() - t0
                        times[way].append(spent * 1e6 / len(devices))
                ratios = [o / s for s, o in zip(times["separate"], times["one"], strict=True)]
                results[name] = {
                    "separate_us": round(median(times["separate"]), 1), "one_us": round(median(times["one"]), 1),
                    "ratio_median": round(median(ratios), 3), "ratio_range": [round(min(ratios), 3), round(max(ratios), 3)],
                    "blocks": {k: [round(v, 1) for v in vs] for k, vs in times.items()},
                }
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--devices", type=int, default=300)
    ap.add_argument("--blocks", type=int, default=8)
    ap.add_argument("--write-between", action="store_true")
    ap.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    args = ap.parse_args()
    args.url = None
    if args.database == "sqlite":
        print(json.dumps(asyncio.run(_run(args))))
        return
    from brski_cli.pgcluster import pg_cluster

    with pg_cluster(durable=True) as cluster:  # a throw-away server, local socket
        args.url = cluster.new_schema("registrar")
        print(json.dumps(asyncio.run(_run(args))))


if __name__ == "__main__":
    main()
