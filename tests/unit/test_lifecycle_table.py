"""The registrar's lifecycle table (brski.lifecycle): every edge, every refusal."""

from __future__ import annotations

import pytest

from brski.errors import Forbidden
from brski.lifecycle import (
    BLOCKED,
    INITIAL_STATE,
    TRANSITIONS,
    DeviceState,
    LifecycleEvent,
    next_state,
)

S, E = DeviceState, LifecycleEvent


def test_the_onboarding_path() -> None:
    state = INITIAL_STATE
    for event, expected in [
        (E.VOUCHER_PARKED, S.AWAITING_APPROVAL),
        (E.VOUCHER_OBTAINED, S.VOUCHER_OBTAINED),
        (E.LDEVID_ISSUED, S.ENROLLED),
        (E.LDEVID_RENEWED, S.RENEWED),
        (E.LDEVID_RENEWED, S.RENEWED),
        (E.REVOKED, S.REVOKED),
        (E.DECOMMISSIONED, S.DECOMMISSIONED),
        (E.REONBOARDED, S.DISCOVERED),
    ]:
        state = next_state(state, event)
        assert state is expected


@pytest.mark.parametrize(
    ("state", "event", "check"),
    [
        (S.DISCOVERED, E.LDEVID_ISSUED, "est.not-authorised"),  # RFC 8995 5.9.3: vouched devices only
        (S.AWAITING_APPROVAL, E.LDEVID_ISSUED, "est.not-authorised"),
        (S.DISCOVERED, E.LDEVID_RENEWED, "est.not-enrolled"),
        (S.REVOKED, E.LDEVID_ISSUED, "est.not-authorised"),
        (S.REVOKED, E.VOUCHER_OBTAINED, "registrar.device-blocked"),
        (S.DECOMMISSIONED, E.VOUCHER_PARKED, "registrar.device-blocked"),
        (S.DECOMMISSIONED, E.DECOMMISSIONED, "revocation.decommissioned"),
        (S.DECOMMISSIONED, E.REVOKED, "revocation.not-revocable"),
        (S.REVOKED, E.REVOKED, "revocation.not-revocable"),
        (S.ENROLLED, E.REONBOARDED, "registrar.not-decommissioned"),
    ],
)
def test_refusals_name_the_rule(state: DeviceState, event: LifecycleEvent, check: str) -> None:
    with pytest.raises(Forbidden) as info:
        next_state(state, event, serial="PLG-1")
    assert info.value.check == check and "PLG-1" in info.value.detail


def test_blocked_states_admit_nothing_but_retirement_and_return() -> None:
    for state in BLOCKED:
        allowed = {event for (src, event) in TRANSITIONS if src is state}
        assert allowed <= {E.DECOMMISSIONED, E.REONBOARDED}


def test_every_state_is_reachable_and_stored_text_round_trips() -> None:
    reached = {INITIAL_STATE}
    for _ in DeviceState:  # the closure is complete after at most one step per state
        reached |= {dst for (src, _event), dst in TRANSITIONS.items() if src in reached}
    assert reached == set(DeviceState)
    assert next_state("enrolled", E.LDEVID_RENEWED) is S.RENEWED
    with pytest.raises(ValueError):
        next_state("bogus", E.REVOKED)
