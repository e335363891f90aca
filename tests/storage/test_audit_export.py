"""`audit export` writes what the chain hashed, so an export re-verifies alone.

The chain hashes ``at`` as ISO 8601 with microseconds; ``isoformat()``
drops ``.000000`` at a whole second, which would make such an event fail to
re-verify from the export. Both roles share the exporter.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from brski_cli import main as brski
from brski_storage import NewEvent
from brski_storage.chain import GENESIS, event_hash
from tests.storage_helpers import with_events

WHOLE_SECOND = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


EVENTS = [
    NewEvent(at=at, kind=f"k{i}", device_serial="DEV-1", outcome="info", check=None, detail={"i": i})
    for i, at in enumerate((WHOLE_SECOND, WHOLE_SECOND + timedelta(microseconds=7), WHOLE_SECOND + timedelta(seconds=1)))
]


def _reverify(records: list[dict[str, Any]]) -> None:
    """Recompute every hash from the exported fields only."""
    prev = GENESIS
    for r in records:
        assert bytes.fromhex(r["prev_hash"]) == prev
        digest = event_hash(prev, at=r["at"], kind=r["kind"], device_serial=r["device_serial"] or None,
                            outcome=r["outcome"], check=r["check"] or None, detail=r["detail"])
        assert digest.hex() == r["hash"], r
        prev = digest


@pytest.mark.parametrize("role", ["registrar", "masa"])
def test_export_at_whole_second_reverifies(
    new_store_url: Callable[[str], str], capsys: pytest.CaptureFixture[str], role: str
) -> None:
    url = with_events(new_store_url(role), role, EVENTS)
    assert brski([role, "audit", "export", "--database", url, "--format", "jsonl"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert records[0]["at"] == "2026-03-01T12:00:00.000000+00:00"
    _reverify(records)
    assert brski([role, "audit", "export", "--database", url, "--format", "csv"]) == 0
    table = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    _reverify([{**r, "detail": json.loads(r["detail"])} for r in table])
