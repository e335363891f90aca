"""``est_facts``: what one EST request checks, in one read, on both engines.

The facts must be the ones the separate reads give (device, approval, newest
audit log, the device's certificates, the newest row for a key, the newest
CRL number), never another device's, and one snapshot: a write that commits
while the read runs is seen by none of its statements or by all.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from brski_storage import RegistrarStore
from brski_storage.certificates import EstFacts
from tests.storage_helpers import add_device
from tests.store_helpers import raw_execute, sql_blob

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
DER = b"\x30\x03\x02\x01\x01"


def key(n: int) -> bytes:
    return hashlib.sha256(f"est-facts-key-{n}".encode()).digest()


@pytest.fixture
async def store(store: RegistrarStore) -> RegistrarStore:
    """The shared store with two devices, each with certificates, an audit log
    and an approval row, and one published CRL."""
    for n, serial in enumerate(("DEV-1", "DEV-2")):
        await add_device(store, serial)
        for i in range(2):
            await store.record_issued_certificate(
                cert_serial=0x100 * (n + 1) + i, device_serial=serial, spki_sha256=key(10 * n + i), der=DER,
                not_before=T0, not_after=T0 + timedelta(days=30), at=T0 + timedelta(seconds=i),
            )
            await store.add_audit_log(serial=serial, fetched_at=T0, body=f"{serial}-log-{i}".encode())
    await store.decide_approval("DEV-2", decision="rejected", at=T0, by="op")
    await store.add_crl(number=7, this_update=T0, next_update=T0 + timedelta(days=1), revoked_count=0, der=DER)
    return store


async def separate_reads(store: RegistrarStore, serial: str, spki: bytes) -> EstFacts:
    return EstFacts(
        device=await store.get_device(serial),
        approval=await store.get_approval(serial),
        audit_log=await store.latest_audit_log(serial),
        certificates=tuple(await store.list_certificates(serial)),
        key_certificate=await store.latest_certificate_for_key(spki),
        crl_number=await store.latest_crl_number(),
    )


async def test_the_facts_of_an_idevid_client_are_the_separate_reads(store: RegistrarStore) -> None:
    for serial, spki in (("DEV-1", key(1)), ("DEV-2", key(0)), ("DEV-2", key(99))):
        facts = await store.est_facts(
            device_serial=serial, spki_sha256=spki, gate=True, certificates=True, crl_number=True
        )
        assert facts == await separate_reads(store, serial, spki)
    facts = await store.est_facts(device_serial="DEV-2", spki_sha256=key(0), gate=True, certificates=True)
    # Another device's key is found (key reuse is refused across devices), nothing else of it.
    assert facts.key_certificate is not None and facts.key_certificate.device_serial == "DEV-1"
    assert {c.device_serial for c in facts.certificates} == {"DEV-2"}
    assert facts.approval is not None and facts.approval.decision == "rejected"
    assert facts.audit_log is not None and facts.audit_log.body == b"DEV-2-log-1"


async def test_the_facts_of_an_ldevid_client_are_its_row_and_its_device(store: RegistrarStore) -> None:
    facts = await store.est_facts(cert_serial="201", spki_sha256=key(11), gate=True, certificates=True, crl_number=True)
    assert facts.client_certificate == await store.get_certificate("201")
    assert facts.client_certificate is not None and facts.client_certificate.device_serial == "DEV-2"
    expected = replace(await separate_reads(store, "DEV-2", key(11)), client_certificate=facts.client_certificate)
    assert facts == expected
    assert await store.est_facts(cert_serial=0x201) == EstFacts(
        client_certificate=facts.client_certificate, device=await store.get_device("DEV-2")
    )
    # No row for the certificate: no device, nothing else.
    assert await store.est_facts(cert_serial="dead", gate=True, certificates=True, crl_number=True) == EstFacts()


async def test_only_what_is_asked_is_read(store: RegistrarStore) -> None:
    facts = await store.est_facts(device_serial="DEV-1")
    assert facts == EstFacts(device=await store.get_device("DEV-1"))
    assert await store.est_facts(device_serial="NOPE", gate=True, certificates=True) == EstFacts()
    with pytest.raises(ValueError):
        await store.est_facts()
    with pytest.raises(ValueError):
        await store.est_facts(device_serial="DEV-1", cert_serial="100")


async def test_the_facts_are_one_snapshot(
    store: RegistrarStore, registrar_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that commits after the read's first statement (the device, its
    gate rows, the CRL number) is not seen by the later one (the certificates),
    nor is it mixed into what the first one read."""
    db: Any = store._db  # type: ignore[attr-defined]
    read_now = db.read_now

    class Interleaved:
        """The read's connection; after its first statement another writer commits."""

        def __init__(self, conn: Any) -> None:
            self.conn, self.first = conn, True

        def execute(self, sql: str, params: Any = ()) -> Any:
            cursor = self.conn.execute(sql, params)
            if self.first:
                self.first = False
                row = cursor.fetchone()
                raw_execute(registrar_url, [
                    "INSERT INTO audit_logs (serial, fetched_at, body) VALUES"
                    f" ('DEV-1', '2026-03-01T09:00:00.000000+00:00', {sql_blob(registrar_url, b'newer')})",
                    "UPDATE certificates SET state = 'revoked', revoked_at = '2026-03-01T09:00:00.000000+00:00'"
                    " WHERE device_serial = 'DEV-1'",
                    "UPDATE devices SET state = 'enrolled' WHERE serial = 'DEV-1'",
                    "INSERT INTO crls (number, this_update, next_update, revoked_count, der) VALUES"
                    f" (8, '2026-03-01T09:00:00.000000+00:00', '2026-03-02T09:00:00.000000+00:00', 2,"
                    f" {sql_blob(registrar_url, DER)})",
                ])
                return _Rows([row])
            return cursor

    def spy(fn: Callable[[Any], Any], **kw: Any) -> Any:
        return read_now(lambda conn: fn(Interleaved(conn)), **kw)

    before = await separate_reads(store, "DEV-1", key(1))
    monkeypatch.setattr(db, "read_now", spy)
    facts = await store.est_facts(device_serial="DEV-1", spki_sha256=key(1), gate=True, certificates=True, crl_number=True)
    monkeypatch.undo()
    assert facts == before  # the snapshot of the first statement, throughout
    after = await store.est_facts(device_serial="DEV-1", spki_sha256=key(1), gate=True, certificates=True)
    assert after.audit_log is not None and after.audit_log.body == b"newer"
    assert {c.state for c in after.certificates} == {"revoked"}
    assert after.device is not None and after.device.state == "enrolled"
    assert await store.latest_crl_number() == 8


class _Rows:
    """A cursor's rows, already fetched."""

    def __init__(self, rows: list[Any]) -> None:
        self.rows = rows

    def fetchone(self) -> Any:
        return self.rows.pop(0) if self.rows else None

    def __iter__(self) -> Any:
        return iter(self.rows)
