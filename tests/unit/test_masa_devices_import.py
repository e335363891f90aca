"""``brski masa devices import`` in-process: PEM bundles read in batches, DER
files, pledge directories, and a serial already made with another IDevID."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from brski.devpki import build_dev_pki
from brski.pki import fingerprint_sha256, load_cert, load_private_key
from brski_cli.pki_cmd import write_dev_pki
from brski_storage import open_masa_store
from masa import cli
from pledge_sim.fleet import FleetPledge, generate_idevids, idevid_bundle

NOW = datetime(2026, 11, 28, tzinfo=UTC)


@pytest.fixture(scope="module")
def pledges() -> list[FleetPledge]:
    pki = build_dev_pki(pledges=1, masa_url="https://masa.example", now=NOW)
    ca = load_cert(pki.files["manufacturer/idevid-ca.crt"])
    key = load_private_key(pki.files["manufacturer/idevid-ca.key"])
    return generate_idevids(ca_cert=ca, ca_key=key, masa_url="https://masa.example", count=7, now=NOW)


def _devices(db: Path) -> dict[str, str]:
    con = sqlite3.connect(db)
    try:
        return dict(con.execute("SELECT serial, idevid_fingerprint FROM devices"))
    finally:
        con.close()


def test_a_bundle_is_imported_in_batches_and_again_changes_nothing(
    tmp_path: Path, pledges: list[FleetPledge], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(cli, "IMPORT_BATCH", 3)  # 7 devices: batches of 3, 3 and 1
    bundle = tmp_path / "idevids.pem"
    bundle.write_bytes(b"# comment lines outside PEM blocks are ignored\n" + idevid_bundle(pledges))
    db = tmp_path / "masa.db"
    args = ["devices", "import", "--database", f"sqlite:///{db}", str(bundle)]
    assert cli.main(args) == 0
    assert "imported 7 device(s), 0 already known; the MASA now knows 7" in capsys.readouterr().out
    assert _devices(db) == {p.serial: fingerprint_sha256(p.cert) for p in pledges}
    assert cli.main(args) == 0
    assert "imported 0 device(s), 7 already known" in capsys.readouterr().out


def test_der_files_and_pledge_directories(tmp_path: Path, pledges: list[FleetPledge]) -> None:
    der = tmp_path / "one.der"
    der.write_bytes(pledges[0].cert.public_bytes(Encoding.DER))
    write_dev_pki(tmp_path / "pki", build_dev_pki(pledges=2, masa_url="https://masa.example", now=NOW), force=False)
    db = tmp_path / "masa.db"
    assert cli.main(["devices", "import", "--database", f"sqlite:///{db}", str(der), str(tmp_path / "pki" / "pledges")]) == 0
    assert sorted(_devices(db)) == sorted([pledges[0].serial, "PLG-000001", "PLG-000002"])


def test_a_serial_made_with_another_idevid_is_named_left_unchanged_and_exits_1(
    tmp_path: Path, pledges: list[FleetPledge], capsys: pytest.CaptureFixture[str],
) -> None:
    db = tmp_path / "masa.db"

    async def made_before() -> None:
        async with await open_masa_store(f"sqlite:///{db}") as store:
            await store.add_manufactured_device(pledges[2].serial, idevid_fingerprint="0" * 64, at=NOW)

    asyncio.run(made_before())
    bundle = tmp_path / "idevids.pem"
    bundle.write_bytes(idevid_bundle(pledges))
    assert cli.main(["devices", "import", "--database", f"sqlite:///{db}", str(bundle)]) == 1
    out = capsys.readouterr()
    assert f"{pledges[2].serial}: already recorded with a different IDevID, left unchanged" in out.err
    assert "imported 6 device(s), 0 already known; the MASA now knows 7" in out.out
    assert _devices(db)[pledges[2].serial] == "0" * 64
