"""The consoles' store-backed logic without a server, on both engines: keyset
search, the last hour read backwards and grouped, and verify checking the
tables as ``audit verify`` does."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from brski_storage.base import MasaStore, RegistrarStore
from brski_storage.records import Outcome
from brski_web.console import (
    per_minute,
    recent_window,
    refusals_by_check,
    verify_audit,
)
from registrar.console import _search
from tests.store_helpers import raw_execute

NOW = datetime(2026, 12, 2, 12, 0, 30, tzinfo=UTC)


async def _devices(store: RegistrarStore, serials: list[str], state: str = "discovered") -> None:
    for serial in serials:
        await store.upsert_device(
            serial, idevid_issuer="CN=ca", idevid_fingerprint=hashlib.sha256(serial.encode()).hexdigest(),
            manufacturer="acme" if serial < "M" else "zeta", at=NOW,
        )
        if state != "discovered":
            await store.set_device_state(serial, state, at=NOW, reason="test")


async def test_search_pages_by_serial_and_prefix(store: RegistrarStore) -> None:
    await _devices(store, ["A1", "AB", "AB1", "AB2", "AC", "B", "N1", "N2"])
    rows, nxt = await _search(store, q="", state=None, manufacturer=None, after=None, limit=3)
    assert [d.serial for d in rows] == ["A1", "AB", "AB1"] and nxt == "AB1"
    rows, nxt = await _search(store, q="", state=None, manufacturer=None, after=nxt, limit=3)
    assert [d.serial for d in rows] == ["AB2", "AC", "B"] and nxt == "B"
    rows, nxt = await _search(store, q="", state=None, manufacturer=None, after=nxt, limit=3)
    assert [d.serial for d in rows] == ["N1", "N2"] and nxt is None
    # A prefix: the exact serial first, then the contiguous range, then stop.
    rows, nxt = await _search(store, q="AB", state=None, manufacturer=None, after=None, limit=2)
    assert [d.serial for d in rows] == ["AB", "AB1"] and nxt == "AB1"
    rows, nxt = await _search(store, q="AB", state=None, manufacturer=None, after=nxt, limit=2)
    assert [d.serial for d in rows] == ["AB2"] and nxt is None
    rows, _ = await _search(store, q="N", state=None, manufacturer="zeta", after=None, limit=10)
    assert [d.serial for d in rows] == ["N1", "N2"]
    rows, _ = await _search(store, q="AB", state=None, manufacturer="zeta", after=None, limit=10)
    assert rows == []
    rows, _ = await _search(store, q="Q", state=None, manufacturer=None, after=None, limit=10)
    assert rows == []


async def test_search_filters_by_state(store: RegistrarStore) -> None:
    await _devices(store, ["E1", "E2"], state="enrolled")
    await _devices(store, ["E3"])
    rows, _ = await _search(store, q="E", state="enrolled", manufacturer=None, after=None, limit=10)
    assert [d.serial for d in rows] == ["E1", "E2"]
    rows, _ = await _search(store, q="E3", state="enrolled", manufacturer=None, after=None, limit=10)
    assert rows == []


async def test_last_hour_is_read_backwards_and_grouped(store: RegistrarStore) -> None:
    async def ev(minutes_ago: float, kind: str, outcome: Outcome, check: str | None) -> None:
        await store.append_event(at=NOW - timedelta(minutes=minutes_ago), kind=kind, device_serial=None,
                                 outcome=outcome, check=check, detail={"n": minutes_ago})

    await ev(90, "credential.issued", "allow", "x")  # outside the hour
    await ev(30, "credential.issued", "allow", "est.enroll")
    await ev(20, "refused /x", "refuse", "admin.chain")
    await ev(10, "refused /x", "refuse", "admin.client-cert")
    await ev(5, "refused /y", "refuse", "admin.client-cert")
    await ev(0, "credential.issued", "allow", "est.enroll")
    events, partial = await recent_window(store, NOW)
    assert not partial and [e.detail["n"] for e in events] == [0, 5, 10, 20, 30]
    grouped = refusals_by_check(events)
    assert [(c, n) for c, n, _ in grouped] == [("admin.client-cert", 2), ("admin.chain", 1)]
    assert grouped[0][2].detail["n"] == 5  # the latest example
    minutes = per_minute(events, NOW, counted=frozenset({"credential.issued"}), label="onboarded")
    assert minutes["counted_total"] == 2 and minutes["refused_total"] == 3
    bars = {(b.series, b.label): b.value for b in minutes["chart"].bars}
    assert bars[("onboarded", "12:00")] == 1 and bars[("onboarded", "11:30")] == 1
    assert bars[("refused", "11:55")] == 1 and bars[("refused", "11:40")] == 1


async def test_console_verify_checks_the_tables_as_audit_verify_does(store: RegistrarStore, registrar_url: str) -> None:
    """An intact chain over an edited table is not "intact": the console runs the same
    verification as ``audit verify`` and the admin API (chain and state evidence)."""
    await _devices(store, ["A-1"])
    assert (await verify_audit(store, now=NOW, admin="CN=admin")).ok
    raw_execute(registrar_url, ["UPDATE devices SET state = 'enrolled' WHERE serial = 'A-1'"])
    report = await verify_audit(store, now=NOW, admin="CN=admin")
    assert report.chain.ok and not report.ok
    assert any("A-1" in line for line in report.state.lines())


async def test_masa_lists_devices_made_in_serial_order(masa: MasaStore) -> None:
    for serial in ["S3", "S1", "S2"]:
        await masa.add_manufactured_device(serial, idevid_fingerprint=serial * 8, at=NOW)
    assert [d.serial for d in await masa.list_manufactured_devices(limit=2)] == ["S1", "S2"]
    assert [d.serial for d in await masa.list_manufactured_devices(after_serial="S2")] == ["S3"]
