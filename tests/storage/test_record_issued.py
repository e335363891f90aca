"""One transaction per LDevID: ``record_issued_certificate`` on both engines.

The registrar signs first and records afterwards; the store must then refuse,
inside the recording transaction, exactly what a reservation before signing
refused (a key certified before, a serial used before, a certificate renewed
twice, renewed after revocation, renewed under another key or device), and
commit the row, its events and the device's state change together, or none
of them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from brski.errors import Conflict, NotFound
from brski_storage import NewEvent, RegistrarStore, StateChange
from tests.storage_helpers import add_device

T0 = datetime(2026, 2, 1, 9, 30, tzinfo=UTC)
DER = b"\x30\x03\x02\x01\x01"


def key(n: int) -> bytes:
    return hashlib.sha256(f"record-key-{n}".encode()).digest()


def issued_event(device: str, cert: str, *, kind: str = "credential.issued") -> NewEvent:
    return NewEvent(at=T0, kind=kind, device_serial=device, outcome="allow", check="registrar.issue",
                    detail={"cert_serial": cert})


ENROLLED = StateChange(state="enrolled", reason="LDevID issued")


@pytest.fixture
async def store(store: RegistrarStore) -> RegistrarStore:
    """The shared store (tests/storage_helpers.py) with two devices."""
    for serial in ("DEV-1", "DEV-2"):
        await add_device(store, serial)
    return store


async def record(store: RegistrarStore, serial: int | str, device: str, spki: bytes, **kw: Any) -> Any:
    return await store.record_issued_certificate(
        cert_serial=serial, device_serial=device, spki_sha256=spki, der=DER,
        not_before=T0, not_after=T0 + timedelta(days=30), at=T0 + timedelta(seconds=1), **kw,
    )


@dataclass(frozen=True)
class Snapshot:
    """Everything a refused recording must leave as it was."""

    certificates: tuple[tuple[str, str], ...]
    events: int
    states: tuple[str | None, ...]
    transitions: int


async def snapshot(store: RegistrarStore) -> Snapshot:
    certs = [c for d in ("DEV-1", "DEV-2") for c in await store.list_certificates(d)]
    devices = [await store.get_device(d) for d in ("DEV-1", "DEV-2")]
    return Snapshot(
        certificates=tuple((c.cert_serial, c.state) for c in certs),
        events=len(await store.events(limit=10_000)),
        states=tuple(d.state if d else None for d in devices),
        transitions=sum([len(await store.device_transitions(d)) for d in ("DEV-1", "DEV-2")]),
    )


async def test_records_the_certificate_its_events_and_the_state_change(store: RegistrarStore) -> None:
    before = len(await store.events(limit=10_000))
    done = await record(store, 0x3001, "DEV-1", key(1), then=ENROLLED, events=(issued_event("DEV-1", "3001"),))
    assert (done.cert_serial, done.device_serial, done.spki_sha256, done.state) == ("3001", "DEV-1", key(1), "issued")
    assert done.der == DER and done.not_before == T0 and done.not_after == T0 + timedelta(days=30)
    # Never reserved: the serial was taken when it was recorded.
    assert done.reserved_at == done.issued_at == T0 + timedelta(seconds=1)
    assert await store.get_certificate(0x3001) == done
    assert await store.latest_certificate_for_key(key(1)) == done
    device = await store.get_device("DEV-1")
    assert device is not None and device.state == "enrolled"
    assert [t.to_state for t in await store.device_transitions("DEV-1")][-1] == "enrolled"
    # The row's evidence, then the caller's event, in the same transaction.
    kinds = [e.kind for e in (await store.events(limit=10_000))[before:]]
    assert kinds == ["state.recorded", "credential.issued"], kinds
    assert (await store.verify_event_chain()).ok
    assert (await store.verify_state()).ok


async def test_a_key_certified_before_is_refused_and_nothing_is_recorded(store: RegistrarStore) -> None:
    await record(store, 0x3101, "DEV-1", key(1), then=ENROLLED)
    before = await snapshot(store)
    for device in ("DEV-1", "DEV-2"):  # the same key again, for its device or another
        with pytest.raises(Conflict) as exc:
            await record(store, 0x3102, device, key(1), then=ENROLLED, events=(issued_event(device, "3102"),))
        assert exc.value.check == "storage.duplicate-key"
    assert await snapshot(store) == before
    # A key only reserved (an orphaned reservation) is taken as well.
    await store.reserve_certificate(cert_serial=0x3103, device_serial="DEV-2", spki_sha256=key(2), at=T0)
    before = await snapshot(store)
    with pytest.raises(Conflict):
        await record(store, 0x3104, "DEV-1", key(2), then=ENROLLED, events=(issued_event("DEV-1", "3104"),))
    assert await snapshot(store) == before
    assert await store.get_certificate(0x3102) is None and await store.get_certificate(0x3104) is None


async def test_a_serial_used_before_is_refused(store: RegistrarStore) -> None:
    await record(store, 0x3201, "DEV-1", key(1))
    await store.reserve_certificate(cert_serial=0x3202, device_serial="DEV-1", spki_sha256=key(2), at=T0)
    before = await snapshot(store)
    for used in (0x3201, "3202", "0x32:02"):  # issued, or only reserved; any spelling
        with pytest.raises(Conflict):
            await record(store, used, "DEV-2", key(3), then=ENROLLED, events=(issued_event("DEV-2", "x"),))
    assert await snapshot(store) == before
    with pytest.raises(NotFound):  # an unknown device, as a reservation says
        await record(store, 0x3203, "DEV-404", key(4))


async def test_a_renewal_is_refused_where_a_renewal_reservation_is(store: RegistrarStore) -> None:
    await record(store, 0x3301, "DEV-1", key(1), then=ENROLLED)
    renewed = StateChange(state="enrolled", reason="LDevID renewed")
    done = await record(store, 0x3302, "DEV-1", key(1), renews=0x3301, then=renewed,
                        events=(issued_event("DEV-1", "3302", kind="credential.renewed"),))
    assert done.state == "issued"
    latest = await store.latest_certificate_for_key(key(1))
    assert latest is not None and latest.cert_serial == "3302"
    before = await snapshot(store)
    refusals = [
        (0x3303, "DEV-1", key(1), 0x3301),  # renewed once already
        (0x3304, "DEV-1", key(2), 0x3302),  # another key
        (0x3305, "DEV-2", key(1), 0x3302),  # another device
    ]
    for cert, device, spki, renews in refusals:
        with pytest.raises(Conflict):
            await record(store, cert, device, spki, renews=renews, then=renewed,
                         events=(issued_event(device, "x", kind="credential.renewed"),))
    with pytest.raises(NotFound):
        await record(store, 0x3306, "DEV-1", key(1), renews=0x9999, then=renewed)
    assert await snapshot(store) == before
    await store.revoke_certificate(0x3302, reason="superseded", at=T0)
    before = await snapshot(store)
    with pytest.raises(Conflict) as exc:  # a revoked certificate is not renewed
        await record(store, 0x3307, "DEV-1", key(1), renews=0x3302, then=renewed)
    assert exc.value.check == "storage.certificate-state"
    assert await snapshot(store) == before


async def test_the_state_change_and_the_certificate_commit_together(store: RegistrarStore) -> None:
    """A state change refused (another request moved the device first) takes
    the certificate row and the events with it: one transaction."""
    before = await snapshot(store)
    raced = StateChange(state="enrolled", reason="LDevID issued", expect="voucher-obtained")  # it is 'discovered'
    with pytest.raises(Conflict) as exc:
        await record(store, 0x3401, "DEV-1", key(1), then=raced, events=(issued_event("DEV-1", "3401"),))
    assert exc.value.check == "storage.state-changed"
    assert await snapshot(store) == before
    assert await store.latest_certificate_for_key(key(1)) is None
    # A bad event is refused before anything reaches the writer.
    bad = NewEvent(at=T0, kind="", device_serial="DEV-1", outcome="allow", check=None, detail={})
    with pytest.raises(ValueError):
        await record(store, 0x3402, "DEV-1", key(1), then=ENROLLED, events=(bad,))
    assert await snapshot(store) == before
