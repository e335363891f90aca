"""Shared assertions and request builders for the protocol refusal tests."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from brski.artifact import sign_artifact
from brski.oids import MT_JSON, MT_PKCS10, MT_VOUCHER_CMS_JSON
from brski.pki import PrivateKey, device_serial
from brski.pledge import build_csr_der
from brski.validation import aki_key_id
from brski.voucher import Assertion, VoucherRequest
from tests.protocol.net import VR_HEADERS, Identity, Net, Reply, name, pledge_request

VR = "/.well-known/brski/requestvoucher"
STATUS = "/.well-known/brski/voucher_status"
ENROLLSTATUS = "/.well-known/brski/enrollstatus"
ENROLL = "/.well-known/est/simpleenroll"
REENROLL = "/.well-known/est/simplereenroll"
AUDIT = "/.well-known/brski/requestauditlog"
CSR_HEADERS = {"Content-Type": MT_PKCS10, "Content-Transfer-Encoding": "base64"}
JSON_HEADERS = {"Content-Type": MT_JSON}
STATUS_OK = b'{"version":"1","status":true}'


def max_event_id(net: Net, role: str) -> int:
    return int(net.rows(role, "SELECT coalesce(max(id), 0) FROM events")[0][0])


def refused(
    net: Net,
    role: str,
    send: Callable[[], Reply],
    *,
    status: int,
    check: str,
    same: tuple[str, ...] = ("registrar.certificates", "registrar.vouchers", "masa.vouchers", "masa.audit_log"),
    then_good_pledge: bool = True,
) -> Reply:
    """The refusal contract, in one place.

    ``send`` is refused with ``status`` and a problem body naming ``check``;
    none of the ``same`` counters moved (no certificate issued, no voucher
    signed or stored, no audit entry); one refusal event naming ``check`` was
    stored by ``role``; and a good pledge onboards right after.
    """
    before = net.snapshot()
    first = max_event_id(net, role)
    reply = send()
    assert reply.status == status, (reply.status, reply.body[:300])
    assert reply.check == check, reply.problem
    after = net.snapshot()
    assert {k: after[k] for k in same} == {k: before[k] for k in same}, (before, after)
    events = net.rows(
        role, "SELECT outcome, check_name FROM events WHERE id > ? AND outcome = 'refuse'", (first,)
    )
    assert ("refuse", check) in events, events
    if then_good_pledge:
        good = net.enroll()
        assert good.ok, (good.failed_check, good.detail)
    return reply


def post_vr(net: Net, ident: Identity, body: bytes, headers: dict[str, str] | None = None) -> Reply:
    return net.request("registrar", "POST", VR, body=body, headers=headers or VR_HEADERS, identity=ident)


def vouched(net: Net, ident: Identity) -> None:
    """Get ``ident`` a voucher through the registrar (state voucher-obtained)."""
    r = post_vr(net, ident, pledge_request(net, ident))
    assert r.status == 200, r.body[:300]


def csr_b64(key: PrivateKey, subject: x509.Name) -> bytes:
    return base64.b64encode(build_csr_der(key=key, subject=subject))


def device_csr(serial: str, key: PrivateKey | None = None) -> bytes:
    return csr_b64(key or ec.generate_private_key(ec.SECP256R1()), name(serial, serial=serial))


def enroll(net: Net, ident: Identity, body: bytes, path: str = ENROLL) -> Reply:
    return net.request("registrar", "POST", path, body=body, headers=CSR_HEADERS, identity=ident)


def serial_of(ident: Identity) -> str:
    assert ident.cert is not None
    s = device_serial(ident.cert)
    assert s is not None
    return s


def load_key(path: Any) -> PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, (ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey, rsa.RSAPrivateKey)), type(key)
    return key


def rvr(
    net: Net,
    pledge: Identity,
    *,
    prior: bytes | None = None,
    serial: str | None = None,
    nonce: bytes | Literal["same"] | None = "same",
    key: PrivateKey | None = None,
    cert: x509.Certificate | None = None,
    chain: tuple[x509.Certificate, ...] | None = None,
    proximity: bytes | None = None,
    pledge_proximity: bytes | None = None,
) -> bytes:
    """A registrar voucher-request (RFC 8995 5.5) around a pledge's, one thing changed."""
    assert pledge.cert is not None
    pledge_nonce = b"p" * 16
    prior = prior or pledge_request(net, pledge, nonce=pledge_nonce, proximity=pledge_proximity)
    req = VoucherRequest(
        created_on=datetime.now(UTC),
        assertion=Assertion.PROXIMITY,
        serial_number=serial or device_serial(pledge.cert),
        nonce=pledge_nonce if nonce == "same" else nonce,
        idevid_issuer=aki_key_id(pledge.cert),
        prior_signed_voucher_request=prior,
        proximity_registrar_cert=proximity,
    )
    return sign_artifact(
        req,
        media_type=MT_VOUCHER_CMS_JSON,
        key=key or net.pki.key("registrar/ra.key"),
        cert=cert or net.pki.cert("registrar/ra.crt"),
        chain=chain if chain is not None else (net.pki.cert("registrar/tls.crt"), net.pki.cert("registrar/domain-ca.crt")),
    )
