"""The device lifecycle in the store and the CLI: unique credentials, same-key renewal,
CRL numbers, inventory paging at scale, and `audit verify|export` on
tampered database files of both roles."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from brski.ca import new_serial
from brski.errors import Conflict, NotFound
from brski_cli import main as brski
from brski_storage import NewEvent, RegistrarStore, open_registrar_store
from tests.storage_helpers import with_events
from tests.store_helpers import raw_execute, raw_insert, sql_blob

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def key(n: int) -> bytes:
    return hashlib.sha256(f"key-{n}".encode()).digest()


@pytest.fixture
async def store(store: RegistrarStore) -> RegistrarStore:
    """The shared store (tests/storage_helpers.py) with two devices."""
    for serial in ("DEV-1", "DEV-2"):
        await store.upsert_device(serial, idevid_issuer="CN=ca", idevid_fingerprint=serial,
                                  manufacturer="acme", at=T0)
    return store


async def _issue(store: RegistrarStore, serial: int, device: str, spki: bytes, *, renews: int | None = None) -> None:
    if renews is None:
        await store.reserve_certificate(cert_serial=serial, device_serial=device, spki_sha256=spki, at=T0)
    else:
        await store.reserve_renewal(cert_serial=serial, renews=renews, spki_sha256=spki, at=T0)
    await store.complete_certificate(serial, der=b"\x30\x00", not_before=T0, not_after=T0 + timedelta(days=1), at=T0)


_INTEGRITY = (sqlite3.IntegrityError, psycopg.IntegrityError)


def test_serials_have_at_least_64_random_bits() -> None:
    serials = [new_serial() for _ in range(2000)]
    assert len(set(serials)) == len(serials)
    assert all(s.bit_length() == 159 for s in serials)  # 158 random bits under a fixed top bit
    # Every one of the low 64 bits takes both values across the sample.
    for bit in range(64):
        assert {(s >> bit) & 1 for s in serials} == {0, 1}


async def test_a_serial_and_a_key_are_certified_once(store: RegistrarStore, registrar_url: str) -> None:
    await _issue(store, 0x1001, "DEV-1", key(1))
    with pytest.raises(Conflict) as exc:  # the same key again, even for another device
        await store.reserve_certificate(cert_serial=0x1002, device_serial="DEV-2", spki_sha256=key(1), at=T0)
    assert exc.value.check == "storage.duplicate-key"
    with pytest.raises(Conflict):  # the same serial again
        await store.reserve_certificate(cert_serial=0x1001, device_serial="DEV-2", spki_sha256=key(2), at=T0)
    # The database itself refuses, not only the code: a raw insert fails.
    with pytest.raises(_INTEGRITY):
        raw_execute(registrar_url, ["INSERT INTO certificates (cert_serial, device_serial, spki_sha256, state, reserved_at)"
                          f" VALUES ('abc', 'DEV-2', {sql_blob(registrar_url, key(1))}, 'reserved', 'x')"])


async def test_same_key_renewal_is_a_chain_per_device(store: RegistrarStore, registrar_url: str) -> None:
    await _issue(store, 0x2001, "DEV-1", key(3))
    await _issue(store, 0x2002, "DEV-1", key(3), renews=0x2001)
    latest = await store.latest_certificate_for_key(key(3))
    assert latest is not None and latest.cert_serial == "2002" and latest.device_serial == "DEV-1"
    with pytest.raises(Conflict):  # a certificate is renewed with its key once
        await store.reserve_renewal(cert_serial=0x2003, renews=0x2001, spki_sha256=key(3), at=T0)
    with pytest.raises(Conflict):  # a renewal keeps the key
        await store.reserve_renewal(cert_serial=0x2004, renews=0x2002, spki_sha256=key(4), at=T0)
    with pytest.raises(NotFound):
        await store.reserve_renewal(cert_serial=0x2005, renews=0x9999, spki_sha256=key(3), at=T0)
    await store.revoke_certificate(0x2002, reason="superseded", at=T0)
    with pytest.raises(Conflict):  # a revoked certificate is not renewed
        await store.reserve_renewal(cert_serial=0x2006, renews=0x2002, spki_sha256=key(3), at=T0)
    # Raw SQL cannot move a key to another device through a "renewal" either.
    with pytest.raises(_INTEGRITY):
        raw_execute(registrar_url, ["INSERT INTO certificates (cert_serial, device_serial, spki_sha256, renews, state,"
                          f" reserved_at) VALUES ('77', 'DEV-2', {sql_blob(registrar_url, key(3))}, '2002', 'reserved', 'x')"])
    assert await store.revoked_count() == 1


async def test_crl_numbers_are_unique_and_the_latest_is_served(store: RegistrarStore) -> None:
    assert await store.latest_crl() is None
    assert await store.latest_crl_number() is None
    await store.add_crl(number=1, this_update=T0, next_update=T0 + timedelta(hours=1), revoked_count=0, der=b"a")
    await store.add_crl(number=2, this_update=T0, next_update=T0 + timedelta(hours=1), revoked_count=3, der=b"b")
    with pytest.raises(Conflict):
        await store.add_crl(number=2, this_update=T0, next_update=T0, revoked_count=3, der=b"c")
    latest = await store.latest_crl()
    assert latest is not None and (latest.number, latest.der, latest.revoked_count) == (2, b"b", 3)
    assert await store.latest_crl_number() == 2


async def test_inventory_of_thousands_filters_and_pages(registrar_url: str) -> None:
    s = await open_registrar_store(registrar_url)
    await s.close()
    ts = T0.isoformat(timespec="microseconds")
    states = ["discovered", "voucher-obtained", "enrolled", "renewed", "revoked", "decommissioned"]
    rows = [
        (f"DEV-{i:06d}", "CN=ca", f"fp{i}", "acme" if i % 3 else "globex", states[i % len(states)], ts, ts)
        for i in range(6000)
    ]
    raw_insert(registrar_url, "INSERT INTO devices VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    async with await open_registrar_store(registrar_url) as store:
        async def walk(**filters: str) -> list[str]:
            seen: list[str] = []
            after = None
            while True:
                page = await store.list_devices(after_serial=after, limit=250, **filters)
                seen += [d.serial for d in page]
                if len(page) < 250:
                    return seen
                after = page[-1].serial

        everything = await walk()
        assert everything == sorted(r[0] for r in rows)
        enrolled = await walk(state="enrolled")
        assert enrolled == sorted(r[0] for r in rows if r[4] == "enrolled") and len(enrolled) == 1000
        globex_renewed = await walk(state="renewed", manufacturer="globex")
        assert globex_renewed == sorted(r[0] for r in rows if r[4] == "renewed" and r[3] == "globex")
        assert len(globex_renewed) == 1000


# --- audit verify / export on tampered files ------------------------------------------


EVENTS = [
    NewEvent(at=T0 + timedelta(minutes=i), kind=f"k{i}", device_serial="DEV-1" if i % 2 else "DEV-2",
             outcome="info", check=None, detail={"i": i})
    for i in range(10)
]


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = brski(list(argv))
    return code, capsys.readouterr().out


@pytest.mark.parametrize("role", ["registrar", "masa"])
@pytest.mark.parametrize(
    ("tamper", "problem", "first_bad"),
    [
        (["UPDATE events SET detail = '{\"i\":42}' WHERE id = 4"], "edited", 4),
        (["DELETE FROM events WHERE id = 6"], "removed", 6),
        (["UPDATE events SET id = -1 WHERE id = 3", "UPDATE events SET id = 3 WHERE id = 4",
          "UPDATE events SET id = 4 WHERE id = -1"], "reordered", 3),
        (["DELETE FROM events WHERE id >= 9"], "removed", 9),
    ],
)
def test_audit_verify_names_each_tampering(
    new_store_url: Callable[[str], str], engine: str, capsys: pytest.CaptureFixture[str], role: str,
    tamper: list[str], problem: str, first_bad: int
) -> None:
    url = with_events(new_store_url(role), role, EVENTS)
    code, out = _cli(capsys, role, "audit", "verify", "--database", url)
    assert code == 0 and "intact: 10 events" in out
    if engine == "postgresql":
        # An attacker with DBA rights first drops the constraints in the way.
        tamper = ["ALTER TABLE events DROP CONSTRAINT events_id_check", *tamper]
    raw_execute(url, tamper)
    code, out = _cli(capsys, role, "audit", "verify", "--database", url)
    assert code == 1, out
    assert f"TAMPERED: {problem} at event {first_bad}" in out


@pytest.mark.parametrize("role", ["registrar", "masa"])
def test_audit_export_jsonl_and_csv_with_filters(
    new_store_url: Callable[[str], str], capsys: pytest.CaptureFixture[str], role: str
) -> None:
    url = with_events(new_store_url(role), role, EVENTS)
    code, out = _cli(capsys, role, "audit", "export", "--database", url, "--format", "jsonl")
    records = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [r["id"] for r in records] == list(range(1, 11))
    assert records[1]["prev_hash"] == records[0]["hash"] and records[0]["detail"] == {"i": 0}
    since = (T0 + timedelta(minutes=6)).isoformat()
    code, out = _cli(capsys, role, "audit", "export", "--database", url, "--format", "csv",
                     "--since", since, "--device", "DEV-1")
    table = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and [int(r["id"]) for r in table] == [8, 10]
    assert all(r["device_serial"] == "DEV-1" for r in table) and json.loads(table[0]["detail"]) == {"i": 7}
    code, _ = _cli(capsys, role, "audit", "export", "--database", url, "--since", "yesterday")
    assert code == 2
