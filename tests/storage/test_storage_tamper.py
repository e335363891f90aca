"""The stores against someone with database access, on both engines.

Each test edits a store behind its back, as an attacker or a careless
administrator would (sqlite3 on the file, psycopg on the schema, in that
dialect's SQL), and expects the event chain to name the first bad event --
or installs a failing trigger and expects a MASA voucher, its audit entry
and its event to be committed together or not at all.
"""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from brski.errors import Conflict, NotFound, StorageError
from brski_storage import IssuedVoucher, MasaStore, RegistrarStore
from brski_storage.chain import event_hash
from tests.storage_helpers import fill_events, spki, t
from tests.store_helpers import raw_execute, raw_rows, sql_blob


def failing_insert_trigger(url: str, table: str, message: str) -> list[str]:
    """SQL that makes every INSERT into ``table`` fail inside the database."""
    if url.startswith("sqlite:"):
        return [
            f"CREATE TRIGGER fail_{table} BEFORE INSERT ON {table} BEGIN SELECT RAISE(ABORT, '{message}'); END"
        ]
    return [
        f"CREATE FUNCTION fail_{table}() RETURNS trigger LANGUAGE plpgsql AS"
        f" $$ BEGIN RAISE EXCEPTION '{message}'; END $$",
        f"CREATE TRIGGER fail_{table} BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION fail_{table}()",
    ]


# --- the registrar's event chain ---------------------------------------------------------


async def test_chain_detects_edited_row(store: RegistrarStore, registrar_url: str) -> None:
    await fill_events(store)
    raw_execute(
        registrar_url, ["""UPDATE events SET detail = '{"i":99,"note":"x"}' WHERE id = 5"""]
    )
    report = await store.verify_event_chain()
    assert (report.ok, report.problem, report.first_bad_id, report.count) == (False, "edited", 5, 4)


async def test_chain_detects_edit_with_recomputed_hash(
    store: RegistrarStore, registrar_url: str
) -> None:
    await fill_events(store)
    ((at, kind, dev, check, prev),) = raw_rows(
        registrar_url,
        "SELECT at, kind, device_serial, check_name, prev_hash FROM events WHERE id = 5",
    )
    assert isinstance(prev, bytes)
    forged = event_hash(
        prev,
        at=str(at),
        kind=str(kind),
        device_serial=str(dev),
        outcome="allow",
        check=None if check is None else str(check),
        detail={"i": 4},
    )
    raw_execute(
        registrar_url,
        [
            f"""UPDATE events SET outcome = 'allow', detail = '{{"i":4}}', hash = {sql_blob(registrar_url, forged)}"""
            " WHERE id = 5"
        ],
    )
    report = await store.verify_event_chain()
    assert (report.ok, report.problem, report.first_bad_id) == (False, "edited", 5)


async def test_chain_detects_deleted_row(store: RegistrarStore, registrar_url: str) -> None:
    await fill_events(store)
    raw_execute(registrar_url, ["DELETE FROM events WHERE id = 5"])
    report = await store.verify_event_chain()
    assert (report.ok, report.problem, report.first_bad_id) == (False, "removed", 5)


async def test_chain_detects_truncated_tail(store: RegistrarStore, registrar_url: str) -> None:
    await fill_events(store)
    raw_execute(registrar_url, ["DELETE FROM events WHERE id >= 9"])
    report = await store.verify_event_chain()
    assert (report.ok, report.problem, report.first_bad_id) == (False, "removed", 9)


async def test_chain_detects_swapped_rows(store: RegistrarStore, registrar_url: str) -> None:
    await fill_events(store)
    # A spare id above the chain (PostgreSQL's schema refuses ids below 1).
    raw_execute(
        registrar_url,
        [
            "UPDATE events SET id = 1000000 WHERE id = 5",
            "UPDATE events SET id = 5 WHERE id = 6",
            "UPDATE events SET id = 6 WHERE id = 1000000",
        ],
    )
    report = await store.verify_event_chain()
    assert (report.ok, report.problem, report.first_bad_id) == (False, "reordered", 5)


# --- the MASA ------------------------------------------------------------------------------


async def _issue(
    masa: MasaStore,
    serial: str,
    domain_id: str,
    *,
    voucher: bytes,
    keys: tuple[int, int],
    at: datetime,
    nonce: bytes | None = None,
    expires_on: datetime | None = None,
    media_type: str = "application/voucher-cms+json",
) -> IssuedVoucher:
    """A logged voucher for ``serial``; ``keys`` numbers the registrar's and
    the domain CA's public keys (``spki``)."""
    return await masa.issue_voucher_atomically(
        serial=serial,
        voucher=voucher,
        media_type=media_type,
        assertion="logged",
        nonce=nonce,
        registrar_spki_sha256=spki(keys[0]),
        domain_ca_spki_sha256=spki(keys[1]),
        domain_id=domain_id,
        created_at=at,
        expires_on=expires_on,
    )


