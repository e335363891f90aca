"""Events that ride with the write they record (``events=``, brski_storage.NewEvent).

The promise: the hash-chained log and the tables agree.  A write that fails
appends none of its events; one that commits appends all of them, in order,
chained like any other event; an event that cannot be stored (not JSON)
fails on the caller's side before anything is written.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from brski.errors import Conflict, NotFound
from brski_storage import NewAuditLog, NewEvent, RegistrarStore, StateChange
from brski_storage.sqlite_registrar import SqliteRegistrarStore

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


def ev(kind: str, serial: str | None = "P-1", **detail: Any) -> NewEvent:
    return NewEvent(at=T0, kind=kind, device_serial=serial, outcome="info", check="test", detail=detail)


@pytest.fixture
async def store(store: RegistrarStore) -> RegistrarStore:
    """The shared store (tests/storage_helpers.py) with its devices."""
    await store.upsert_device("P-1", idevid_issuer="CN=mfr", idevid_fingerprint="aa", manufacturer="m", at=T0)
    return store


async def _state(store: RegistrarStore, serial: str) -> str:
    device = await store.get_device(serial)
    assert device is not None, serial
    return device.state


async def _kinds(store: RegistrarStore) -> list[str]:
    # The services' events; the store's own state evidence is tested in test_evidence.py.
    return [e.kind for e in await store.events() if not e.kind.startswith("state.")]


async def test_events_commit_with_the_write_in_order(store: RegistrarStore) -> None:
    await store.add_voucher_request(
        serial="P-1", nonce=b"n", pledge_request=b"pvr", registrar_request=b"rvr",
        media_type="application/voucher-cms+json", received_at=T0,
        events=(ev("admission.decided"), ev("voucher.requested")),
    )
    await store.add_voucher(
        serial="P-1", voucher=b"v", media_type="application/voucher-cms+json", assertion="proximity",
        nonce=b"n", expires_on=None, received_at=T0,
    )
    await store.set_device_state("P-1", "voucher-obtained", at=T0, reason="r", events=(ev("voucher.obtained"),))
    await store.add_status_report(
        serial="P-1", kind="voucher", status=True, reason=None, body="{}", received_at=T0,
        events=(ev("telemetry.voucher-status"),),
    )
    await store.add_audit_log(serial="P-1", fetched_at=T0, body=b"{}", events=(ev("auditlog.reviewed"),))
    spki = hashlib.sha256(b"k").digest()
    await store.reserve_certificate(cert_serial="0a", device_serial="P-1", spki_sha256=spki, at=T0)
    await store.complete_certificate(
        "0a", der=b"\x30\x00", not_before=T0, not_after=T0 + timedelta(days=1), at=T0,
        events=(ev("credential.issued", cert_serial="0a"),),
    )
    assert await _kinds(store) == [
        "admission.decided", "voucher.requested", "voucher.obtained",
        "telemetry.voucher-status", "auditlog.reviewed", "credential.issued",
    ]
    report = await store.verify_event_chain()
    # 6 service events + state evidence: device, voucher, state, certificate twice
    assert report.ok and report.count == 6 + 5
    assert (await store.verify_state()).ok
    assert len(await store.voucher_requests("P-1")) == 1
    assert await _state(store, "P-1") == "voucher-obtained"


async def test_a_failed_write_appends_none_of_its_events(store: RegistrarStore) -> None:
    with pytest.raises(NotFound):
        await store.add_status_report(
            serial="NO-SUCH", kind="enroll", status=True, reason=None, body="{}", received_at=T0,
            events=(ev("telemetry.enroll-status", "NO-SUCH"),),
        )
    with pytest.raises(Conflict):
        await store.set_device_state(
            "P-1", "enrolled", at=T0, reason="r", expect="voucher-obtained", events=(ev("x.should-not-exist"),)
        )
    with pytest.raises(Conflict):  # 'reserved' is required; the row does not even exist as reserved
        await store.reserve_certificate(cert_serial="0b", device_serial="P-1", spki_sha256=b"\x01" * 32, at=T0)
        await store.complete_certificate(
            "0b", der=b"\x30\x00", not_before=T0, not_after=T0, at=T0, events=(ev("credential.issued"),)
        )
        await store.complete_certificate(  # second completion: Conflict, and its event must not appear
            "0b", der=b"\x30\x00", not_before=T0, not_after=T0, at=T0, events=(ev("credential.twice"),)
        )
    kinds = await _kinds(store)
    assert "telemetry.enroll-status" not in kinds and "x.should-not-exist" not in kinds
    assert "credential.twice" not in kinds and kinds == ["credential.issued"]
    assert await _state(store, "P-1") == "discovered"
    assert (await store.verify_event_chain()).ok


async def test_an_unstorable_event_fails_before_the_write(store: RegistrarStore) -> None:
    with pytest.raises(TypeError):
        await store.add_audit_log(serial="P-1", fetched_at=T0, body=b"{}", events=(ev("bad", x=object()),))
    with pytest.raises(ValueError):
        await store.add_audit_log(
            serial="P-1", fetched_at=T0, body=b"{}",
            events=(NewEvent(at=T0, kind="k", device_serial="P-1", outcome="maybe", check=None, detail={}),),  # type: ignore[arg-type]
        )
    assert await store.audit_logs("P-1") == []
    assert await _kinds(store) == []


async def test_state_changes_commit_with_the_write_they_follow_from(store: RegistrarStore) -> None:
    """``then=``: voucher stored and voucher-obtained, LDevID issued and enrolled,
    are one transaction each; a refused completion changes no state."""
    await store.add_voucher(
        serial="P-1", voucher=b"v", media_type="application/voucher-cms+json", assertion="proximity",
        nonce=b"n", expires_on=None, received_at=T0,
        then=StateChange(state="voucher-obtained", reason="voucher from MASA"),
    )
    assert await _state(store, "P-1") == "voucher-obtained"
    spki = hashlib.sha256(b"k2").digest()
    await store.reserve_certificate(cert_serial="0c", device_serial="P-1", spki_sha256=spki, at=T0)
    enrolled = StateChange(state="enrolled", reason="LDevID issued")
    await store.complete_certificate(
        "0c", der=b"\x30\x00", not_before=T0, not_after=T0 + timedelta(days=1), at=T0, then=enrolled
    )
    with pytest.raises(Conflict):  # already issued: neither the row nor the state moves
        await store.complete_certificate(
            "0c", der=b"\x30\x00", not_before=T0, not_after=T0, at=T0,
            then=StateChange(state="renewed", reason="must not happen"),
        )
    with pytest.raises(NotFound):  # voucher for an unknown device: no row, no transition
        await store.add_voucher(
            serial="NO-SUCH", voucher=b"v", media_type="application/voucher-cms+json", assertion="proximity",
            nonce=None, expires_on=None, received_at=T0, then=StateChange(state="voucher-obtained", reason="r"),
        )
    assert await _state(store, "P-1") == "enrolled"
    assert [(t.from_state, t.to_state, t.reason) for t in await store.device_transitions("P-1")] == [
        (None, "discovered", "first seen"),
        ("discovered", "voucher-obtained", "voucher from MASA"),
        ("voucher-obtained", "enrolled", "LDevID issued"),
    ]
    with pytest.raises(ValueError):
        StateChange(state="", reason="r")


async def test_a_voucher_status_and_its_audit_log_commit_together(store: RegistrarStore) -> None:
    """RFC 8995 5.7-5.8: the pledge's report, the MASA's audit log and the
    verdict on it are one transaction (one COMMIT), events in that order; a
    write that fails stores neither."""
    assert isinstance(store, SqliteRegistrarStore)
    commits = store.database.commits
    await store.add_status_report(
        serial="P-1", kind="voucher", status=True, reason=None, body="{}", received_at=T0,
        events=(ev("telemetry.voucher-status"),),
        audit_log=NewAuditLog(fetched_at=T0, body=b'{"events":[]}', events=(ev("auditlog.reviewed"),)),
    )
    assert store.database.commits - commits == 1
    (log,) = await store.audit_logs("P-1")
    assert (log.body, log.fetched_at) == (b'{"events":[]}', T0)
    assert [r.kind for r in await store.status_reports("P-1")] == ["voucher"]
    assert await _kinds(store) == ["telemetry.voucher-status", "auditlog.reviewed"]
    with pytest.raises(NotFound):
        await store.add_status_report(
            serial="NO-SUCH", kind="voucher", status=True, reason=None, body="{}", received_at=T0,
            events=(ev("telemetry.voucher-status", "NO-SUCH"),),
            audit_log=NewAuditLog(fetched_at=T0, body=b"{}", events=(ev("auditlog.reviewed", "NO-SUCH"),)),
        )
    assert await store.audit_logs("NO-SUCH") == [] and len(await _kinds(store)) == 2
    with pytest.raises(ValueError):
        await store.add_status_report(
            serial="P-1", kind="enroll", status=True, reason=None, body="{}", received_at=T0,
            audit_log=NewAuditLog(fetched_at=T0, body=b"{}"),
        )
    assert (await store.verify_event_chain()).ok
