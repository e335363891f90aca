"""The registrar's CPU on the voucher path, without HTTP, TLS or storage.

Per pledge of a dev PKI (each IDevID new, the manufacturer CA's path
remembered after the first, as in a fleet run), under ``time.process_time()``:

* ``pledge_checks``: the manufacturer check on the TLS chain
  (``verify_chain_via_issuer``, as ``registrar.admission`` does it) then
  ``check_pledge_request``, with the TLS certificates parsed afresh per request;
* ``check_pledge_request``: the second step alone;
* ``sign_rvr``: the registrar voucher-request (``sign_artifact`` with the RA key,
  the TLS certificate and the domain CA carried);
* ``verify_voucher``: the MASA's voucher, ``verify_artifact`` (same signer every time).

Usage: ``python tools/bench_registrar_voucher.py [--pledges 200] [--src TREE]``;
``--src`` imports brski from another source tree (A/B of two trees with one
script: run them alternately). Nothing is asserted; it measures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--pledges", type=int, default=200)
    ap.add_argument("--src", default=None, help="source tree to import from (default: this one)")
    args = ap.parse_args()
    sys.path.insert(0, str(Path(args.src).resolve() if args.src else ROOT))

    from cryptography import x509

    from brski.artifact import sign_artifact, verify_artifact
    from brski.devpki import build_dev_pki
    from brski.issuer_path import verify_chain_via_issuer
    from brski.oids import MT_VOUCHER_CMS_JSON
    from brski.pki import Role, cert_der, forget_verified_paths
    from brski.validation import aki_key_id, check_pledge_request
    from brski.voucher import Assertion, Voucher, VoucherRequest

    now = datetime.now(UTC).replace(microsecond=0)
    pki = build_dev_pki(pledges=args.pledges, masa_url="https://localhost:8444", now=now - timedelta(days=1))
    anchors = pki.certs("manufacturer/anchors.pem")
    tls, ca = pki.cert("registrar/tls.crt"), pki.cert("registrar/domain-ca.crt")
    ra_key, ra_cert = pki.key("registrar/ra.key"), pki.cert("registrar/ra.crt")
    masa_key, masa_cert = pki.key("masa/voucher-signer.key"), pki.cert("masa/voucher-signer.crt")
    items: list[dict[str, Any]] = []
    for serial in pki.pledge_serials:
        d = pki.pledge_dir(serial)
        idevid, chain = pki.cert(f"{d}/idevid.crt"), tuple(pki.certs(f"{d}/chain.pem"))
        nonce = os.urandom(16)
        pvr = sign_artifact(
            VoucherRequest(created_on=now, assertion=Assertion.PROXIMITY, serial_number=serial, nonce=nonce,
                           proximity_registrar_cert=cert_der(tls)),
            media_type=MT_VOUCHER_CMS_JSON, key=pki.key(f"{d}/idevid.key"), cert=idevid, chain=chain,
        )
        voucher = sign_artifact(
            Voucher(created_on=now, assertion=Assertion.PROXIMITY, serial_number=serial, nonce=nonce,
                    pinned_domain_cert=cert_der(ca), domain_cert_revocation_checks=False),
            media_type=MT_VOUCHER_CMS_JSON, key=masa_key, cert=masa_cert, chain=tuple(anchors),
        )
        items.append({"serial": serial, "nonce": nonce, "pvr": pvr, "voucher": voucher, "idevid": idevid,
                      "leaf_der": cert_der(idevid), "chain_der": [cert_der(c) for c in chain]})

    def tls_certs(item: dict[str, Any]) -> tuple[x509.Certificate, list[x509.Certificate]]:
        # As the server's transport hands them over: parsed per connection.
        return (x509.load_der_x509_certificate(item["leaf_der"]),
                [x509.load_der_x509_certificate(c) for c in item["chain_der"]])

    def pledge_checks(item: dict[str, Any]) -> float:
        leaf, chain = tls_certs(item)
        t = time.process_time()
        verify_chain_via_issuer(leaf, intermediates=chain, anchors=anchors, now=now, role=Role.IDEVID)
        check_pledge_request(item["pvr"], media_type=MT_VOUCHER_CMS_JSON, tls_client_cert=leaf,
                             tls_client_chain=chain, manufacturer_anchors=anchors, own_certs=[tls], now=now)
        return time.process_time() - t

    def second_check(item: dict[str, Any]) -> float:
        leaf, chain = tls_certs(item)
        verify_chain_via_issuer(leaf, intermediates=chain, anchors=anchors, now=now, role=Role.IDEVID)
        t = time.process_time()
        check_pledge_request(item["pvr"], media_type=MT_VOUCHER_CMS_JSON, tls_client_cert=leaf,
                             tls_client_chain=chain, manufacturer_anchors=anchors, own_certs=[tls], now=now)
        return time.process_time() - t

    def sign_rvr(item: dict[str, Any]) -> float:
        t = time.process_time()
        sign_artifact(
            VoucherRequest(created_on=now, assertion=Assertion.PROXIMITY, serial_number=item["serial"],
                           nonce=item["nonce"], idevid_issuer=aki_key_id(item["idevid"]),
                           prior_signed_voucher_request=item["pvr"]),
            media_type=MT_VOUCHER_CMS_JSON, key=ra_key, cert=ra_cert, chain=(tls, ca),
        )
        return time.process_time() - t

    def verify_voucher(item: dict[str, Any]) -> float:
        t = time.process_time()
        verify_artifact(item["voucher"], media_type=MT_VOUCHER_CMS_JSON, kind=Voucher)
        return time.process_time() - t

    steps: dict[str, Callable[[dict[str, Any]], float]] = {
        "pledge_checks_us": pledge_checks,
        "check_pledge_request_us": second_check,
        "sign_rvr_us": sign_rvr,
        "verify_voucher_us": verify_voucher,
    }
    result: dict[str, Any] = {"src": args.src or str(ROOT), "pledges": args.pledges}
    for name, step in steps.items():
        forget_verified_paths()  # each step sees every IDevID for the first time
        step(items[0])
        spent = sum(step(item) for item in items[1:])
        result[name] = round(spent / (len(items) - 1) * 1e6, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
