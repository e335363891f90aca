"""The fleet's pieces that need no servers: identities, figures, progress, reports."""

from __future__ import annotations

import asyncio
import gc
import io
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest

from brski.devpki import build_dev_pki
from brski.pki import (
    Role,
    device_serial,
    load_cert,
    load_certs,
    load_private_key,
    masa_url,
    verify_chain,
)
from brski_cli.pki_cmd import write_dev_pki
from pledge_sim import fleet
from pledge_sim.conformance import CaseResult, format_table, junit_xml
from pledge_sim.fleet import (
    ProgressBar,
    Sample,
    format_summary,
    generate_idevids,
    load_idevid_dir,
    percentile,
    summarize,
    write_idevid_dir,
)

NOW = datetime(2026, 11, 28, tzinfo=UTC)


def test_percentile_interpolates_within_the_samples() -> None:
    values = list(range(1, 101))
    assert percentile(values, 50) == 50.5
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) is None
    assert percentile([3, 1, 2], 100) == 3


def test_summary_counts_failures_by_check_and_phases_of_successes_only() -> None:
    samples = [
        Sample(True, None, {"tls": 1.0, "voucher": 10.0, "enroll": 5.0, "total": 20.0}),
        Sample(True, None, {"tls": 3.0, "voucher": 30.0, "enroll": 7.0, "total": 40.0}),
        Sample(False, "http.timeout", {"tls": 900.0}),
        Sample(False, "http.timeout", {}),
        Sample(False, "pledge.voucher-nonce", {}),
    ]
    s = summarize(samples, 2.0)
    assert s["attempted"] == 5 and s["successes"] == 2 and s["failures"] == 3
    assert s["failures_by_check"] == {"http.timeout": 2, "pledge.voucher-nonce": 1}
    assert s["enrollments_per_s"] == 1.0
    tls = s["latency_ms"]["tls"]  # failures (900 ms) left out
    assert tls["p50"] == 2.0 and tls["p95"] == pytest.approx(2.9) and tls["p99"] == pytest.approx(2.98)
    assert s["latency_ms"]["total"]["p50"] == 30.0
    text = format_summary(s)
    assert "http.timeout" in text and "p99" in text


def test_generated_idevids_are_distinct_chain_to_the_ca_and_name_the_masa() -> None:
    pki = build_dev_pki(pledges=1, masa_url="https://masa.example:8443", now=NOW)
    ca = load_cert(pki.files["manufacturer/idevid-ca.crt"])
    root = load_cert(pki.files["manufacturer/root-ca.crt"])
    key = load_private_key(pki.files["manufacturer/idevid-ca.key"])
    pledges = generate_idevids(ca_cert=ca, ca_key=key, masa_url="https://masa.example:8443", count=5, now=NOW)
    serials = {device_serial(p.cert) for p in pledges}
    assert len(serials) == 5 and serials == {p.serial for p in pledges}
    for p in pledges:
        assert masa_url(p.cert) == "https://masa.example:8443"
        chain = verify_chain(p.cert, intermediates=list(p.chain), anchors=[root], now=NOW, role=Role.IDEVID)
        assert chain[-1] == root
    # A second run never reuses the first run's serials.
    again = generate_idevids(ca_cert=ca, ca_key=key, masa_url="https://m", count=1, now=NOW)
    assert again[0].serial not in serials


def test_idevid_dir_reads_a_pledges_dir_or_one_pledge(tmp_path: Path) -> None:
    pki = build_dev_pki(pledges=3, masa_url="https://localhost:8443", now=NOW)
    write_dev_pki(tmp_path / "pki", pki, force=False)
    all_three = load_idevid_dir(tmp_path / "pki" / "pledges")
    assert [p.serial for p in all_three] == ["PLG-000001", "PLG-000002", "PLG-000003"]
    one = load_idevid_dir(tmp_path / "pki" / "pledges" / "PLG-000002")
    assert [p.serial for p in one] == ["PLG-000002"]
    assert one[0].chain == tuple(load_certs(pki.files["pledges/PLG-000002/chain.pem"]))


def test_progress_bar_shows_count_rate_and_errors() -> None:
    out = io.StringIO()
    bar = ProgressBar(4, stream=out, width=8)
    for ok in (True, False, True, True):
        bar.add(ok)
    bar.close()
    last = out.getvalue().strip().splitlines()[-1]
    assert "4/4" in last and "errors 1" in last and "/s" in last


