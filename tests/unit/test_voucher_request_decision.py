"""The registrar's voucher-request decision as a pure function (RFC 8995 5.3-5.6).

One table row per case: the facts the registrar read, and the plan it must
get back (forward to the MASA, park for an operator, or refuse by a named
check), with the lifecycle edges and events the plan commits.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from brski.admission import Forward, Park, Refuse, VoucherRequestFacts, decide_voucher_request
from brski.errors import Forbidden, PolicyRefused
from brski.lifecycle import DeviceState, LifecycleEvent
from brski.voucher import Assertion

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
S = DeviceState

BASE = VoucherRequestFacts(
    serial="PLG-1",
    state=S.DISCOVERED,
    manufacturer="acme",
    manufacturer_subject="CN=Acme Root",
    manufacturer_policy="brski",
    first_use_pin=False,
    approval=None,
    allow_serials=frozenset(),
    deny_serials=frozenset(),
    unlisted="admit",
    reonboard_decommissioned=True,
    retry_after_s=30,
    masa="https://masa.example:9443",
    nonce=b"nonce-0123",
    idevid_issuer=b"\x01\x02",
    pledge_request=b"pledge-cms",
)

# (case, changed facts, plan type, rule / check, lifecycle events committed, state after the voucher)
CASES = [
    ("trusted manufacturer", {}, Forward, "registrar.manufacturer-trusted", [], S.VOUCHER_OBTAINED),
    ("allow list", {"allow_serials": {"PLG-1"}, "unlisted": "refuse"}, Forward, "registrar.serial-allowed", [],
     S.VOUCHER_OBTAINED),
    ("operator approved", {"approval": "approved", "unlisted": "queue", "state": S.AWAITING_APPROVAL}, Forward,
     "registrar.approval-approved", [], S.VOUCHER_OBTAINED),
    ("first use", {"manufacturer_policy": "first-use", "first_use_pin": True}, Forward,
     "registrar.manufacturer-first-use", [], S.VOUCHER_OBTAINED),
    ("asks again once enrolled", {"state": S.ENROLLED}, Forward, "registrar.manufacturer-trusted", [],
     S.VOUCHER_OBTAINED),
    ("decommissioned, factory reset", {"state": S.DECOMMISSIONED}, Forward, "registrar.manufacturer-trusted",
     [LifecycleEvent.REONBOARDED], S.VOUCHER_OBTAINED),
    ("unlisted, queue", {"unlisted": "queue"}, Park, "registrar.approval-pending", [LifecycleEvent.VOUCHER_PARKED],
     None),
    ("still queued", {"unlisted": "queue", "state": S.AWAITING_APPROVAL, "approval": "pending"}, Park,
     "registrar.approval-pending", [], None),
    ("decommissioned, then queued", {"unlisted": "queue", "state": S.DECOMMISSIONED}, Park,
     "registrar.approval-pending", [LifecycleEvent.REONBOARDED, LifecycleEvent.VOUCHER_PARKED], None),
    ("manufacturer denied", {"manufacturer_policy": "deny", "allow_serials": {"PLG-1"}}, Refuse,
     "registrar.manufacturer-denied", [], None),
    ("serial denied", {"deny_serials": {"PLG-1"}}, Refuse, "registrar.serial-denied", [], None),
    ("operator rejected", {"approval": "rejected", "allow_serials": {"PLG-1"}}, Refuse,
     "registrar.approval-rejected", [], None),
    ("unlisted, refuse", {"unlisted": "refuse"}, Refuse, "registrar.serial-not-allowed", [], None),
    ("revoked device", {"state": S.REVOKED, "allow_serials": {"PLG-1"}}, Refuse, "registrar.device-revoked", [],
     None),
    ("decommissioned, policy forbids", {"state": S.DECOMMISSIONED, "reonboard_decommissioned": False}, Refuse,
     "registrar.decommissioned", [], None),
    ("no MASA to ask", {"masa": None}, Refuse, "idevid.masa-url", [], None),
    ("no MASA, but parked first", {"masa": None, "unlisted": "queue"}, Park, "registrar.approval-pending",
     [LifecycleEvent.VOUCHER_PARKED], None),
]


@pytest.mark.parametrize(("case", "changes", "kind", "rule", "edges", "after"), CASES, ids=[c[0] for c in CASES])
def test_voucher_request_decision_table(
    case: str,
    changes: dict[str, object],
    kind: type,
    rule: str,
    edges: list[LifecycleEvent],
    after: DeviceState | None,
) -> None:
    plan = decide_voucher_request(replace(BASE, **changes), now=NOW)  # type: ignore[arg-type]
    assert type(plan) is kind, (case, plan)
    if isinstance(plan, Refuse):
        assert plan.check == rule and plan.error.extra.get("serial") == "PLG-1"
        return
    assert plan.rule == rule
    assert [t.event for t in plan.transitions] == edges
    if isinstance(plan, Forward):
        assert plan.on_voucher == after
        assert [e.kind for e in plan.events][-1] == "admission.decided"
        assert plan.events[-1].check == rule and plan.events[-1].outcome == "allow"


def test_forward_carries_the_registrar_voucher_request_and_the_pin() -> None:
    plan = decide_voucher_request(replace(BASE, manufacturer_policy="first-use", first_use_pin=True), now=NOW)
    assert isinstance(plan, Forward)
    # RFC 8995 5.5: the registrar's request repeats the pledge's nonce and serial and wraps its request.
    rvr = plan.request
    assert rvr.assertion == Assertion.PROXIMITY and rvr.created_on == NOW
    assert (rvr.serial_number, rvr.nonce, rvr.idevid_issuer) == ("PLG-1", b"nonce-0123", b"\x01\x02")
    assert rvr.prior_signed_voucher_request == b"pledge-cms"
    assert plan.masa == BASE.masa and plan.commit_pin
    assert plan.events[-1].detail["first_use_pinned"] is True
    assert plan.events[-1].detail["manufacturer"] == "CN=Acme Root"
    plain = decide_voucher_request(BASE, now=NOW)
    assert isinstance(plain, Forward)
    assert not plain.commit_pin


def test_reonboarding_is_guarded_by_the_state_it_leaves() -> None:
    plan = decide_voucher_request(replace(BASE, state=S.DECOMMISSIONED), now=NOW)
    assert isinstance(plan, Forward)
    (edge,) = plan.transitions
    # A concurrent decommission/re-onboard cannot both move the device (storage.state-changed).
    assert (edge.expect, edge.state) == (S.DECOMMISSIONED, S.DISCOVERED)
    assert [e.kind for e in plan.events] == ["policy.reonboard", "admission.decided"]


def test_park_answers_202_with_the_configured_retry_after_and_records_one_event() -> None:
    plan = decide_voucher_request(replace(BASE, unlisted="queue", retry_after_s=7), now=NOW)
    assert isinstance(plan, Park)
    assert plan.retry_after_s == 7 and "devices approve" in plan.detail
    assert [(e.kind, e.outcome, e.check) for e in plan.events] == [
        ("admission.parked", "info", "registrar.approval-pending")
    ]
    assert plan.transitions[0].state == S.AWAITING_APPROVAL


def test_refusals_are_the_error_classes_their_status_comes_from() -> None:
    # 403 either way, but a policy refusal and a missing MASA URL are different errors.
    denied = decide_voucher_request(replace(BASE, deny_serials={"PLG-1"}), now=NOW)
    no_masa = decide_voucher_request(replace(BASE, masa=""), now=NOW)
    assert isinstance(denied, Refuse) and isinstance(denied.error, PolicyRefused)
    assert isinstance(no_masa, Refuse) and isinstance(no_masa.error, Forbidden)
    assert not isinstance(no_masa.error, PolicyRefused)
