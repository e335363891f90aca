"""Bulk registration of manufactured devices (``MasaStore.add_manufactured_devices``),
on each engine: one commit per batch, the single-device rules per pair, and
state evidence that still vouches for every row.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from brski_storage import MasaStore, open_masa_store
from brski_storage.sqlite_masa import SqliteMasaStore
from brski_storage.writer import GroupCommitWriter

AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def _commits(store: MasaStore) -> int:
    """COMMITs the store's writer has made (both engines share the writer)."""
    assert isinstance(store, SqliteMasaStore) and isinstance(store.database, GroupCommitWriter)
    return store.database.commits


async def test_bulk_import_is_one_commit_and_follows_the_device_rules(
    new_store_url: Callable[[str], str],
) -> None:
    async with await open_masa_store(new_store_url("masa")) as masa:
        await masa.add_manufactured_device("M-0", idevid_fingerprint="f0", at=AT)
        before = _commits(masa)
        pairs = [(f"M-{i}", f"f{i}") for i in range(1, 501)]
        result = await masa.add_manufactured_devices([("M-0", "f0"), *pairs], at=AT)
        assert _commits(masa) - before == 1
        assert (result.added, result.already_known, result.conflicts) == (500, 1, ())
        assert await masa.count_devices() == 501

        # Again, with one serial now claiming another IDevID: that one is left
        # as it was and named; the rest of the batch is already known.
        again = await masa.add_manufactured_devices([("M-7", "other"), *pairs[:3]], at=AT)
        assert (again.added, again.already_known, again.conflicts) == (0, 3, ("M-7",))
        device = await masa.get_manufactured_device("M-7")
        assert device is not None and device.idevid_fingerprint == "f7"

        # The same serial twice in one batch: the first IDevID wins, the second is named.
        twice = await masa.add_manufactured_devices([("N-1", "a"), ("N-1", "a"), ("N-1", "b")], at=AT)
        assert (twice.added, twice.already_known, twice.conflicts) == (1, 1, ("N-1",))

        # Each device carries its own state evidence, as a single add does.
        report = await masa.verify_state()
        assert report.ok, report.lines()
        assert [e.kind for e in await masa.events(device_serial="M-250")] == ["state.recorded"]
