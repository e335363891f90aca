"""The pledge state machine (brski.pledge): 202 / Retry-After, enrolment
refusals, and the transition table itself (the world: tests/pledge_world.py)."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from brski.errors import ConfigError, LocalError
from brski.est import build_certs_only, encode_base64_body
from brski.pki import cert_der
from brski.pledge import (
    MAX_RETRY_AFTER,
    TRANSITIONS,
    Enrolled,
    Event,
    Failed,
    Pledge,
    Retry,
    State,
    VoucherAccepted,
    retry_after_seconds,
)
from tests.ca_helpers import make_csr
from tests.pledge_world import (
    CERTS_ONLY,
    NOW,
    World,
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


# --- 202 / Retry-After ---------------------------------------------------------------


def test_retry_after_is_clamped_and_request_resent_unchanged(w: World) -> None:
    pledge, nonce, raw = to_voucher_requested(w)
    decision = pledge.voucher_response(
        status=202, headers={"Retry-After": "3600"}, body=b"", now=NOW
    )
    assert decision == Retry(after=MAX_RETRY_AFTER, detail="")
    assert state_of(pledge) is State.PENDING
    # RFC 8995 5.6: the same voucher-request, same nonce, no new signature.
    assert pledge.retry_voucher_request() == raw
    assert state_of(pledge) is State.VOUCHER_REQUESTED
    decision = pledge.voucher_response(
        status=200, headers=ok_headers(), body=masa_voucher(w, nonce), now=NOW
    )
    assert isinstance(decision, VoucherAccepted)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("3600", 60),
        ("0", 1),
        ("7", 7),
        (None, 5),
        ("soon", 5),
        ("Sun, 01 Jun 2025 12:00:30 GMT", 30),
        ("Sun, 01 Jun 2025 13:00:00 GMT", 60),
    ],
)
def test_retry_after_parsing(value: str | None, expected: int) -> None:
    headers = {} if value is None else {"retry-after": value}
    assert retry_after_seconds(headers, NOW) == expected


def test_pending_for_more_than_four_days_fails(w: World) -> None:
    pledge, _, _ = to_voucher_requested(w)
    pledge.voucher_response(status=202, headers={}, body=b"", now=NOW)
    pledge.retry_voucher_request()
    decision = pledge.voucher_response(
        status=202, headers={}, body=b"", now=NOW + timedelta(days=4, seconds=1)
    )
    assert isinstance(decision, Failed)
    assert decision.check == "pledge.voucher-pending-too-long"


# --- enrollment refusals ---------------------------------------------------------------


def _enroll_refusal(pledge: Pledge, decision: Any, check: str) -> None:
    assert isinstance(decision, Failed), decision
    assert decision.check == check
    assert state_of(pledge) is State.FAILED
    report = telemetry(pledge.enroll_status())
    assert report["status"] is False and report["reason-context"]["check"] == check
    with pytest.raises(LocalError) as info:
        pledge.voucher_status()  # the voucher phase succeeded: nothing to report there
    assert info.value.check == "pledge.illegal-transition"


def test_ldevid_for_another_key(w: World) -> None:
    pledge = to_status_reported(w)
    pledge.build_csr(key=ec.generate_private_key(ec.SECP256R1()))
    foreign = ca_issue(w, make_csr().public_bytes(serialization.Encoding.DER))
    decision = pledge.enroll_response(
        status=200,
        headers=CERTS_ONLY,
        body=encode_base64_body(build_certs_only([foreign])),
        now=NOW,
    )
    _enroll_refusal(pledge, decision, "pledge.enroll-key-mismatch")


def test_ldevid_not_chaining_to_pinned_domain(w: World) -> None:
    pledge = to_status_reported(w)
    csr = pledge.build_csr(key=ec.generate_private_key(ec.SECP256R1()))
    rogue = ca_issue(w, csr, ca=w.evil)
    decision = pledge.enroll_response(
        status=200, headers=CERTS_ONLY, body=encode_base64_body(build_certs_only([rogue])), now=NOW
    )
    _enroll_refusal(pledge, decision, "pledge.enroll-chain")


def test_enroll_202_then_same_csr(w: World) -> None:
    pledge = to_status_reported(w)
    csr = pledge.build_csr(key=ec.generate_private_key(ec.SECP256R1()))
    decision = pledge.enroll_response(status=202, headers={"Retry-After": "99"}, body=b"", now=NOW)
    assert decision == Retry(after=60, detail="")
    assert pledge.retry_csr() == csr
    decision = pledge.enroll_response(
        status=200,
        headers=CERTS_ONLY,
        body=encode_base64_body(build_certs_only([ca_issue(w, csr)])),
        now=NOW,
    )
    assert isinstance(decision, Enrolled)


def test_enroll_http_error(w: World) -> None:
    pledge = to_status_reported(w)
    pledge.build_csr(key=ec.generate_private_key(ec.SECP256R1()))
    decision = pledge.enroll_response(
        status=400, headers={"Content-Type": "text/plain"}, body=b"bad csr", now=NOW
    )
    _enroll_refusal(pledge, decision, "pledge.enroll-http-status")


# --- the table ------------------------------------------------------------------------


def test_illegal_transitions_raise(w: World) -> None:
    pledge = new_pledge(w)
    with pytest.raises(LocalError) as info:
        pledge.build_voucher_request(now=NOW, nonce=secrets.token_bytes(32))
    assert info.value.check == "pledge.illegal-transition"
    assert state_of(pledge) is State.START  # an illegal event changes nothing
    pledge.connected(cert_der(w.registrar.cert))
    with pytest.raises(LocalError, match="not allowed"):
        pledge.voucher_response(status=200, headers={}, body=b"", now=NOW)
    with pytest.raises(LocalError):
        pledge.build_csr(key=ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(LocalError):
        pledge.retry_voucher_request()


def test_telemetry_only_once_and_not_after_abort_in_other_phase(w: World) -> None:
    pledge, _, _ = to_voucher_requested(w)
    pledge.abort(check="http.timeout", detail="registrar went away")
    assert state_of(pledge) is State.FAILED
    assert telemetry(pledge.voucher_status())["status"] is False
    with pytest.raises(LocalError):
        pledge.voucher_status()
    with pytest.raises(LocalError):
        pledge.enroll_status()
    with pytest.raises(LocalError):
        pledge.abort(check="x", detail="already failed")


def test_nonce_length_enforced(w: World) -> None:
    pledge = new_pledge(w)
    pledge.connected(cert_der(w.registrar.cert))
    with pytest.raises(LocalError) as info:
        pledge.build_voucher_request(now=NOW, nonce=b"short")
    assert info.value.check == "pledge.nonce-length"


def test_idevid_without_serial_is_a_config_error(w: World) -> None:
    anon = issue("no serial", issuer=w.mfr)
    with pytest.raises(ConfigError):
        Pledge(idevid=anon.cert, key=anon.key, chain=[], anchors=[w.mfr.cert])
    with pytest.raises(ConfigError):  # key of another certificate
        Pledge(idevid=w.idevid.cert, key=anon.key, chain=[], anchors=[w.mfr.cert])


def test_table_shape() -> None:
    terminal = {State.DONE, State.FAILED}
    for state in State:
        has_abort = (state, Event.ABORT) in TRANSITIONS
        assert has_abort == (state not in terminal)
    assert not [k for k in TRANSITIONS if k[0] is State.DONE]
    # Every state can be reached from START.
    reached, frontier = {State.START}, [State.START]
    while frontier:
        current = frontier.pop()
        for (src, _), dst in TRANSITIONS.items():
            if src is current and dst not in reached:
                reached.add(dst)
                frontier.append(dst)
    assert reached == set(State)


@pytest.mark.parametrize("right_key", [True, False])
def test_pinned_domain_pubk(w: World, right_key: bool) -> None:
    """rfc8366bis: a raw-public-key pin of the registrar instead of a certificate."""
    pinned = w.registrar.cert if right_key else w.evil.cert
    spki = pinned.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    pledge, nonce, _ = to_voucher_requested(w)
    body = masa_voucher(w, nonce, pinned_domain_cert=None, pinned_domain_pubk=spki)
    decision = pledge.voucher_response(status=200, headers=ok_headers(), body=body, now=NOW)
    if right_key:
        assert isinstance(decision, VoucherAccepted), decision
        assert pledge.pinned_domain_cert is None
    else:
        _expect_refusal(pledge, decision, "pledge.registrar-cert-unpinned")
