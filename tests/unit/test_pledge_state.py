"""The pledge state machine (brski.pledge) on artifacts built in-test.

A throwaway manufacturer CA issues the IDevID and the MASA voucher signer; a
throwaway domain CA issues the registrar's TLS certificate and the LDevID.  A
fake MASA signs vouchers with brski.artifact.sign_artifact.  Every refusal
must end in FAILED with its own check name and negative telemetry.
"""

from __future__ import annotations

import json
import secrets
from datetime import timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from brski import oids
from brski.artifact import verify_artifact
from brski.errors import MalformedInput
from brski.est import build_certs_only, encode_base64_body
from brski.pki import cert_der
from brski.pledge import (
    Enrolled,
    Failed,
    State,
    VoucherAccepted,
)
from brski.voucher import Assertion, VoucherRequest
from tests.pledge_world import (
    CERTS_ONLY,
    NOW,
    SERIAL,
    World,
    _available,
    _expect_refusal,
    ca_issue,
    issue,
    make_world,
    masa_voucher,
    new_pledge,
    ok_headers,
    state_of,
    telemetry,
    to_status_reported,
    to_voucher_requested,
)


@pytest.fixture(scope="module")
def w() -> World:
    return make_world()


# --- happy path ----------------------------------------------------------------------


@pytest.mark.parametrize("media_type", [m for m in oids.VOUCHER_MEDIA_TYPES if _available(m)])
def test_happy_path(w: World, media_type: str) -> None:
    pledge = new_pledge(w, media_type=media_type)
    assert state_of(pledge) is State.START
    pledge.connected(cert_der(w.registrar.cert))
    nonce = secrets.token_bytes(32)
    raw = pledge.build_voucher_request(now=NOW, nonce=nonce)
    assert state_of(pledge) is State.VOUCHER_REQUESTED

    # What the registrar sees (RFC 8995 5.2).
    vr = verify_artifact(raw, media_type=media_type, kind=VoucherRequest)
    assert isinstance(vr.payload, VoucherRequest)
    assert vr.payload.assertion == Assertion.PROXIMITY
    assert vr.payload.serial_number == SERIAL
    assert vr.payload.nonce == nonce
    assert vr.payload.created_on == NOW
    assert vr.payload.proximity_registrar_cert == cert_der(w.registrar.cert)
    assert vr.signer == w.idevid.cert

    body = masa_voucher(w, nonce, media_type=media_type)
    decision = pledge.voucher_response(
        status=200, headers={"Content-Type": media_type}, body=body, now=NOW
    )
    assert isinstance(decision, VoucherAccepted), decision
    assert state_of(pledge) is State.VOUCHER_ACCEPTED
    assert pledge.pinned_domain_cert == w.domain.cert
    status = telemetry(pledge.voucher_status())
    assert status["status"] is True
    assert state_of(pledge) is State.STATUS_REPORTED

    certs = pledge.cacerts_response(
        status=200, headers=CERTS_ONLY, body=encode_base64_body(build_certs_only([w.domain.cert]))
    )
    assert certs == (w.domain.cert,)

    new_key = ec.generate_private_key(ec.SECP256R1())
    csr_der = pledge.build_csr(key=new_key)
    csr = x509.load_der_x509_csr(csr_der)
    assert csr.is_signature_valid
    assert csr.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)[0].value == SERIAL
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == SERIAL
    assert state_of(pledge) is State.ENROLLING

    ldevid = ca_issue(w, csr_der)
    decision = pledge.enroll_response(
        status=200,
        headers=CERTS_ONLY,
        body=encode_base64_body(build_certs_only([ldevid])),
        now=NOW,
    )
    assert isinstance(decision, Enrolled), decision
    assert decision.cert == ldevid
    assert decision.path[-1] == w.domain.cert
    assert state_of(pledge) is State.ENROLLED
    assert telemetry(pledge.enroll_status())["status"] is True
    assert state_of(pledge) is State.DONE
    assert pledge.failure is None


def test_pinned_registrar_end_entity_is_accepted(w: World) -> None:
    """RFC 8995 5.6.2: the pin may be the registrar's own certificate."""
    pledge, nonce, _ = to_voucher_requested(w)
    body = masa_voucher(w, nonce, pinned_domain_cert=cert_der(w.registrar.cert))
    decision = pledge.voucher_response(status=200, headers=ok_headers(), body=body, now=NOW)
    assert isinstance(decision, VoucherAccepted), decision


# --- refusals --------------------------------------------------------------------------


