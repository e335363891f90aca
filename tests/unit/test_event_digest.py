"""The stored event's hash is computed once, by splicing the canonical detail
into the row's JSON (brski_storage.chain.event_hash_of_text, which
PreparedEvent.digest calls); it must be byte for byte the hash
:func:`brski_storage.chain.event_hash` gives, the one every verifier and export
recomputes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from brski_storage.chain import GENESIS, event_hash
from brski_storage.records import NewEvent
from brski_storage.sqlite import from_ts, to_ts
from brski_storage.sqlite_events import PreparedEvent

T0 = datetime(2026, 12, 3, 8, 0, 0, tzinfo=UTC)

EVENTS: list[dict[str, Any]] = [
    {"kind": "credential.issued", "device_serial": "PLG-000001", "outcome": "allow", "check": "registrar.issue",
     "detail": {"cert_serial": "ab" * 16, "renews": None, "n": 3, "ok": True, "x": 1.5}},
    {"kind": "state.recorded", "device_serial": None, "outcome": "info", "check": None,
     "detail": {"rows": [["device", "P-1", "state=10:discovered idevid=2:aa"], ["certificate", "0a", None]]}},
    {"kind": "k\u00e9 \"quoted\" \\ back\nslash\t\u2028", "device_serial": "S\u00fc\u00df-\U0001f512",
     "outcome": "refuse", "check": "check/with</script>", "detail": {"z": {"b": [1, {"a": "\x00\x1f"}]}, "a": ""}},
    {"kind": "e", "device_serial": "", "outcome": "info", "check": "", "detail": {}},
]


@pytest.mark.parametrize("fields", EVENTS, ids=range(len(EVENTS)))
@pytest.mark.parametrize("at", [T0, T0 + timedelta(microseconds=7), datetime(2026, 12, 3, 9, 0, tzinfo=timezone(timedelta(hours=1)))])
def test_the_spliced_digest_is_event_hash(fields: dict[str, Any], at: datetime) -> None:
    prepared = PreparedEvent(NewEvent(at=at, **fields))
    for prev in (GENESIS, bytes(range(32))):
        assert prepared.digest(prev) == event_hash(prev, at=to_ts(at), **fields)


def test_a_store_event_is_the_event_it_stands_for() -> None:
    ts = to_ts(T0 + timedelta(microseconds=1))
    detail = {"rows": [["device", "P-1", "state=10:discovered"]]}
    direct = PreparedEvent.of_store(at=ts, kind="state.recorded", device_serial="P-1", detail=detail)
    full = PreparedEvent(NewEvent(at=from_ts(ts), kind="state.recorded", device_serial="P-1", outcome="info",
                                  check=None, detail=detail))
    assert direct.values(GENESIS, b"h") == full.values(GENESIS, b"h")
    assert direct.digest(GENESIS) == full.digest(GENESIS)
