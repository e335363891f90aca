"""State evidence: the event log vouches for the tables (brski_storage.evidence).

Every test edits the store behind its back (the SQLite file, or the
PostgreSQL schema, in that dialect's SQL), the way an attacker or a careless
restore would, and expects ``verify_state`` to name
the row -- both for rows changed since the last checkpoint (the in-memory
replay) and for rows folded into a checkpoint (the SQL comparison).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import pytest

from brski_storage import (
    MasaStore,
    RegistrarStore,
    StateReport,
    open_masa_store,
    open_registrar_store,
)
from tests.store_helpers import raw_execute, sql_blob

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def _spki(n: int) -> bytes:
    return hashlib.sha256(f"k{n}".encode()).digest()


def _edit(url: str, *statements: str) -> None:
    raw_execute(url, list(statements))


def _named(report: StateReport) -> set[tuple[str, str, str]]:
    return {(d.problem, d.table, d.key) for d in report.disagreements}


async def _onboard(store: RegistrarStore, serial: str, cert: str, n: int) -> None:
    await store.upsert_device(serial, idevid_issuer="CN=mfr", idevid_fingerprint=f"{n:02x}", manufacturer="m", at=T0)
    await store.request_approval(serial, at=T0)
    await store.decide_approval(serial, decision="approved", at=T0, by="op")
    await store.add_voucher(serial=serial, voucher=b"v" * 10, media_type="application/voucher-cms+json",
                            assertion="proximity", nonce=b"n", expires_on=None, received_at=T0)
    await store.reserve_certificate(cert_serial=cert, device_serial=serial, spki_sha256=_spki(n), at=T0)
    await store.complete_certificate(cert, der=b"\x30\x00", not_before=T0, not_after=T0 + timedelta(days=1), at=T0)
    await store.set_device_state(serial, "enrolled", at=T0, reason="enrolled")


@pytest.fixture
async def registrar(new_store_url: Callable[[str], str]) -> AsyncIterator[tuple[RegistrarStore, str]]:
    db = new_store_url("registrar")
    store = await open_registrar_store(db)
    await _onboard(store, "P-1", "0a", 1)
    await _onboard(store, "P-2", "0b", 2)
    await store.revoke_certificate("0a", reason="keyCompromise", at=T0)
    try:
        yield store, db
    finally:
        await store.close()


async def _checkpoint(store: RegistrarStore) -> None:
    report = await store.verify_state()
    assert report.ok, report.lines()
    assert await store.checkpoint_state(at=T0, expect_checkpoint=report.checkpoint_id) is not None


TAMPERING = {
    "revoked certificate back to issued": (
        "UPDATE certificates SET state = 'issued', revoked_at = NULL, revocation_reason = NULL"
        " WHERE cert_serial = 'a'", ("changed", "certificates", "a")),
    "device state changed": (
        "UPDATE devices SET state = 'enrolled' WHERE serial = 'P-2' AND 0", None),  # replaced below
    "approval flipped": (
        "UPDATE device_approvals SET decision = 'rejected' WHERE serial = 'P-2'",
        ("changed", "device_approvals", "P-2")),
    "voucher row deleted": ("DELETE FROM vouchers WHERE serial = 'P-1'", ("missing", "vouchers", "1")),
    "device row inserted": (
        "INSERT INTO devices VALUES ('P-9', 'CN=mfr', 'ff', 'm', 'enrolled', '2026-03-01T12:00:00.000000+00:00',"
        " '2026-03-01T12:00:00.000000+00:00')", ("unexpected", "devices", "P-9")),
}
TAMPERING["device state changed"] = (
    "UPDATE devices SET state = 'decommissioned' WHERE serial = 'P-2'", ("changed", "devices", "P-2"))


@pytest.mark.parametrize("folded", [False, True], ids=["since-checkpoint", "in-checkpoint"])
@pytest.mark.parametrize("case", list(TAMPERING))
async def test_registrar_edit_is_named(registrar: tuple[RegistrarStore, str], case: str, folded: bool) -> None:
    store, db = registrar
    if folded:
        await _checkpoint(store)
    clean = await store.verify_state()
    assert clean.ok and clean.rows_checked["certificates"] == 2
    assert clean.events_replayed == (0 if folded else clean.events_replayed) and clean.events_replayed >= 0
    sql, expected = TAMPERING[case]
    _edit(db, sql)
    report = await store.verify_state()
    assert not report.ok
    assert expected is not None and expected in _named(report), report.lines()
    assert len(report.disagreements) == 1, report.lines()
    assert expected[2] in report.lines()[0] and expected[1] in report.lines()[0]


async def test_evidence_of_revocation_names_what_it_should_be(registrar: tuple[RegistrarStore, str]) -> None:
    store, db = registrar
    _edit(db, TAMPERING["revoked certificate back to issued"][0])
    (d,) = (await store.verify_state()).disagreements
    assert d.expected is not None and "state=7:revoked" in d.expected and "reason=13:keyCompromise" in d.expected
    assert d.found is not None and "state=6:issued" in d.found and "reason=-" in d.found
    assert d.as_json()["problem"] == "changed"


async def test_edited_snapshot_is_detected(registrar: tuple[RegistrarStore, str]) -> None:
    store, db = registrar
    await _checkpoint(store)
    # rows and snapshot edited together: the checkpoint's digest still catches it
    _edit(db, TAMPERING["revoked certificate back to issued"][0],
          "UPDATE state_evidence SET facts = (SELECT 'device=3:P-1 state=6:issued not_after=' ||"
          " length(not_after) || ':' || not_after || ' revoked_at=- reason=-' FROM certificates"
          " WHERE cert_serial = 'a') WHERE kind = 'certificate' AND row_key = 'a'")
    report = await store.verify_state()
    assert not report.ok and [d.problem for d in report.disagreements] == ["snapshot-edited"]


async def test_checkpoint_replays_only_what_follows(registrar: tuple[RegistrarStore, str]) -> None:
    store, _ = registrar
    before = await store.verify_state()
    assert before.checkpoint_id is None and before.events_replayed > 10
    await _checkpoint(store)
    await store.set_device_state("P-2", "decommissioned", at=T0, reason="op")
    after = await store.verify_state()
    assert after.ok and after.events_replayed == 1 and after.snapshot_rows == 2 + 2 + 2 + 2
    # a second checkpoint built on a stale verify is skipped, not stacked
    assert await store.checkpoint_state(at=T0, expect_checkpoint=None) is None
    assert (await store.verify_event_chain()).ok
    since = await store.verify_event_chain_since_checkpoint()
    assert since.ok and since.count == 2  # the checkpoint event and the one state event


async def test_chain_since_checkpoint_catches_an_edited_state_event(registrar: tuple[RegistrarStore, str]) -> None:
    store, db = registrar
    await _checkpoint(store)
    await store.set_device_state("P-2", "decommissioned", at=T0, reason="op")
    _edit(db, "UPDATE events SET detail = replace(detail, 'decommissioned', 'enrolled')"
              " WHERE id = (SELECT max(id) FROM events)")
    report = await store.verify_event_chain_since_checkpoint()
    assert not report.ok and report.problem == "edited"


@pytest.fixture
async def masa(new_store_url: Callable[[str], str]) -> AsyncIterator[tuple[MasaStore, str]]:
    db = new_store_url("masa")
    store = await open_masa_store(db)
    await store.add_manufactured_device("M-1", idevid_fingerprint="aa", at=T0)
    await store.add_owner("M-1", domain_ca_spki_sha256=_spki(1), domain_ca_der=b"ca", at=T0)
    await store.issue_voucher_atomically(
        serial="M-1", voucher=b"cms", media_type="application/voucher-cms+json", assertion="logged",
        nonce=b"n", registrar_spki_sha256=_spki(7), domain_ca_spki_sha256=_spki(1), domain_id="ZA==",
        created_at=T0, expires_on=None)
    try:
        yield store, db
    finally:
        await store.close()


@pytest.mark.parametrize("folded", [False, True], ids=["since-checkpoint", "in-checkpoint"])
@pytest.mark.parametrize(("sql", "expected"), [
    ("INSERT INTO owners (serial, domain_ca_spki_sha256, domain_ca_der, added_at) VALUES"
     " ('M-1', {random32}, {x00}, '2026-03-01T12:00:00.000000+00:00')", ("unexpected", "owners", "2")),
    ("DELETE FROM vouchers", ("missing", "vouchers", "1")),
    ("UPDATE audit_log SET domain_id = 'b3RoZXI='", ("changed", "audit_log", "1")),
    ("UPDATE owners SET domain_ca_spki_sha256 = {random32}", ("changed", "owners", "1")),
], ids=["owner-inserted", "voucher-deleted", "audit-entry-edited", "owner-swapped"])
async def test_masa_edit_is_named(masa: tuple[MasaStore, str], sql: str, expected: tuple[str, str, str],
                                  folded: bool) -> None:
    store, db = masa
    if folded:
        clean = await store.verify_state()
        assert clean.ok, clean.lines()
        assert await store.checkpoint_state(at=T0, expect_checkpoint=None) is not None
    _edit(db, sql.format(random32=sql_blob(db, os.urandom(32)), x00=sql_blob(db, b"\x00")))
    report = await store.verify_state()
    assert _named(report) == {expected}, report.lines()


async def test_masa_owner_removal_is_evidence(masa: tuple[MasaStore, str]) -> None:
    store, _ = masa
    await store.remove_owner("M-1", domain_ca_spki_sha256=_spki(1), at=T0)
    assert (await store.verify_state()).ok


async def test_store_from_before_state_evidence_gets_a_reported_baseline(new_store_url: Callable[[str], str]) -> None:
    db = new_store_url("registrar")
    store = await open_registrar_store(db)
    await store.close()
    # a store as the previous release left it: rows, no evidence, no migration 5
    _edit(db,
          "INSERT INTO devices VALUES ('OLD-1', 'CN=mfr', 'aa', 'm', 'enrolled', '2025-01-01T00:00:00.000000+00:00',"
          " '2025-01-01T00:00:00.000000+00:00')",
          "DROP TABLE state_evidence", "DROP INDEX events_by_kind",
          "DELETE FROM schema_migrations WHERE version = 5")
    store = await open_registrar_store(db)
    try:
        report = await store.verify_state()
        assert report.ok and report.checkpoint_baseline and report.snapshot_rows == 1
        assert report.checkpoint_reason is not None and "before state evidence" in report.checkpoint_reason
        (event,) = [e for e in await store.events() if e.kind == "state.checkpoint"]
        assert event.detail["baseline"] is True and event.detail["rows"] == 1
        # from then on the baseline row is held to it like any other
        _edit(db, "UPDATE devices SET state = 'discovered' WHERE serial = 'OLD-1'")
        assert _named(await store.verify_state()) == {("changed", "devices", "OLD-1")}
    finally:
        await store.close()
    # reopening does not adopt again
    store = await open_registrar_store(db)
    try:
        assert not (await store.verify_state()).ok
    finally:
        await store.close()


async def test_new_store_needs_no_baseline(new_store_url: Callable[[str], str]) -> None:
    store = await open_registrar_store(new_store_url("registrar"))
    try:
        assert await store.events() == []
        report = await store.verify_state()
        assert report.ok and report.checkpoint_id is None and report.snapshot_rows == 0
    finally:
        await store.close()
