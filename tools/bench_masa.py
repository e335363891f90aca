"""The MASA's CPU per onboarding without HTTP or TLS, and its crypto checks alone.

Builds a dev PKI with ``--pledges`` pledges, and for each one a pledge
voucher-request (signed with its IDevID) wrapped in a registrar
voucher-request (signed with the registrar's RA key, carrying its TLS
certificate and domain CA, as registrar/voucher_service.py does). Then, each
under ``time.process_time()`` (every thread of the process) and
``time.thread_time()`` (the calling thread, the MASA's event loop):

* ``check``: ``check_registrar_request`` once per pledge (each IDevID seen
  for the first time, the registrar's chain again every time, as in a run);
* ``pledge``: the registrar's side, its IDevID chain check then
  ``check_pledge_request`` (TLS certificates parsed afresh per request);
* ``sign``: ``sign_artifact`` of a voucher with the MASA signer, and the bare
  ECDSA signature beside it;
* ``service``: ``MasaService.request_voucher`` then ``request_audit_log`` per
  pledge over a real SQLite store (durable commits, the writer thread
  included in the process figure).

Usage: ``python tools/bench_masa.py [--pledges 600] [--src TREE] [--json]``.
``--src`` imports brski/masa/brski_storage from another source tree (A/B of
two trees with one script). Nothing is asserted; it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _setup_path(src: str | None) -> None:
    sys.path.insert(0, str(Path(src).resolve() if src else ROOT))


def _requests(pledges: int, now: datetime) -> tuple[Any, list[tuple[str, bytes, Any]]]:
    from brski.artifact import sign_artifact
    from brski.devpki import build_dev_pki
    from brski.oids import MT_VOUCHER_CMS_JSON
    from brski.pki import cert_der
    from brski.validation import aki_key_id
    from brski.voucher import Assertion, VoucherRequest

    pki = build_dev_pki(pledges=pledges, masa_url="https://localhost:8444", now=now - timedelta(days=1))
    ra_key, ra_cert = pki.key("registrar/ra.key"), pki.cert("registrar/ra.crt")
    chain = (pki.cert("registrar/tls.crt"), pki.cert("registrar/domain-ca.crt"))
    proximity = cert_der(pki.cert("registrar/tls.crt"))
    out = []
    for serial in pki.pledge_serials:
        d = pki.pledge_dir(serial)
        idevid = pki.cert(f"{d}/idevid.crt")
        nonce = os.urandom(16)
        pvr = sign_artifact(
            VoucherRequest(created_on=now, assertion=Assertion.PROXIMITY, serial_number=serial,
                           nonce=nonce, proximity_registrar_cert=proximity),
            media_type=MT_VOUCHER_CMS_JSON, key=pki.key(f"{d}/idevid.key"), cert=idevid,
            chain=tuple(pki.certs(f"{d}/chain.pem")),
        )
        rvr = sign_artifact(
            VoucherRequest(created_on=now, assertion=Assertion.PROXIMITY, serial_number=serial, nonce=nonce,
                           idevid_issuer=aki_key_id(idevid), prior_signed_voucher_request=pvr),
            media_type=MT_VOUCHER_CMS_JSON, key=ra_key, cert=ra_cert, chain=chain,
        )
        out.append((serial, rvr, idevid))
    return pki, out


def _per_op(fn: Any, items: list[Any]) -> dict[str, float]:
    p0, t0 = time.process_time(), time.thread_time()
    for item in items:
        fn(item)
    p1, t1 = time.process_time(), time.thread_time()
    n = len(items)
    return {"process_us": round((p1 - p0) / n * 1e6, 1), "thread_us": round((t1 - t0) / n * 1e6, 1)}


def bench_check(pki: Any, reqs: list[tuple[str, bytes, Any]], now: datetime) -> dict[str, float]:
    from brski.oids import MT_VOUCHER_CMS_JSON
    from brski.pki import forget_verified_paths
    from brski.validation import check_registrar_request

    anchors = pki.certs("manufacturer/anchors.pem")
    forget_verified_paths()
    check_registrar_request(reqs[0][1], media_type=MT_VOUCHER_CMS_JSON, manufacturer_anchors=anchors, now=now)
    return _per_op(
        lambda r: check_registrar_request(r[1], media_type=MT_VOUCHER_CMS_JSON, manufacturer_anchors=anchors, now=now),
        reqs[1:],
    )


def bench_pledge_check(pki: Any, pledges: int, now: datetime) -> dict[str, float]:
    """The registrar's side: its IDevID chain check (as admission.manufacturer does
    it) then ``check_pledge_request``, with the TLS certificates parsed afresh as
    the server's transport hands them over."""
    from cryptography import x509

    from brski.artifact import sign_artifact
    from brski.oids import MT_VOUCHER_CMS_JSON
    from brski.pki import Role, cert_der, forget_verified_paths, verify_chain
    from brski.validation import check_pledge_request
    from brski.voucher import Assertion, VoucherRequest

    try:  # the registrar's order since brski.issuer_path; older trees (--src) validate whole
        from brski.issuer_path import verify_chain_via_issuer as idevid_chain
    except ImportError:
        idevid_chain = verify_chain

    anchors = pki.certs("manufacturer/anchors.pem")
    tls = pki.cert("registrar/tls.crt")
    items = []
    for serial in pki.pledge_serials[:pledges]:
        d = pki.pledge_dir(serial)
        idevid, chain = pki.cert(f"{d}/idevid.crt"), tuple(pki.certs(f"{d}/chain.pem"))
        body = sign_artifact(
            VoucherRequest(created_on=now, assertion=Assertion.PROXIMITY, serial_number=serial,
                           nonce=os.urandom(16), proximity_registrar_cert=cert_der(tls)),
            media_type=MT_VOUCHER_CMS_JSON, key=pki.key(f"{d}/idevid.key"), cert=idevid, chain=chain,
        )
        items.append((body, cert_der(idevid), [cert_der(c) for c in chain]))

    def one(item: tuple[bytes, bytes, list[bytes]]) -> None:
        body, leaf_der, chain_der = item
        leaf = x509.load_der_x509_certificate(leaf_der)
        chain = [x509.load_der_x509_certificate(c) for c in chain_der]
        idevid_chain(leaf, intermediates=chain, anchors=anchors, now=now, role=Role.IDEVID)
        check_pledge_request(body, media_type=MT_VOUCHER_CMS_JSON, tls_client_cert=leaf, tls_client_chain=chain,
                             manufacturer_anchors=anchors, own_certs=[tls], now=now)

    forget_verified_paths()
    one(items[0])
    return _per_op(one, items[1:])


