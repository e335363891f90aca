"""The event log as an auditor takes it away: JSON Lines or CSV, with hashes.

One definition for ``brski registrar|masa audit export`` and the consoles'
download, so both give byte-identical files for the same selection. Each
event carries its ``prev_hash`` and ``hash`` so an export can be checked on
its own (:mod:`brski_storage.chain`).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any, Literal

from brski_storage.base import EventLog, EventRecord
from brski_storage.chain import event_time_text

__all__ = ["EXPORT_FIELDS", "ExportFormat", "all_events", "event_json", "export_header", "export_line"]

ExportFormat = Literal["jsonl", "csv"]
EXPORT_FIELDS = ["id", "at", "kind", "device_serial", "outcome", "check", "detail", "prev_hash", "hash"]


def event_json(e: EventRecord) -> dict[str, Any]:
    return {
        "id": e.id,
        # Exactly the text the chain hashed, so an export re-verifies on its own.
        "at": event_time_text(e.at),
        "kind": e.kind,
        "device_serial": e.device_serial,
        "outcome": e.outcome,
        "check": e.check,
        "detail": dict(e.detail),
        "prev_hash": e.prev_hash.hex(),
        "hash": e.hash.hex(),
    }


async def all_events(
    store: EventLog, *, device: str | None = None, since: datetime | None = None, until: datetime | None = None
) -> AsyncIterator[EventRecord]:
    """Every event in id order, paged, optionally about one device and in [since, until)."""
    last = 0
    while True:
        page = await store.events(since_id=last, device_serial=device, limit=1000)
        if not page:
            return
        for e in page:
            if (since is None or e.at >= since) and (until is None or e.at < until):
                yield e
        last = page[-1].id


def _csv(row: list[Any]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(row)
    return buf.getvalue()


def export_header(fmt: ExportFormat) -> str:
    return _csv(EXPORT_FIELDS) if fmt == "csv" else ""


def export_line(e: EventRecord, fmt: ExportFormat) -> str:
    record = event_json(e)
    if fmt == "csv":
        record["detail"] = json.dumps(record["detail"], sort_keys=True, separators=(",", ":"))
        return _csv([record[k] for k in EXPORT_FIELDS])
    return json.dumps(record, sort_keys=True) + "\n"
