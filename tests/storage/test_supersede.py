"""Supersede and the issuance limit against a real store, in process."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from brski.errors import Conflict, RateLimited
from brski_storage import NewEvent, RegistrarStore
from brski_storage.certificates import Supersede
from registrar.issuance import IssuancePolicy

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
async def store(store: RegistrarStore) -> RegistrarStore:
    """The shared store (tests/storage_helpers.py) with its devices."""
    await store.upsert_device("DEV-1", idevid_issuer="CN=ca", idevid_fingerprint="f", manufacturer="acme", at=T0)
    return store


async def _issue(store: RegistrarStore, serial: int, at: datetime) -> str:
    spki = hashlib.sha256(f"k{serial}".encode()).digest()
    await store.reserve_certificate(cert_serial=serial, device_serial="DEV-1", spki_sha256=spki, at=at)
    await store.complete_certificate(serial, der=b"\x30\x00", not_before=at, not_after=at + timedelta(days=1), at=at)
    return format(serial, "x")


async def test_supersede_revokes_only_what_came_before(store: RegistrarStore) -> None:
    a, b, c = [await _issue(store, n, T0) for n in (0xA, 0xB, 0xC)]
    # b's enrolment finishes after c was issued concurrently: c, the newer, survives.
    revoked = await IssuancePolicy().supersede_previous(store, "DEV-1", keep=b, now=T0)
    assert [r.cert_serial for r in revoked] == [a]
    states = {c.cert_serial: (c.state, c.revocation_reason) for c in await store.list_certificates("DEV-1")}
    assert states == {a: ("revoked", "superseded"), b: ("issued", None), c: ("issued", None)}
    events = [e for e in await store.events() if e.check == "registrar.supersede"]
    assert [e.detail["cert_serial"] for e in events] == [a]
    assert await IssuancePolicy(supersede=False).supersede_previous(store, "DEV-1", keep=c, now=T0) == []


async def test_limit_counts_the_window_and_says_when(store: RegistrarStore) -> None:
    policy = IssuancePolicy(limit=2, window=timedelta(hours=1))

    async def check(policy: IssuancePolicy, *, now: Any) -> None:
        # The device's certificates as an EST request reads them (est_facts).
        facts = await store.est_facts(device_serial="DEV-1", certificates=True)
        policy.check_limit_on(facts.certificates, "DEV-1", now=now)

    await _issue(store, 1, T0)
    await check(policy, now=T0 + timedelta(minutes=1))
    await _issue(store, 2, T0 + timedelta(minutes=10))
    with pytest.raises(RateLimited) as info:
        await check(policy, now=T0 + timedelta(minutes=20))
    assert info.value.check == "est.issuance-limit" and info.value.extra["retry_after"] == 40 * 60
    await check(policy, now=T0 + timedelta(minutes=61))  # the first left the window
    await check(IssuancePolicy(limit=0), now=T0)


async def _record(store: RegistrarStore, serial: int, device: str, *, supersede: bool) -> tuple[Any, Any]:
    kw: dict[str, Any] = {
        "cert_serial": serial, "device_serial": device, "spki_sha256": hashlib.sha256(f"r{serial}".encode()).digest(),
        "der": b"\x30\x00", "not_before": T0, "not_after": T0 + timedelta(days=1), "at": T0,
        "events": (NewEvent(at=T0, kind="credential.issued", device_serial=device, outcome="allow",
                            check="registrar.issue", detail={"cert_serial": format(serial, "x")}),),
    }
    if not supersede:
        return await store.record_issued_certificate(**kw), ()
    return await store.record_issued_superseding(supersede=BY, **kw)


BY = Supersede(by="registrar (superseded by 5)", check="registrar.supersede")


async def test_recording_a_first_enrolment_supersedes_in_the_same_transaction(store: RegistrarStore) -> None:
    await store.upsert_device("DEV-2", idevid_issuer="CN=ca", idevid_fingerprint="g", manufacturer="acme", at=T0)
    a, b = [(await _record(store, n, "DEV-1", supersede=False))[0].cert_serial for n in (1, 2)]
    other = (await _record(store, 3, "DEV-2", supersede=False))[0].cert_serial
    await store.revoke_certificate(b, reason="keyCompromise", at=T0)
    before = len(await store.events(limit=10_000))
    recorded, revoked = await _record(store, 5, "DEV-1", supersede=True)
    assert recorded.state == "issued" and [r.cert_serial for r in revoked] == [a]
    assert all(r.state == "revoked" and r.revocation_reason == "superseded" for r in revoked)
    states = {c.cert_serial: (c.state, c.revocation_reason) for c in await store.list_certificates("DEV-1")}
    assert states == {a: ("revoked", "superseded"), b: ("revoked", "keyCompromise"), "5": ("issued", None)}
    assert (await store.get_certificate(other)).state == "issued"  # type: ignore[union-attr]  # another device's
    # In the one transaction: the state evidence, the issuance's event, then each revocation's.
    added = (await store.events(limit=10_000))[before:]
    assert [e.kind for e in added] == ["state.recorded", "credential.issued", "credential.revoked"]
    assert added[-1].check == "registrar.supersede" and added[-1].device_serial == "DEV-1"
    assert added[-1].detail == {"cert_serial": a, "reason": "superseded", "by": BY.by}
    assert (await store.verify_state()).ok
    # A later enrolment's row is kept (the newer survives): nothing recorded after 5 is revoked by it.
    newer, _ = await _record(store, 6, "DEV-1", supersede=False)
    assert newer.state == "issued"


async def test_a_refused_superseding_record_revokes_nothing(store: RegistrarStore) -> None:
    a = (await _record(store, 1, "DEV-1", supersede=False))[0].cert_serial
    events = len(await store.events(limit=10_000))
    with pytest.raises(Conflict):
        await _record(store, 1, "DEV-1", supersede=True)  # the serial is taken
    assert (await store.get_certificate(a)).state == "issued"  # type: ignore[union-attr]
    assert len(await store.events(limit=10_000)) == events