def bench_sign(pki: Any, now: datetime, n: int) -> dict[str, Any]:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    from brski.artifact import sign_artifact
    from brski.oids import MT_VOUCHER_CMS_JSON
    from brski.pki import cert_der
    from brski.voucher import Assertion, Voucher

    key, cert = pki.key("masa/voucher-signer.key"), pki.cert("masa/voucher-signer.crt")
    chain = tuple(pki.certs("manufacturer/anchors.pem"))
    pinned = cert_der(pki.cert("registrar/domain-ca.crt"))
    vouchers = [
        Voucher(created_on=now, assertion=Assertion.PROXIMITY, serial_number=f"PLG-{i:06d}",
                nonce=os.urandom(16), pinned_domain_cert=pinned, domain_cert_revocation_checks=False)
        for i in range(n)
    ]
    signed = _per_op(
        lambda v: sign_artifact(v, media_type=MT_VOUCHER_CMS_JSON, key=key, cert=cert, chain=chain), vouchers
    )
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    bare = _per_op(lambda v: key.sign(v.serial_number.encode(), ec.ECDSA(hashes.SHA256())), vouchers)
    return {"sign_artifact": signed, "bare_ecdsa": bare}


async def _service(pki: Any, reqs: list[tuple[str, bytes, Any]], now: datetime, workdir: Path) -> dict[str, float]:
    from brski.oids import MT_VOUCHER_CMS_JSON
    from brski.pki import fingerprint_sha256, forget_verified_paths
    from brski_storage import open_masa_store
    from brski_web.identity import PeerIdentity
    from masa.service import MasaService, VoucherSigner

    store = await open_masa_store(f"sqlite:///{workdir / 'masa.db'}")
    try:
        await store.add_manufactured_devices([(s, fingerprint_sha256(c)) for s, _, c in reqs], at=now)
        service = MasaService(
            store=store,
            signer=VoucherSigner(key=pki.key("masa/voucher-signer.key"), cert=pki.cert("masa/voucher-signer.crt"),
                                 chain=tuple(pki.certs("manufacturer/anchors.pem"))),
            manufacturer_anchors=pki.certs("manufacturer/anchors.pem"),
            ownership="open",
            nonceless_validity=timedelta(days=1),
        )
        ra = pki.cert("registrar/ra.crt")
        peer = PeerIdentity(leaf=ra, chain=(), tls_verified=True)

        async def one(body: bytes) -> None:
            await service.request_voucher(body=body, content_type=MT_VOUCHER_CMS_JSON,
                                          accept=MT_VOUCHER_CMS_JSON, now=now, peer=peer)
            await service.request_audit_log(body=body, content_type=MT_VOUCHER_CMS_JSON, now=now)

        forget_verified_paths()
        await one(reqs[0][1])
        p0, t0 = time.process_time(), time.thread_time()
        for _, body, _ in reqs[1:]:
            await one(body)
        p1, t1 = time.process_time(), time.thread_time()
        n = len(reqs) - 1
        return {"process_us": round((p1 - p0) / n * 1e6, 1), "thread_us": round((t1 - t0) / n * 1e6, 1)}
    finally:
        await store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--pledges", type=int, default=600)
    ap.add_argument("--src", default=None, help="source tree to import from (default: this one)")
    ap.add_argument("--only", choices=("check", "pledge", "sign", "service"), action="append")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    _setup_path(args.src)
    now = datetime.now(UTC).replace(microsecond=0)
    pki, reqs = _requests(args.pledges, now)
    only = set(args.only or ("check", "pledge", "sign", "service"))
    result: dict[str, Any] = {"src": args.src or str(ROOT), "pledges": args.pledges}
    if "check" in only:
        result["check_registrar_request"] = bench_check(pki, reqs, now)
    if "pledge" in only:
        # A fresh PKI: no IDevID of the check pass is remembered anywhere.
        result["check_pledge_request"] = bench_pledge_check(_requests(args.pledges, now)[0], args.pledges, now)
    if "sign" in only:
        result.update(bench_sign(pki, now, args.pledges))
    if "service" in only:
        from brski_storage import open_masa_store  # noqa: F401  (import cost outside the loop)

        with tempfile.TemporaryDirectory() as tmp:
            # A fresh PKI so that no IDevID path is remembered from the check pass.
            pki2, reqs2 = _requests(args.pledges, now)
            result["service_voucher_and_auditlog"] = asyncio.run(_service(pki2, reqs2, now, Path(tmp)))
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
