"""A voucher-request decision commits in one transaction (RegistrarStore.commit_voucher_decision).

The registrar stores its whole answer (state changes, first-use pin, the
approval queue row, the voucher-request, the events) before it asks the
MASA; a failure anywhere leaves none of it behind.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from brski.errors import Conflict
from brski_storage import (
    ManufacturerPin,
    NewDevice,
    NewEvent,
    NewVoucherRequest,
    RegistrarStore,
    StateChange,
)

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
PIN = ManufacturerPin(issuer="CN=tofu", cert_der=b"cert-a", spki_sha256=b"\x00" * 32, policy_name="anyone")
VR = NewVoucherRequest(nonce=b"n", pledge_request=b"pvr", registrar_request=b"rvr", media_type="application/voucher-cms+json")


def ev(kind: str) -> NewEvent:
    return NewEvent(at=T0, kind=kind, device_serial="P-1", outcome="info", check="test", detail={})


@pytest.fixture
async def store(store: RegistrarStore) -> RegistrarStore:
    """The shared store (tests/storage_helpers.py) with its devices."""
    await store.upsert_device("P-1", idevid_issuer="CN=tofu", idevid_fingerprint="aa", manufacturer="m", at=T0)
    return store


async def test_forward_commits_every_part(store: RegistrarStore) -> None:
    await store.set_device_state("P-1", "decommissioned", at=T0, reason="retired")
    await store.commit_voucher_decision(
        "P-1", at=T0, changes=[StateChange(state="discovered", reason="factory reset", expect="decommissioned")],
        pin=PIN, voucher_request=VR, events=(ev("policy.reonboard"), ev("admission.decided")),
    )
    device = await store.get_device("P-1")
    assert device is not None and device.state == "discovered"
    assert [(t.from_state, t.to_state) for t in await store.device_transitions("P-1")][-1] == (
        "decommissioned", "discovered")
    pin = await store.get_pinned_manufacturer("CN=tofu")
    assert pin is not None and (pin.cert_der, pin.first_serial) == (b"cert-a", "P-1")
    (row,) = await store.voucher_requests("P-1")
    assert (row.pledge_request, row.registrar_request, row.nonce) == (b"pvr", b"rvr", b"n")
    assert [e.kind for e in await store.events()][-2:] == ["policy.reonboard", "admission.decided"]
    assert await store.get_approval("P-1") is None


async def test_park_queues_for_approval_with_its_state_change(store: RegistrarStore) -> None:
    await store.decide_approval("P-1", decision="rejected", at=T0, by="op")  # an operator's word stays
    await store.commit_voucher_decision(
        "P-1", at=T0, changes=[StateChange(state="awaiting-approval", reason="parked")], queue_for_approval=True,
        events=(ev("admission.parked"),),
    )
    approval = await store.get_approval("P-1")
    assert approval is not None and approval.decision == "rejected"
    await store.upsert_device("P-2", idevid_issuer="CN=x", idevid_fingerprint="bb", manufacturer="m", at=T0)
    await store.commit_voucher_decision("P-2", at=T0, queue_for_approval=True)
    approval = await store.get_approval("P-2")
    assert approval is not None and approval.decision == "pending"
    assert await store.voucher_requests("P-2") == []


async def test_a_pin_held_for_another_certificate_rolls_everything_back(store: RegistrarStore) -> None:
    await store.pin_manufacturer(
        issuer="CN=tofu", cert_der=b"cert-b", spki_sha256=b"\x01" * 32, policy_name="anyone", first_serial="P-0", at=T0
    )
    before = len(await store.events())
    with pytest.raises(Conflict) as exc:
        await store.commit_voucher_decision(
            "P-1", at=T0, changes=[StateChange(state="awaiting-approval", reason="r")], pin=PIN,
            voucher_request=VR, events=(ev("admission.decided"),),
        )
    assert exc.value.check == "storage.pin-held"
    device = await store.get_device("P-1")
    assert device is not None and device.state == "discovered"
    assert await store.voucher_requests("P-1") == [] and len(await store.events()) == before


async def test_a_state_that_moved_meanwhile_rolls_everything_back(store: RegistrarStore) -> None:
    with pytest.raises(Conflict) as exc:
        await store.commit_voucher_decision(
            "P-1", at=T0, changes=[StateChange(state="discovered", reason="r", expect="decommissioned")],
            pin=PIN, voucher_request=VR,
        )
    assert exc.value.check == "storage.state-changed"
    assert await store.get_pinned_manufacturer("CN=tofu") is None and await store.voucher_requests("P-1") == []


async def test_a_new_device_is_recorded_with_the_decision(store: RegistrarStore) -> None:
    """The device row rides with the decision: a refusal, which commits no
    decision, leaves no device behind (RFC 8995 5.3: the IDevID is pinned by
    the first voucher-request the registrar accepts)."""
    new = NewDevice(idevid_issuer="CN=x", idevid_fingerprint="cc", manufacturer="m")
    before = await store.events()
    await store.commit_voucher_decision("P-3", at=T0, device=new, voucher_request=VR, events=(ev("admission.decided"),))
    device = await store.get_device("P-3")
    assert device is not None and (device.state, device.idevid_fingerprint, device.idevid_issuer) == ("discovered", "cc", "CN=x")
    assert [(t.from_state, t.to_state, t.reason) for t in await store.device_transitions("P-3")] == [
        (None, "discovered", "first seen")]
    assert len(await store.voucher_requests("P-3")) == 1
    added = [(e.kind, e.device_serial) for e in await store.events()][len(before):]
    assert added == [("state.recorded", "P-3"), ("admission.decided", "P-1")]
    # Asking again with the same IDevID finds it; its state evidence holds.
    await store.commit_voucher_decision(
        "P-3", at=T0, device=new, changes=[StateChange(state="awaiting-approval", reason="parked", expect="discovered")],
        queue_for_approval=True)
    device = await store.get_device("P-3")
    assert device is not None and device.state == "awaiting-approval"
    assert (await store.verify_state()).ok


async def test_another_idevid_under_a_known_serial_rolls_everything_back(store: RegistrarStore) -> None:
    before = len(await store.events())
    with pytest.raises(Conflict) as exc:
        await store.commit_voucher_decision(
            "P-1", at=T0, device=NewDevice(idevid_issuer="CN=tofu", idevid_fingerprint="clone", manufacturer="m"),
            pin=PIN, voucher_request=VR, events=(ev("admission.decided"),),
        )
    assert exc.value.check == "storage.idevid-mismatch"  # as upsert_device says it
    device = await store.get_device("P-1")
    assert device is not None and device.idevid_fingerprint == "aa"
    assert await store.get_pinned_manufacturer("CN=tofu") is None and await store.voucher_requests("P-1") == []
    assert len(await store.events()) == before