def test_conformance_reports_table_and_junit() -> None:
    results = [
        CaseResult(name="happy-path", section="RFC 8995 5.1", expected="ok", outcome="pass", observed="ok"),
        CaseResult(name="vr-x", section="RFC 8995 5.2", expected="403", outcome="fail", observed="200"),
        CaseResult(name="vs-y", section="RFC 8995 5.7", expected="403", outcome="skip", observed="needs 2"),
    ]
    table = format_table(results)
    assert "FAIL" in table and "3 cases: 1 passed, 1 failed, 1 skipped" in table
    root = ET.fromstring(junit_xml(results, registrar="https://r"))
    assert root.get("tests") == "3" and root.get("failures") == "1" and root.get("skipped") == "1"
    failed = root.find("testcase[@name='vr-x']/failure")
    assert failed is not None and "observed 200" in (failed.get("message") or "")


def test_conformance_report_shows_inconclusive_and_reported_cases() -> None:
    results = [
        CaseResult(name="vr-x", section="RFC 8995 5.2", expected="4xx", outcome="inconclusive", observed="403 same"),
        CaseResult(name="vs-y", section="RFC 8995 5.7", expected="any", outcome="report", observed="404"),
    ]
    table = format_table(results)
    assert "INCONCLUSIVE" in table and "REPORT" in table
    assert "2 cases: 0 passed, 0 failed, 0 skipped, 1 inconclusive, 1 reported" in table
    root = ET.fromstring(junit_xml(results, registrar="https://r"))
    assert root.get("failures") == "0" and root.get("skipped") == "1"
    skipped = root.find("testcase[@name='vr-x']/skipped")
    assert skipped is not None and (skipped.get("message") or "").startswith("inconclusive")
    out = root.find("testcase[@name='vs-y']/system-out")
    assert out is not None and out.text == "reported: 404"
    with pytest.raises(ValueError):
        CaseResult(name="z", section="s", expected="e", outcome="maybe", observed="o")


def test_written_idevids_read_back_and_the_bundle_holds_certificates_only(tmp_path: Path) -> None:
    pki = build_dev_pki(pledges=1, masa_url="https://masa.example:8443", now=NOW)
    ca = load_cert(pki.files["manufacturer/idevid-ca.crt"])
    key = load_private_key(pki.files["manufacturer/idevid-ca.key"])
    pledges = generate_idevids(ca_cert=ca, ca_key=key, masa_url="https://masa.example:8443", count=4, now=NOW)
    bundle = write_idevid_dir(pledges, tmp_path / "fleet")
    assert bundle == tmp_path / "fleet" / "idevids.pem"
    # What the MASA is handed: the certificates, in order, and no private key.
    assert b"PRIVATE KEY" not in bundle.read_bytes()
    assert load_certs(bundle.read_bytes()) == [p.cert for p in pledges]
    back = load_idevid_dir(tmp_path / "fleet")
    assert [(p.serial, p.cert, p.chain) for p in back] == [(p.serial, p.cert, p.chain) for p in pledges]
    for p in back:
        assert p.key.public_key() == p.cert.public_key()
        assert (tmp_path / "fleet" / p.serial / "idevid.key").stat().st_mode & 0o077 == 0


def test_the_run_freezes_what_was_loaded_before_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """The identities and libraries loaded before the enrolments are left out of
    the collector's walks while they run (gc.freeze), and handed back after."""
    frozen_during: list[int] = []

    async def enrolments(*_args: Any, **_kw: Any) -> list[Sample]:
        frozen_during.append(gc.get_freeze_count())
        return [Sample(True, None, {"total": 1.0})]

    monkeypatch.setattr(fleet, "run_fleet", enrolments)
    before = gc.get_freeze_count()
    samples, _wall, _cpu = fleet.run([], cast(Any, None), [], concurrency=1, progress=False)
    assert len(samples) == 1
    assert frozen_during and frozen_during[0] > before
    assert gc.get_freeze_count() == before


def test_the_run_goes_on_uvloops_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fleet's enrolments run on uvloop's loop (its bookkeeping in C, not the
    selector loop's Python); one pledge's protocol code is the same on either."""
    import uvloop

    loops: list[asyncio.AbstractEventLoop] = []

    async def enrolments(*_args: Any, **_kw: Any) -> list[Sample]:
        loops.append(asyncio.get_running_loop())
        return [Sample(True, None, {"total": 1.0})]

    monkeypatch.setattr(fleet, "run_fleet", enrolments)
    samples, _wall, _cpu = fleet.run([], cast(Any, None), [], concurrency=1, progress=False)
    assert len(samples) == 1
    assert len(loops) == 1 and isinstance(loops[0], uvloop.Loop)
