"""``brski registrar|masa migrate`` and ``store copy --to postgresql://``: the
move from SQLite to PostgreSQL keeps every row and the event chain verifies
on the target exactly as on the source."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from brski_cli import main as brski
from brski_cli.pgcluster import PgCluster
from brski_storage import NewEvent, StateChange, open_masa_store, open_registrar_store
from brski_storage.copy import table_counts
from brski_storage.migrate import load_migrations
from tests.store_helpers import raw_execute, raw_rows

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def key(n: int) -> bytes:
    return hashlib.sha256(f"k{n}".encode()).digest()


async def _fill_registrar(url: str) -> None:
    async with await open_registrar_store(url) as s:
        for i in range(20):
            serial = f"DEV-{i:03d}"
            await s.upsert_device(serial, idevid_issuer="CN=ca", idevid_fingerprint=serial, manufacturer="acme", at=T0)
            await s.add_voucher_request(serial=serial, nonce=b"n", pledge_request=b"p", registrar_request=None,
                                        media_type="application/voucher-cms+json", received_at=T0)
            await s.reserve_certificate(cert_serial=100 + i, device_serial=serial, spki_sha256=key(i), at=T0)
            await s.complete_certificate(
                100 + i, der=b"\x30\x00", not_before=T0, not_after=T0 + timedelta(days=1), at=T0,
                events=[NewEvent(at=T0, kind="enrolled", device_serial=serial, outcome="allow", check=None,
                                 detail={"i": i, "text": "ünïcode"})],
                then=StateChange(state="enrolled", reason="test"),
            )
        await s.reserve_renewal(cert_serial=999, renews=100, spki_sha256=key(0), at=T0)
        await s.add_crl(number=1, this_update=T0, next_update=T0, revoked_count=0, der=b"crl")
        await s.decide_approval("DEV-000", decision="approved", at=T0, by="op")


def _event_count(db: Path) -> int:
    con = sqlite3.connect(db)
    try:
        return int(con.execute("SELECT count(*) FROM events").fetchone()[0])
    finally:
        con.close()


def test_migrate_then_copy_registrar_and_verify_on_target(
    tmp_path: Path, postgres: PgCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    src = f"sqlite:///{tmp_path / 'registrar.db'}"
    dst = postgres.new_schema("copy")
    asyncio.run(_fill_registrar(src))
    assert brski(["registrar", "migrate", "--database", dst]) == 0
    versions = ", ".join(str(m.version) for m in load_migrations("postgresql", "registrar"))
    assert f"applied migration(s) {versions}" in capsys.readouterr().out
    assert brski(["registrar", "migrate", "--database", dst]) == 0
    assert "up to date" in capsys.readouterr().out

    assert brski(["registrar", "store", "copy", "--database", src, "--to", dst]) == 0
    out = capsys.readouterr().out
    copied = _event_count(tmp_path / "registrar.db")  # the fill's events and the state evidence's
    assert f"target event chain intact: {copied} events" in out and "MISMATCH" not in out
    assert table_counts(src) == table_counts(dst)
    assert table_counts(dst)["certificates"] == 21 and table_counts(dst)["devices"] == 20

    async def after() -> None:
        async with await open_registrar_store(dst) as s:
            cert = await s.get_certificate(100)
            assert cert is not None and cert.state == "issued" and cert.spki_sha256 == key(0)
            # ids continue after the copied ones, and the chain goes on from the copied head
            await s.upsert_device("NEW", idevid_issuer="CN=ca", idevid_fingerprint="x", manufacturer="m", at=T0)
            await s.reserve_certificate(cert_serial=5000, device_serial="NEW", spki_sha256=key(77), at=T0)
            event = await s.append_event(at=T0, kind="after", device_serial=None, outcome="info", check=None, detail={})
            assert event.id > copied  # after the copied ids (and the state events of the two writes above)
            assert (await s.verify_event_chain()).ok
            events = [e for e in await s.events(device_serial="DEV-003") if e.kind != "state.recorded"]
            assert events[0].detail == {"i": 3, "text": "ünïcode"}

    asyncio.run(after())
    # A copy never merges into a store that already holds data.
    assert brski(["registrar", "store", "copy", "--database", src, "--to", dst]) == 1
    assert "empty store only" in capsys.readouterr().err


def test_copy_masa_and_a_cut_tail_stays_visible(
    tmp_path: Path, postgres: PgCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    src = f"sqlite:///{tmp_path / 'masa.db'}"

    async def fill() -> None:
        async with await open_masa_store(src) as s:
            for i in range(5):
                await s.add_manufactured_device(f"M-{i}", idevid_fingerprint="f", at=T0)
                await s.add_owner(f"M-{i}", domain_ca_spki_sha256=key(i), domain_ca_der=b"der", at=T0)
                await s.issue_voucher_atomically(
                    serial=f"M-{i}", voucher=b"v", media_type="application/voucher-cms+json", assertion="logged",
                    nonce=None, registrar_spki_sha256=key(9), domain_ca_spki_sha256=key(i), domain_id="d",
                    created_at=T0, expires_on=None)

    asyncio.run(fill())
    good = postgres.new_schema("masa")
    assert brski(["masa", "store", "copy", "--database", src, "--to", good]) == 0
    assert f"target event chain intact: {_event_count(tmp_path / 'masa.db')} events" in capsys.readouterr().out
    assert raw_rows(good, "SELECT count(*) FROM audit_log")[0][0] == 5

    # Evidence of tampering travels with the copy: events cut from the
    # source's tail are still reported as removed on the target.
    raw_execute(src, ["DELETE FROM events WHERE id >= 4"])
    cut = postgres.new_schema("masa_cut")
    assert brski(["masa", "store", "copy", "--database", src, "--to", cut]) == 1
    assert "TAMPERED: removed at event 4" in capsys.readouterr().out


def test_copy_goes_from_sqlite_to_postgresql_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = f"sqlite:///{tmp_path / 'a.db'}"
    assert brski(["masa", "store", "copy", "--database", src, "--to", f"sqlite:///{tmp_path / 'b.db'}"]) == 2