REFUSALS: dict[str, tuple[str, dict[str, Any]]] = {
    "wrong serial": ("pledge.voucher-serial-number", {"serial_number": "SOMEONE-ELSE"}),
    "wrong nonce": ("pledge.voucher-nonce", {"nonce": b"\x01" * 32}),
    "nonceless": ("pledge.voucher-nonce", {"nonce": None, "expires_on": NOW + timedelta(days=1)}),
    "idevid-issuer mismatch": ("pledge.voucher-idevid-issuer", {"idevid_issuer": b"\x02" * 20}),
    "created in the future": (
        "pledge.voucher-created-on",
        {"created_on": NOW + timedelta(hours=1)},
    ),
    "disallowed assertion": ("pledge.voucher-assertion", {"assertion": Assertion.AGENT_PROXIMITY}),
    "no pinned-domain-cert": ("pledge.voucher-pinned-domain-cert", {"drop_pin": True}),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_voucher_refusals(w: World, case: str) -> None:
    check, fields = REFUSALS[case]
    pledge, nonce, _ = to_voucher_requested(w)
    fields = dict(fields)
    voucher_nonce = fields.pop("nonce", nonce)
    body = masa_voucher(w, voucher_nonce, **fields)
    decision = pledge.voucher_response(status=200, headers=ok_headers(), body=body, now=NOW)
    _expect_refusal(pledge, decision, check)


def test_expired_voucher_is_refused(w: World) -> None:
    """A nonceless voucher (accepted by policy) past its expires-on (RFC 8995 2.6.1)."""
    pledge, _, _ = to_voucher_requested(w, accept_nonceless=True)
    body = masa_voucher(
        w, None, created_on=NOW - timedelta(hours=2), expires_on=NOW - timedelta(hours=1)
    )
    decision = pledge.voucher_response(status=200, headers=ok_headers(), body=body, now=NOW)
    _expect_refusal(pledge, decision, "pledge.voucher-expired")


def test_replayed_voucher_is_refused(w: World) -> None:
    """A voucher for an earlier attempt (its nonce) must not satisfy a new one."""
    first, nonce1, _ = to_voucher_requested(w)
    old = masa_voucher(w, nonce1)
    assert isinstance(
        first.voucher_response(status=200, headers=ok_headers(), body=old, now=NOW),
        VoucherAccepted,
    )
    second, nonce2, _ = to_voucher_requested(w)
    assert nonce2 != nonce1
    decision = second.voucher_response(status=200, headers=ok_headers(), body=old, now=NOW)
    _expect_refusal(second, decision, "pledge.voucher-nonce")


def test_restricted_assertions(w: World) -> None:
    pledge, nonce, _ = to_voucher_requested(w, allowed_assertions=frozenset({"verified"}))
    body = masa_voucher(w, nonce, assertion=Assertion.LOGGED)
    decision = pledge.voucher_response(status=200, headers=ok_headers(), body=body, now=NOW)
    _expect_refusal(pledge, decision, "pledge.voucher-assertion")


def test_nonceless_voucher_accepted_by_policy(w: World) -> None:
    pledge, _, _ = to_voucher_requested(w, accept_nonceless=True)
    body = masa_voucher(w, None, expires_on=NOW + timedelta(minutes=20))
    decision = pledge.voucher_response(status=200, headers=ok_headers(), body=body, now=NOW)
    assert isinstance(decision, VoucherAccepted), decision


def test_registrar_not_chaining_to_pin(w: World) -> None:
    pledge, nonce, _ = to_voucher_requested(w)
    body = masa_voucher(w, nonce, pinned_domain_cert=cert_der(w.evil.cert))
    decision = pledge.voucher_response(status=200, headers=ok_headers(), body=body, now=NOW)
    _expect_refusal(pledge, decision, "pledge.registrar-cert-unpinned")


@pytest.mark.parametrize("eku", [None, [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]])
def test_domain_certificate_without_cmc_ra_is_not_a_registrar(w: World, eku: list[x509.ObjectIdentifier] | None) -> None:
    """RFC 7030 3.6.1 / RFC 8995 5.6.2: chaining to the pin is not enough for a
    discovered registrar; e.g. another device's LDevID also chains to it."""
    device = issue("some device", "PLG-999", issuer=w.domain, eku=eku)
    pledge = new_pledge(w)
    pledge.connected(cert_der(device.cert))
    nonce = secrets.token_bytes(32)
    pledge.build_voucher_request(now=NOW, nonce=nonce)
    body = masa_voucher(w, nonce)
    decision = pledge.voucher_response(status=200, headers=ok_headers(), body=body, now=NOW)
    _expect_refusal(pledge, decision, "pledge.registrar-not-ra")


def test_registrar_pinned_itself_needs_no_cmc_ra(w: World) -> None:
    """5.6.2: the pinned-domain-cert may be the registrar's own certificate."""
    own = issue("registrar.self-pinned", issuer=w.domain, eku=[ExtendedKeyUsageOID.SERVER_AUTH])
    pledge = new_pledge(w)
    pledge.connected(cert_der(own.cert))
    nonce = secrets.token_bytes(32)
    pledge.build_voucher_request(now=NOW, nonce=nonce)
    body = masa_voucher(w, nonce, pinned_domain_cert=cert_der(own.cert))
    decision = pledge.voucher_response(status=200, headers=ok_headers(), body=body, now=NOW)
    assert isinstance(decision, VoucherAccepted), decision


def test_voucher_signer_not_chaining_to_manufacturer(w: World) -> None:
    rogue = issue("Rogue MASA", issuer=w.evil)
    pledge, nonce, _ = to_voucher_requested(w)
    body = masa_voucher(w, nonce, signer=rogue)
    decision = pledge.voucher_response(status=200, headers=ok_headers(), body=body, now=NOW)
    _expect_refusal(pledge, decision, "pledge.voucher-signer-untrusted")


def test_tampered_voucher(w: World) -> None:
    pledge, nonce, _ = to_voucher_requested(w)
    body = bytearray(masa_voucher(w, nonce))
    body[len(body) // 2] ^= 0x01
    decision = pledge.voucher_response(status=200, headers=ok_headers(), body=bytes(body), now=NOW)
    assert isinstance(decision, Failed)
    assert decision.check.startswith("pledge.voucher-")
    assert state_of(pledge) is State.FAILED


def test_wrong_media_type(w: World) -> None:
    pledge, nonce, _ = to_voucher_requested(w)
    decision = pledge.voucher_response(
        status=200, headers={"Content-Type": "text/plain"}, body=masa_voucher(w, nonce), now=NOW
    )
    _expect_refusal(pledge, decision, "pledge.voucher-media-type")


def test_http_error_keeps_problem_detail(w: World) -> None:
    pledge, _, _ = to_voucher_requested(w)
    problem = {"title": "Forbidden", "detail": "unknown device", "check": "policy.unknown"}
    decision = pledge.voucher_response(
        status=403,
        headers={"Content-Type": oids.MT_PROBLEM_JSON},
        body=json.dumps(problem).encode(),
        now=NOW,
    )
    assert isinstance(decision, Failed)
    assert decision.check == "pledge.voucher-http-status"
    assert decision.http_status == 403
    assert "unknown device" in decision.detail and "policy.unknown" in decision.detail
    assert state_of(pledge) is State.FAILED


# --- what a process parses once for all its pledges ------------------------------------


def test_cacerts_answer_is_parsed_once_per_process_and_refusals_are_not_kept(w: World) -> None:
    body = encode_base64_body(build_certs_only([w.domain.cert, w.registrar.cert]))
    first, second = to_status_reported(w), to_status_reported(w)
    got = first.cacerts_response(status=200, headers=CERTS_ONLY, body=body)
    # A second pledge of the process gets the same bytes: the parsed tuple is reused.
    assert second.cacerts_response(status=200, headers=CERTS_ONLY, body=bytes(body)) is got
    assert got == (w.domain.cert, w.registrar.cert)
    for _ in range(2):  # an unusable answer counts as none, on every pledge
        p = to_status_reported(w)
        assert p.cacerts_response(status=200, headers=CERTS_ONLY, body=b"bm90IERFUg==") == ()


def test_registrar_certificate_is_parsed_once_and_garbage_refused_every_time(w: World) -> None:
    der = cert_der(w.registrar.cert)
    a, b = new_pledge(w), new_pledge(w)
    a.connected(der)
    b.connected(bytes(der))
    # One object per DER: its extensions are decoded once for every pledge's checks.
    assert a.registrar_cert is b.registrar_cert and a.registrar_cert == w.registrar.cert
    for _ in range(2):
        with pytest.raises(MalformedInput) as info:
            new_pledge(w).connected(der[:-1])
        assert info.value.check == "pledge.registrar-cert"


def test_an_idevid_key_that_is_not_the_certificates_is_refused(w: World) -> None:
    """The IDevID and its key must pair up (compared as public keys, not as
    serialized SubjectPublicKeyInfo); the same curve is not enough."""
    from brski.errors import ConfigError
    from brski.pledge import Pledge

    with pytest.raises(ConfigError) as info:
        Pledge(idevid=w.idevid.cert, key=ec.generate_private_key(ec.SECP256R1()), chain=[], anchors=[w.mfr.cert])
    assert info.value.check == "pledge.idevid-key"
    assert new_pledge(w).serial == SERIAL  # its own key is accepted


def test_voucher_request_created_on_is_whole_seconds(w: World) -> None:
    """created-on goes out in whole seconds (cut, never later), built that way once."""
    pledge = new_pledge(w)
    pledge.connected(cert_der(w.registrar.cert))
    now = NOW.replace(microsecond=987654)
    raw = pledge.build_voucher_request(now=now, nonce=secrets.token_bytes(32))
    request = verify_artifact(raw, media_type=pledge.media_type, kind=VoucherRequest).payload
    assert request.created_on == now.replace(microsecond=0)