async def claimed(masa: MasaStore, serial: str, domain_id: str) -> bool:
    """What the MASA's audit-log request asks (RFC 8995 5.8): did this domain claim it?"""
    return any(e.domain_id == domain_id for e in await masa.audit_entries(serial))


async def test_masa_issue_voucher_atomically(masa: MasaStore, masa_url: str) -> None:
    await masa.add_manufactured_device("M-1", idevid_fingerprint="aa", at=t(0))
    issued = await _issue(
        masa, "M-1", "ZG9tYWlu", voucher=b"cms", keys=(7, 1), at=t(10), nonce=b"nonce", expires_on=t(20)
    )
    assert issued.voucher.voucher == b"cms" and issued.voucher.expires_on == t(20)
    assert issued.audit_entry.domain_id == "ZG9tYWlu" and issued.audit_entry.at == t(10)
    assert issued.event.device_serial == "M-1" and issued.event.kind == "voucher.issued"
    assert await claimed(masa, "M-1", "ZG9tYWlu")
    assert not await claimed(masa, "M-1", "b3RoZXI=")
    assert [e.nonce for e in await masa.audit_entries("M-1")] == [b"nonce"]
    # What the commit answers is what the tables hold (built, not read back).
    assert await masa.vouchers("M-1") == [issued.voucher]
    assert await masa.audit_entries("M-1") == [issued.audit_entry]

    # If any of the three writes fails, none is committed (RFC 8995 5.8.1: no
    # voucher without its audit-log entry).
    raw_execute(masa_url, failing_insert_trigger(masa_url, "events", "no"))
    with pytest.raises(StorageError):
        await _issue(masa, "M-1", "b3RoZXI=", voucher=b"cms2", keys=(8, 2), at=t(11))
    assert len(await masa.vouchers("M-1")) == 1
    assert not await claimed(masa, "M-1", "b3RoZXI=")
    with pytest.raises(NotFound):
        await _issue(masa, "ghost", "eA==", voucher=b"v", keys=(8, 2), at=t(12), media_type="m")
    stats = await masa.stats()
    # the device's state evidence, the voucher's, and the service event
    assert (stats["vouchers"], stats["audit_log"], stats["events"]) == (1, 1, 3)


async def test_masa_first_claim_records_the_owner_in_the_voucher_commit(masa: MasaStore, masa_url: str) -> None:
    await masa.add_manufactured_device("M-1", idevid_fingerprint="aa", at=t(0))

    async def claim(voucher: bytes, at: datetime) -> IssuedVoucher:
        return await masa.issue_voucher_atomically(
            serial="M-1", voucher=voucher, media_type="application/voucher-cms+json", assertion="logged",
            nonce=None, registrar_spki_sha256=spki(7), domain_ca_spki_sha256=spki(1), domain_id="ZG9tYWlu",
            created_at=at, expires_on=None, new_owner_der=b"domain-ca-der",
        )

    # The voucher's commit fails: no owner either.
    raw_execute(masa_url, failing_insert_trigger(masa_url, "audit_log", "no"))
    with pytest.raises(StorageError):
        await claim(b"cms0", t(9))
    assert await masa.owners("M-1") == [] and await masa.vouchers("M-1") == []
    raw_execute(masa_url, ["DROP TRIGGER fail_audit_log" + ("" if masa_url.startswith("sqlite:") else " ON audit_log")])

    await claim(b"cms", t(10))
    (owner,) = await masa.owners("M-1")
    assert (owner.domain_ca_spki_sha256, owner.domain_ca_der, owner.added_at) == (spki(1), b"domain-ca-der", t(10))
    # A second first claim for the same key: Conflict, and no second voucher.
    with pytest.raises(Conflict):
        await claim(b"cms2", t(11))
    assert [v.voucher for v in await masa.vouchers("M-1")] == [b"cms"]
    # The owner row is in the state evidence of the voucher's commit.
    ((detail,),) = raw_rows(masa_url, "SELECT detail FROM events WHERE kind = 'state.recorded' AND id > 1")
    text = detail.decode() if isinstance(detail, bytes) else str(detail)
    assert [row[0] for row in json.loads(text)["rows"]] == ["owner", "voucher", "audit"]


async def test_masa_audit_entries_and_shared_event_chain(masa: MasaStore, masa_url: str) -> None:
    await masa.add_manufactured_device("M-1", idevid_fingerprint="aa", at=t(0))
    entry = await masa.append_audit_entry(
        serial="M-1", at=t(1), domain_id="ZA==", nonce=None, assertion="verified", truncated=2
    )
    assert entry.truncated == 2 and entry.nonce is None
    for i in range(5):
        await masa.append_event(
            at=t(i), kind="k", device_serial="M-1", outcome="info", check=None, detail={"i": i}
        )
    assert (await masa.verify_event_chain()).ok
    raw_execute(masa_url, ["UPDATE events SET kind = 'forged' WHERE id = 3"])
    report = await masa.verify_event_chain()
    assert (report.problem, report.first_bad_id) == ("edited", 3)
