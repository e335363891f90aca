"""MASA refusals 20-29 plus the rate limit (RFC 8995 5.5-5.8, 11.1).

Registrar voucher-requests are crafted here and POSTed straight to the MASA
over real TLS; each test then checks the refusal contract of
:func:`tests.protocol.helpers.refused` (status, check, no voucher signed, no
audit entry, a refusal event in the MASA store, a good pledge right after).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import ParamSpec, TypeVar

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID

from brski.devpki import DevPki, idevid_masa_url_extension
from brski.errors import StorageError
from brski.oids import MT_VOUCHER_CMS_JSON
from brski.pki import cert_der, spki_sha256
from brski.validation import check_registrar_request
from masa.ratelimit import RateLimiter
from tests.protocol.helpers import AUDIT, VR, refused, rvr
from tests.protocol.net import (
    NO_CERT,
    VR_HEADERS,
    Identity,
    Net,
    Reply,
    domain_issued,
    issue,
    name,
    other_manufacturer,
    pledge_request,
    running_net,
    write_identity,
)

P = ParamSpec("P")
R = TypeVar("R")


def _counted(fn: Callable[P, R], calls: list[int]) -> Callable[P, R]:
    """``fn``, appending to ``calls`` at each call."""

    def counting(*args: P.args, **kwargs: P.kwargs) -> R:
        calls.append(1)
        return fn(*args, **kwargs)

    return counting


@pytest.fixture(scope="module")
def net(
    tmp_path_factory: pytest.TempPathFactory, engine: str, request: pytest.FixtureRequest
) -> Iterator[Net]:
    with running_net(tmp_path_factory.mktemp("masa"), engine, request, pledges=48) as n:
        yield n


@pytest.fixture(scope="module")
def foreign(net: Net) -> DevPki:
    """Another registrar domain (and manufacturer) altogether."""
    return other_manufacturer(net.root / "foreign")


def ra_identity(net: Net) -> Identity:
    return write_identity(net.root, "ra", net.pki.cert("registrar/ra.crt"), net.pki.key("registrar/ra.key"))


def to_masa(net: Net, body: bytes, *, path: str = VR, identity: Identity = NO_CERT) -> Reply:
    return net.request("masa", "POST", path, body=body, headers=VR_HEADERS, identity=identity)


def test_20_registrar_signer_without_cmc_ra(net: Net) -> None:
    no_ra = domain_issued(net, "not-an-ra", eku=(ExtendedKeyUsageOID.CLIENT_AUTH,))
    p = net.pledge(net.fresh_serial())
    body = rvr(net, p, key=no_ra.key, cert=no_ra.cert)
    refused(net, "masa", lambda: to_masa(net, body), status=403, check="chain.eku")


def test_21_signature_invalid_against_its_own_chain(net: Net) -> None:
    p = net.pledge(net.fresh_serial())
    good = rvr(net, p)
    # The last octets of the DER are the signature value's: flip one.
    body = good[:-2] + bytes([good[-2] ^ 0x01]) + good[-1:]
    refused(net, "masa", lambda: to_masa(net, body), status=400, check="cms.signature")


def test_22_proximity_cert_not_in_the_registrar_chain(net: Net, foreign: DevPki) -> None:
    p = net.pledge(net.fresh_serial())
    body = rvr(net, p, pledge_proximity=cert_der(foreign.cert("registrar/tls.crt")))
    refused(net, "masa", lambda: to_masa(net, body), status=403, check="registrar-request.proximity")


def test_23_serial_differs_from_the_prior_request_signer(net: Net) -> None:
    p, other = net.pledge(net.fresh_serial()), net.fresh_serial()
    body = rvr(net, p, serial=other)
    refused(net, "masa", lambda: to_masa(net, body), status=403, check="registrar-request.serial-number-mismatch")


def test_24_registrar_nonce_differs_from_the_pledge_nonce(net: Net) -> None:
    p = net.pledge(net.fresh_serial())
    body = rvr(net, p, nonce=b"r" * 16)
    refused(net, "masa", lambda: to_masa(net, body), status=403, check="registrar-request.nonce-mismatch")


def test_25_a_device_this_masa_did_not_make(net: Net) -> None:
    cert, key = issue(
        name("not made here", serial="PLG-NOTMADE", org="brski dev manufacturer"),
        issuer_cert=net.pki.cert("manufacturer/idevid-ca.crt"),
        issuer_key=net.pki.key("manufacturer/idevid-ca.key"),
        extra=(idevid_masa_url_extension("https://localhost:1"),),
    )
    p = write_identity(net.root, "not-made", cert, key, (net.pki.cert("manufacturer/idevid-ca.crt"),))
    body = rvr(net, p)
    refused(net, "masa", lambda: to_masa(net, body), status=404, check="masa.unknown-device")


def test_26_claim_by_a_domain_that_is_not_the_owner_under_sales_records(net: Net) -> None:
    p = net.pledge(net.fresh_serial())
    body = rvr(net, p)
    net.masa.ownership = "sales-records"
    try:
        refused(net, "masa", lambda: to_masa(net, body), status=403, check="masa.not-owner", then_good_pledge=False)
    finally:
        net.masa.ownership = "open"
    assert net.enroll().ok


def test_26_nonceless_without_an_owner_record(net: Net) -> None:
    p = net.pledge(net.fresh_serial())
    body = rvr(net, p, nonce=None, prior=pledge_request(net, p, nonce=None))
    refused(net, "masa", lambda: to_masa(net, body, identity=ra_identity(net)), status=403,
            check="masa.nonceless-needs-owner-record")


def test_26_nonceless_from_an_unauthenticated_registrar(net: Net) -> None:
    p = net.pledge(net.fresh_serial())
    body = rvr(net, p, nonce=None, prior=pledge_request(net, p, nonce=None))
    refused(net, "masa", lambda: to_masa(net, body), status=403, check="masa.nonceless-needs-authenticated-registrar")


def test_26_nonceless_for_an_owner_authenticated_by_tls_is_signed(net: Net) -> None:
    serial = net.fresh_serial()
    p = net.pledge(serial)
    ca = net.pki.cert("registrar/domain-ca.crt")
    net.call(net.masa.store.add_owner(serial, domain_ca_spki_sha256=spki_sha256(ca), domain_ca_der=cert_der(ca), at=datetime.now(UTC)))
    body = rvr(net, p, nonce=None, prior=pledge_request(net, p, nonce=None))
    before = net.count("masa", "vouchers")
    reply = to_masa(net, body, identity=ra_identity(net))
    assert reply.status == 200, reply.body[:300]
    assert net.count("masa", "vouchers") == before + 1
    assert net.last_event("masa")[:3] == ("voucher.issued", "allow", "masa.open.owner")


def test_27_audit_log_for_a_registrar_that_never_claimed(net: Net, foreign: DevPki) -> None:
    claimed = net.enroll()
    assert claimed.ok
    p = net.pledge(claimed.serial)
    body = rvr(
        net, p,
        pledge_proximity=cert_der(foreign.cert("registrar/tls.crt")),
        key=foreign.key("registrar/ra.key"), cert=foreign.cert("registrar/ra.crt"),
        chain=(foreign.cert("registrar/tls.crt"), foreign.cert("registrar/domain-ca.crt")),
    )
    refused(net, "masa", lambda: to_masa(net, body, path=AUDIT), status=404, check="masa.auditlog.not-claimed")


def test_28_audit_log_write_failure_means_no_voucher(net: Net, monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(**_kw: object) -> object:
        raise StorageError("disk full (injected)", check="storage.write-failed")

    p = net.pledge(net.fresh_serial())
    body = rvr(net, p)
    monkeypatch.setattr(net.masa.store, "issue_voucher_atomically", broken)
    before = net.snapshot()
    reply = to_masa(net, body)
    assert reply.status == 503 and reply.check == "storage.write-failed", reply.problem
    # Through the registrar too: the pledge gets no voucher, only a 502.
    q = net.pledge(net.fresh_serial())
    via = net.request("registrar", "POST", VR, body=pledge_request(net, q), headers=VR_HEADERS, identity=q)
    assert via.status == 502, via.body[:300]
    assert net.snapshot() == before
    assert net.rows("masa", "SELECT count(*) FROM vouchers WHERE serial IN (?, ?)", (net_serial(p), net_serial(q))) == [(0,)]
    monkeypatch.undo()
    assert net.enroll().ok


def net_serial(ident: Identity) -> str:
    from brski.pki import device_serial

    assert ident.cert is not None
    return device_serial(ident.cert) or ""


def test_29_registrar_request_carrying_proximity_registrar_cert(net: Net) -> None:
    p = net.pledge(net.fresh_serial())
    body = rvr(net, p, proximity=cert_der(net.pki.cert("registrar/tls.crt")))
    refused(net, "masa", lambda: to_masa(net, body), status=400, check="registrar-request.proximity-registrar-cert-present")


def test_rate_limit_per_registrar_signing_key(net: Net) -> None:
    """RFC 8995 11.1: a second request inside the bucket's window gets 429 + Retry-After."""
    saved = net.masa.rate_limiter
    net.masa.rate_limiter = RateLimiter(per_minute=1, burst=1)
    try:
        assert to_masa(net, rvr(net, net.pledge(net.fresh_serial()))).status == 200
        body = rvr(net, net.pledge(net.fresh_serial()))
        reply = refused(net, "masa", lambda: to_masa(net, body), status=429, check="masa.rate-limited", then_good_pledge=False)
        assert 1 <= int(reply.headers["retry-after"]) <= 60
    finally:
        net.masa.rate_limiter = saved
    assert net.enroll().ok


_unused = (base64,)


def test_audit_log_request_reuses_the_recent_verification_and_only_that(
    net: Net, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RFC 8995 5.8: the MASA may skip re-verifying the request it just verified.

    Counted at the one function that does the crypto: the audit-log POST of
    the exact bytes costs no verification; one changed byte, or the same
    bytes after the reuse window, are verified again (and the changed byte
    refused).
    """
    import masa.service as masa_service

    calls: list[int] = []
    monkeypatch.setattr(masa_service, "check_registrar_request", _counted(check_registrar_request, calls))
    body = rvr(net, net.pledge(net.fresh_serial()))
    assert to_masa(net, body).status == 200
    assert len(calls) == 1
    log = to_masa(net, body, path=AUDIT)
    assert log.status == 200 and len(calls) == 1
    tampered = bytearray(body)
    tampered[-5] ^= 0x01  # inside the signature
    assert to_masa(net, bytes(tampered), path=AUDIT).status == 400
    assert len(calls) == 2
    later = datetime.now(UTC) + timedelta(minutes=6)
    net.call(net.masa.request_audit_log(body=body, content_type=MT_VOUCHER_CMS_JSON, now=later))
    assert len(calls) == 3
