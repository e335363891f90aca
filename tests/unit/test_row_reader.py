"""RowReader: a record's column list and its row -> record mapping, declared once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from brski_storage.sqlite import RowReader, from_ts


@dataclass(frozen=True, kw_only=True)
class _Row:
    id: int
    check: str | None
    at: datetime


def test_columns_fill_fields_by_name_through_renames_and_converters() -> None:
    reader = RowReader(_Row, "things", "id, check_name, at", rename={"check_name": "check"}, at=from_ts)
    record = reader.record((7, "x.y", "2026-01-02T03:04:05.000006+00:00"))
    assert record == _Row(id=7, check="x.y", at=datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC))
    assert reader.columns == "id, check_name, at"
    assert reader.table == "things"


@pytest.mark.parametrize("columns", ["id, at, id", "id, from", "id, at-x"])
def test_columns_that_cannot_name_distinct_fields_are_refused(columns: str) -> None:
    with pytest.raises(ValueError, match="distinct fields"):
        RowReader(_Row, "things", columns)


def test_a_converter_for_a_field_not_read_is_refused() -> None:
    with pytest.raises(ValueError, match="not read"):
        RowReader(_Row, "things", "id, check, at", stamp=from_ts)
