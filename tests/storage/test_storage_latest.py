"""The registrar's "latest" lookups (one row through the per-device index).

The enrolment gate reviews the most recent audit log and the audit-log fetch
uses the most recent voucher-request; both must agree with the full lists,
and must not see another device's rows.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from brski_storage import RegistrarStore

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
async def store(store: RegistrarStore) -> RegistrarStore:
    """The shared store (tests/storage_helpers.py) with its devices."""
    for serial in ("P-1", "P-2"):
        await store.upsert_device(serial, idevid_issuer="CN=m", idevid_fingerprint=serial, manufacturer="m", at=T0)
    return store


async def test_latest_voucher_request_and_audit_log(store: RegistrarStore) -> None:
    assert await store.latest_voucher_request("P-1") is None
    assert await store.latest_audit_log("P-1") is None
    for i in range(3):
        for serial in ("P-1", "P-2"):
            await store.add_voucher_request(
                serial=serial, nonce=bytes([i]), pledge_request=f"{serial}-{i}".encode(),
                registrar_request=None if i == 2 else b"rvr", media_type="m", received_at=T0 + timedelta(seconds=i),
            )
            await store.add_audit_log(serial=serial, fetched_at=T0 + timedelta(seconds=i), body=f"{serial}-{i}".encode())
    vr = await store.latest_voucher_request("P-1")
    assert vr == (await store.voucher_requests("P-1"))[-1]
    assert vr is not None and vr.pledge_request == b"P-1-2" and vr.registrar_request is None
    log = await store.latest_audit_log("P-2")
    assert log == (await store.audit_logs("P-2"))[-1]
    assert log is not None and log.body == b"P-2-2"
    assert await store.latest_audit_log("NOPE") is None
