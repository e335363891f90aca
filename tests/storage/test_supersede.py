"""Supersede and the issuance limit against a real store, in process."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest

from brski.errors import RateLimited
from brski_storage import RegistrarStore
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
    await _issue(store, 1, T0)
    await policy.check_limit(store, "DEV-1", now=T0 + timedelta(minutes=1))
    await _issue(store, 2, T0 + timedelta(minutes=10))
    with pytest.raises(RateLimited) as info:
        await policy.check_limit(store, "DEV-1", now=T0 + timedelta(minutes=20))
    assert info.value.check == "est.issuance-limit" and info.value.extra["retry_after"] == 40 * 60
    await policy.check_limit(store, "DEV-1", now=T0 + timedelta(minutes=61))  # the first left the window
    await IssuancePolicy(limit=0).check_limit(store, "DEV-1", now=T0)
