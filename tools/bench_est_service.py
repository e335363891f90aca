"""The registrar's EST service without HTTP or TLS: store reads and CPU per request.

Builds ``registrar.est_service.EstService`` as ``registrar.app`` wires it
(ClientIdentity with the published-CRL check, the RFC 8995 5.8.3 EST gate of
AdmissionControl, the default IssuancePolicy) over a real SQLite store in a
temporary directory, with ``--devices`` vouched devices (each with a clean
MASA audit log, as after an onboarding). Then, per device, the three EST
requests of a device's life, each type as one phase: ``/simpleenroll`` on
the IDevID, ``/enrollstatus`` on the new LDevID, ``/simplereenroll`` (same
key) on the LDevID, ``--concurrency`` requests in flight at a time.

Per request type it prints the store reads (``read_now`` inline, ``read``
through the reader pool) per request, and per request the main thread's CPU
(``time.thread_time``, the event loop's thread: the service, the inline
reads, the hand-offs) and the process's CPU (with the writer thread).

Usage: ``python tools/bench_est_service.py [--devices 300] [--concurrency 1]
[--rounds 1] [--src TREE]``; ``--src`` imports from another source tree (run
two trees alternately for an A/B). Nothing is asserted; it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import median
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--devices", type=int, default=300)
    ap.add_argument("--concurrency", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=1, help="fresh stores, one after the other")
    ap.add_argument("--src", default=None, help="source tree to import from (default: this one)")
    args = ap.parse_args()
    sys.path.insert(0, str(Path(args.src).resolve() if args.src else ROOT))
    results = [asyncio.run(_round(args.devices, args.concurrency)) for _ in range(args.rounds)]
    summary = {
        kind: {
            key: round(median(r[kind][key] for r in results), 2)
            for key in results[0][kind]
        }
        for kind in results[0]
    }
    print(json.dumps({"src": args.src or str(ROOT), "rounds": results, "median": summary}))


async def _round(count: int, concurrency: int) -> dict[str, dict[str, float]]:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding

    from brski import est
    from brski.auditlog import AuditEvent, AuditLog
    from brski.devpki import build_dev_pki
    from brski.pki import fingerprint_sha256
    from brski.pledge_checks import build_csr_der, device_subject
    from brski_storage import open_registrar_store
    from brski_storage.records import NewDevice
    from brski_web.identity import PeerIdentity
    from pledge_sim.fleet import generate_idevids
    from registrar.admission import AdmissionControl, AdmissionPolicy
    from registrar.est_service import EstService
    from registrar.identity import ClientIdentity, RegistrarKeys
    from registrar.revocation import RevocationPublisher

    now = datetime.now(UTC).replace(microsecond=0)
    pki = build_dev_pki(pledges=1, masa_url="https://localhost:1", now=now - timedelta(days=1))
    keys = RegistrarKeys(
        ca_cert=pki.cert("registrar/domain-ca"), ca_key=pki.key("registrar/domain-ca"),
        ra_cert=pki.cert("registrar/ra"), ra_key=pki.key("registrar/ra"), tls_cert=pki.cert("registrar/tls"),
    )
    idevid_ca = pki.cert("manufacturer/idevid-ca")
    manufacturer = pki.cert("manufacturer/root-ca").subject.rfc4514_string()
    pledges = generate_idevids(
        ca_cert=idevid_ca, ca_key=pki.key("manufacturer/idevid-ca"), masa_url="https://localhost:1",
        count=count, now=now - timedelta(hours=1),
    )
    own_domain = "ZG9tYWlu"
    clean_log = AuditLog(events=(AuditEvent(date=now, domain_id=own_domain, nonce="bm9uY2U", assertion="proximity"),))
    with tempfile.TemporaryDirectory() as tmp:
        store = await open_registrar_store(f"sqlite:///{tmp}/registrar.db")
        try:
            for p in pledges:
                serial = p.serial
                await store.commit_voucher_decision(
                    serial, at=now,
                    device=NewDevice(idevid_issuer=idevid_ca.subject.rfc4514_string(),
                                     idevid_fingerprint=fingerprint_sha256(p.cert), manufacturer=manufacturer),
                )
                await store.set_device_state(serial, "voucher-obtained", at=now, reason="bench")
                await store.add_audit_log(serial=serial, fetched_at=now, body=clean_log.to_json())
            admission = AdmissionControl(store=store, policy=AdmissionPolicy(), own_domain_id=own_domain)
            clients = ClientIdentity(store=store, keys=keys)
            publisher: Any = RevocationPublisher(store, keys)
            # As registrar.app wires it (listed_in where the tree has it).
            clients.listed_on_crl = getattr(publisher, "listed_in", None) or publisher.listed_revoked
            any_admission: Any = admission  # a tree before est_facts (--src) has only enroll_gate
            gate: Any = getattr(any_admission, "enroll_gate_on", None) or any_admission.enroll_gate  # as registrar.app wires it
            service = EstService(store=store, keys=keys, clients=clients, enroll_gate=gate,
                                 ldevid_validity=timedelta(days=365))
            db: Any = store._db  # type: ignore[attr-defined]
            counts: Counter[str] = Counter()
            for name in ("read_now", "read"):
                inner = getattr(db, name)

                def spy(fn: Any, _inner: Any = inner, _name: str = name, **kw: Any) -> Any:
                    counts[_name] += 1
                    return _inner(fn, **kw)

                setattr(db, name, spy)

            def idevid_peer(cert: x509.Certificate) -> PeerIdentity:
                der = cert.public_bytes(Encoding.DER)
                return PeerIdentity(leaf=x509.load_der_x509_certificate(der), chain=(idevid_ca,),
                                    tls_verified=True, leaf_der=der)

            keys_by_serial = {p.serial: ec.generate_private_key(ec.SECP256R1()) for p in pledges}
            csrs = {
                p.serial: base64.b64encode(build_csr_der(key=keys_by_serial[p.serial], subject=device_subject(p.serial)))
                for p in pledges
            }
            ldevids: dict[str, PeerIdentity] = {}

            async def enroll(i: int) -> None:
                p = pledges[i]
                body = await service.simpleenroll(body=csrs[p.serial], cte="base64", peer=idevid_peer(p.cert), now=now)
                cert = est.parse_certs_only(est.decode_est_body(body, content_transfer_encoding="base64"))[0]
                ldevids[p.serial] = idevid_peer(cert)

            async def status(i: int) -> None:
                await service.enroll_status(body=b'{"version": 1, "status": true}',
                                            peer=ldevids[pledges[i].serial], now=now)

            async def reenroll(i: int) -> None:
                p = pledges[i]
                await service.simplereenroll(body=csrs[p.serial], cte="base64", peer=ldevids[p.serial], now=now)

            out: dict[str, dict[str, float]] = {}
            for kind, step in (("simpleenroll", enroll), ("enrollstatus", status), ("simplereenroll", reenroll)):
                counts.clear()
                out[kind] = await _phase(step, count, concurrency)
                out[kind]["read_now"] = counts["read_now"] / count
                out[kind]["read"] = counts["read"] / count
            return out
        finally:
            await store.close()


async def _phase(step: Callable[[int], Awaitable[None]], count: int, concurrency: int) -> dict[str, float]:
    """Run ``step(0..count-1)``, ``concurrency`` at a time; CPU per request in us."""
    it = iter(range(count))

    async def worker() -> None:
        for i in it:
            await step(i)

    t0, p0 = time.thread_time(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    t1, p1 = time.thread_time(), time.process_time()
    return {"main_us": round((t1 - t0) * 1e6 / count, 1), "process_us": round((p1 - p0) * 1e6 / count, 1)}


if __name__ == "__main__":
    main()
