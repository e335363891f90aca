"""The registrar's device lifecycle as data: states, events and the table between them.

Like the pledge's state machine (:mod:`brski.pledge`), the rules are a
transition table, and every edge cites the rule it implements. The registrar's
services ask :func:`next_state` before they change a device and store the
answer with the write it follows from; nothing else decides which state
follows which.

    discovered --voucher-parked--> awaiting-approval --voucher-obtained--> voucher-obtained
    voucher-obtained --ldevid-issued--> enrolled --ldevid-renewed--> renewed
    (any but decommissioned) --revoked--> revoked --decommissioned--> decommissioned
    decommissioned --reonboarded--> discovered          (a factory-reset device, if policy allows)
"""

from __future__ import annotations

import enum
from types import MappingProxyType

from brski.errors import Forbidden

__all__ = ["BLOCKED", "INITIAL_STATE", "TRANSITIONS", "DeviceState", "LifecycleEvent", "next_state"]


class DeviceState(enum.StrEnum):
    """Where a device stands with this registrar (stored as its text)."""

    DISCOVERED = "discovered"
    AWAITING_APPROVAL = "awaiting-approval"
    VOUCHER_OBTAINED = "voucher-obtained"
    ENROLLED = "enrolled"
    RENEWED = "renewed"
    REVOKED = "revoked"
    DECOMMISSIONED = "decommissioned"


class LifecycleEvent(enum.StrEnum):
    """What happened to a device; each may move it to another state."""

    VOUCHER_PARKED = "voucher-parked"
    VOUCHER_OBTAINED = "voucher-obtained"
    LDEVID_ISSUED = "ldevid-issued"
    LDEVID_RENEWED = "ldevid-renewed"
    REVOKED = "revoked"
    DECOMMISSIONED = "decommissioned"
    REONBOARDED = "reonboarded"


INITIAL_STATE = DeviceState.DISCOVERED

# States with no usable credential, refused by EST and by the voucher path
# (revoked: quarantined until an operator decommissions it; decommissioned:
# retired, back only through REONBOARDED).
BLOCKED = frozenset({DeviceState.REVOKED, DeviceState.DECOMMISSIONED})

_S, _E = DeviceState, LifecycleEvent
_ONBOARDING = (_S.DISCOVERED, _S.AWAITING_APPROVAL, _S.VOUCHER_OBTAINED, _S.ENROLLED, _S.RENEWED)
_HOLDS_VOUCHER = (_S.VOUCHER_OBTAINED, _S.ENROLLED, _S.RENEWED)

_table: dict[tuple[DeviceState, LifecycleEvent], DeviceState] = {}
for _state in _ONBOARDING:
    # RFC 8995 5.6: a registrar may defer its decision (202); the device waits in
    # the approval queue. A device that already holds a voucher may ask again
    # (a reboot, a new registrar certificate) and is judged afresh.
    _table[_state, _E.VOUCHER_PARKED] = _S.AWAITING_APPROVAL
    # RFC 8995 5.5-5.6: the MASA's voucher, passed to the pledge.
    _table[_state, _E.VOUCHER_OBTAINED] = _S.VOUCHER_OBTAINED
for _state in _HOLDS_VOUCHER:
    # RFC 8995 5.9.3 / RFC 7030 4.2.1: EST enrolment only for a device this
    # registrar vouched for; a device with an LDevID may enrol again (new key).
    _table[_state, _E.LDEVID_ISSUED] = _S.ENROLLED
for _state in _HOLDS_VOUCHER:
    # RFC 7030 4.2.2: re-enrolment with the current LDevID (renew or rekey); a
    # device that asked for a voucher again still holds its valid LDevID.
    _table[_state, _E.LDEVID_RENEWED] = _S.RENEWED
for _state in (*_ONBOARDING, _S.REVOKED):
    # RFC 5280 5.3.1: an operator revokes the device's LDevIDs; the device is
    # quarantined until decommissioned.
    if _state is not _S.REVOKED:
        _table[_state, _E.REVOKED] = _S.REVOKED
    # Retirement revokes every LDevID (cessationOfOperation).
    _table[_state, _E.DECOMMISSIONED] = _S.DECOMMISSIONED
# A decommissioned device back with its IDevID after a factory reset starts over
# (registrar policy reonboard_decommissioned decides whether it may).
_table[_S.DECOMMISSIONED, _E.REONBOARDED] = _S.DISCOVERED

TRANSITIONS: MappingProxyType[tuple[DeviceState, LifecycleEvent], DeviceState] = MappingProxyType(_table)
del _table, _state

# Why an event is refused in a state, for the refusal's detail and check name.
_REFUSALS: dict[LifecycleEvent, tuple[str, str]] = {
    _E.VOUCHER_PARKED: ("registrar.device-blocked", "it cannot ask for a voucher"),
    _E.VOUCHER_OBTAINED: ("registrar.device-blocked", "it cannot get a voucher"),
    _E.LDEVID_ISSUED: ("est.not-authorised", "it needs a voucher before enrolling"),
    _E.LDEVID_RENEWED: ("est.not-enrolled", "it holds no LDevID to renew"),
    _E.REVOKED: ("revocation.not-revocable", "there is nothing to revoke"),
    _E.DECOMMISSIONED: ("revocation.decommissioned", "it is already decommissioned"),
    _E.REONBOARDED: ("registrar.not-decommissioned", "only a decommissioned device onboards again"),
}


def next_state(state: DeviceState | str, event: LifecycleEvent, *, serial: str | None = None) -> DeviceState:
    """The state ``event`` moves a device in ``state`` to, or a refusal naming the rule."""
    current = DeviceState(state)
    try:
        return TRANSITIONS[current, event]
    except KeyError:
        check, why = _REFUSALS[event]
        who = f"device {serial}" if serial else "the device"
        raise Forbidden(f"{who} is {current}; {why}", check=check, serial=serial) from None
