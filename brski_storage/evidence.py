"""State evidence: the event chain vouches for the tables, not only for itself.

The hash chain (:mod:`brski_storage.chain`) proves that the *log* was not
edited; on its own it says nothing about the ``devices``, ``certificates``,
``device_approvals`` or ``vouchers`` rows next to it, so a revoked
certificate set back to ``issued`` in the SQLite file used to pass
``audit verify``. This module closes that gap without knowing any service's
event kinds:

* **Recording.** Every store write that changes a state-bearing row calls
  :func:`record_state` inside its own transaction. It reads the row's
  *facts* back with the same SQL expression the verifier uses (declared
  once, in :data:`ROW_KINDS`) and chains one ``state.recorded`` event whose
  detail lists ``[kind, key, facts]`` for each row (``facts`` null: deleted).
  The implied state is therefore a fold over events: the last facts
  recorded for each ``(kind, key)``. Services keep their own event kinds;
  they are never parsed.
* **Checkpoint.** Replaying the whole log is O(events), about ten per
  device. Instead a checkpoint folds the ``state.recorded`` events up to
  itself into the ``state_evidence`` table and chains a ``state.checkpoint``
  event holding the SHA-256 digest of that table (rows in key order) and its
  row count. Editing the snapshot changes its digest; editing the
  checkpoint event breaks the chain. A checkpoint is derived from the log
  and the previous snapshot only, never from the tables, so taking one
  cannot launder an edited row.
* **Verifying** (:func:`verify_state`) = the snapshot's digest against the
  last checkpoint (one ordered scan) + the ``state.recorded`` events after
  it folded in memory (O(changes since)) + for each kind, two indexed SQL
  anti-joins between the table and the snapshot, whose (normally empty)
  answers are reconciled with the in-memory fold. Every row that disagrees
  is named: ``changed`` (facts differ), ``missing`` (evidence says it exists,
  the table lost it) or ``unexpected`` (a row no event accounts for).
* **Baseline.** Stores created before this scheme have rows without
  evidence. When the migration that creates ``state_evidence`` runs on a
  store that already holds rows, :func:`adopt_baseline` takes the tables as
  found, chains a ``state.checkpoint`` with ``"baseline": true`` and the
  reason, and every later verify reports that the evidence starts there.
  The same function is the operator's explicit "I have checked this store,
  adopt it" (also recorded) and what the benchmark's bulk preload uses.

What a fact covers (deliberately the security-relevant columns only, so
every fact is derived in portable SQL: ``||``, ``coalesce``, ``CAST``,
``length``; blobs other than the hex of 32-byte key hashes are covered by
their length, since their bytes carry their own signatures): see
:data:`ROW_KINDS`. The SQL is plain enough to run unchanged on PostgreSQL
except :data:`HEX` (``upper(encode(x, 'hex'))`` there), and the snapshot
digest needs the key order to be byte order (``COLLATE "C"`` there).
"""

from __future__ import annotations

import functools
import hashlib
import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from brski_storage.records import NewEvent

__all__ = [
    "CHECKPOINT_EVENT",
    "RECORDED_EVENT",
    "ROW_KINDS",
    "RowKind",
    "StateDisagreement",
    "StateReport",
    "adopt_baseline",
    "checkpoint_state",
    "record_state",
    "verify_state",
]

RECORDED_EVENT = "state.recorded"
CHECKPOINT_EVENT = "state.checkpoint"
#: SQLite's spelling; the PostgreSQL port uses ``upper(encode({}, 'hex'))``.
HEX = "hex({})"

Problem = Literal["changed", "missing", "unexpected", "snapshot-edited", "no-checkpoint"]


@dataclass(frozen=True, kw_only=True)
class RowKind:
    """One table whose rows the log vouches for.

    ``facts`` are (label, SQL expression) pairs; each becomes
    ``label=<length>:<text>`` (or ``label=-`` for NULL), joined by spaces, so
    no two different rows share a facts string whatever their text holds.
    Expressions that are not TEXT columns are listed in ``cast`` and go
    through ``CAST(... AS TEXT)`` (PostgreSQL has no length(integer));
    the TEXT columns skip it, which is a third of the cost at 10^6 rows.
    """

    name: str
    table: str
    key_column: str
    int_key: bool
    facts: tuple[tuple[str, str], ...]
    cast: frozenset[str] = frozenset()

    @property
    def key_sql(self) -> str:
        return f"CAST({self.key_column} AS TEXT)" if self.int_key else self.key_column

    @functools.cached_property
    def facts_sql(self) -> str:
        parts = []
        for label, expr in self.facts:
            text = f"CAST({expr} AS TEXT)" if label in self.cast else expr
            parts.append(f"'{label}=' || coalesce(length({text}) || ':' || {text}, '-')")
        return " || ' ' || ".join(parts)

    def key_param(self, key: str) -> int | str:
        return int(key) if self.int_key else key

    @functools.cached_property
    def select_facts(self) -> str:
        """One row's facts by key: what :func:`record_state` reads after a change."""
        return f"SELECT {self.facts_sql} FROM {self.table} WHERE {self.key_column} = ?"


def _kinds(*kinds: RowKind) -> dict[str, RowKind]:
    return {k.name: k for k in kinds}


ROW_KINDS: dict[str, dict[str, RowKind]] = {
    "registrar": _kinds(
        RowKind(name="device", table="devices", key_column="serial", int_key=False,
                facts=(("state", "state"), ("idevid", "idevid_fingerprint"))),
        RowKind(name="certificate", table="certificates", key_column="cert_serial", int_key=False,
                facts=(("device", "device_serial"), ("state", "state"), ("not_after", "not_after"),
                       ("revoked_at", "revoked_at"), ("reason", "revocation_reason"))),
        RowKind(name="approval", table="device_approvals", key_column="serial", int_key=False,
                facts=(("decision", "decision"), ("by", "decided_by"))),
        RowKind(name="voucher", table="vouchers", key_column="id", int_key=True,
                facts=(("serial", "serial"), ("assertion", "assertion"), ("bytes", "length(voucher)")),
                cast=frozenset({"bytes"})),
        RowKind(name="pin", table="pinned_manufacturers", key_column="issuer", int_key=False,
                facts=(("spki", HEX.format("spki_sha256")),)),
    ),
    "masa": _kinds(
        RowKind(name="device", table="devices", key_column="serial", int_key=False,
                facts=(("idevid", "idevid_fingerprint"),)),
        RowKind(name="owner", table="owners", key_column="id", int_key=True,
                facts=(("serial", "serial"), ("domain_ca", HEX.format("domain_ca_spki_sha256")))),
        RowKind(name="voucher", table="vouchers", key_column="id", int_key=True,
                facts=(("serial", "serial"), ("assertion", "assertion"),
                       ("domain_ca", HEX.format("domain_ca_spki_sha256")), ("bytes", "length(voucher)")),
                cast=frozenset({"bytes"})),
        RowKind(name="audit", table="audit_log", key_column="id", int_key=True,
                facts=(("serial", "serial"), ("at", "at"), ("domain", "domain_id"),
                       ("assertion", "assertion"), ("truncated", "truncated")),
                cast=frozenset({"truncated"})),
    ),
}


@dataclass(frozen=True, kw_only=True)
class StateDisagreement:
    """One row the tables and the evidence disagree on (or the snapshot itself)."""

    problem: Problem
    kind: str
    table: str
    key: str
    expected: str | None = None  # the facts the evidence implies (None: no such row)
    found: str | None = None  # the facts the table holds (None: no such row)

    def describe(self) -> str:
        if self.problem == "changed":
            return f"{self.table} row {self.key!r}: evidence says [{self.expected}], table has [{self.found}]"
        if self.problem == "missing":
            return f"{self.table} row {self.key!r}: missing; evidence says [{self.expected}]"
        if self.problem == "unexpected":
            return f"{self.table} row {self.key!r}: [{self.found}] is not accounted for by any event"
        return f"{self.table}: {self.expected}"

    def as_json(self) -> dict[str, Any]:
        return {"problem": self.problem, "kind": self.kind, "table": self.table, "key": self.key,
                "expected": self.expected, "found": self.found, "text": self.describe()}


@dataclass(frozen=True, kw_only=True)
class StateReport:
    """What :func:`verify_state` found; renders as JSON for the admin API and console."""

    ok: bool
    checkpoint_id: int | None
    checkpoint_baseline: bool
    checkpoint_reason: str | None
    snapshot_rows: int
    events_replayed: int
    rows_checked: dict[str, int] = field(default_factory=dict)
    disagreements: tuple[StateDisagreement, ...] = ()

    def lines(self) -> list[str]:
        return [d.describe() for d in self.disagreements]

    def as_json(self, *, limit: int | None = None) -> dict[str, Any]:
        shown = self.disagreements if limit is None else self.disagreements[:limit]
        return {
            "ok": self.ok,
            "checkpoint_id": self.checkpoint_id,
            "baseline": self.checkpoint_baseline,
            "baseline_reason": self.checkpoint_reason,
            "snapshot_rows": self.snapshot_rows,
            "events_replayed": self.events_replayed,
            "rows_checked": dict(self.rows_checked),
            "disagreement_count": len(self.disagreements),
            "disagreements": [d.as_json() for d in shown],
        }


# --- recording ----------------------------------------------------------------------


def row_facts(conn: sqlite3.Connection, kind: RowKind, key: str) -> str | None:
    row = conn.execute(kind.select_facts, (kind.key_param(key),)).fetchone()
    return None if row is None else str(row[0])


def record_state(
    conn: sqlite3.Connection, role: str, rows: Sequence[tuple[str, str | int]], *,
    at: str, device_serial: str | None,
) -> None:
    """Chain one ``state.recorded`` event with the current facts of ``rows``.

    Must run inside the write transaction that changed them, after the
    change, so the evidence and the rows commit (or roll back) together.
    ``at`` is in the chain's spelling already (``to_ts``, ``sqlite_now``).
    """
    from brski_storage.sqlite_events import PreparedEvent

    kinds = ROW_KINDS[role]
    facts: list[list[str | None]] = []
    seen: set[tuple[str, str]] = set()
    for name, raw_key in rows:
        key = str(raw_key)
        if (name, key) in seen:
            continue
        seen.add((name, key))
        facts.append([name, key, row_facts(conn, kinds[name], key)])
    # ``at`` is already the chain's spelling (brski_storage.chain.event_time_text).
    PreparedEvent.of_store(at=at, kind=RECORDED_EVENT, device_serial=device_serial, detail={"rows": facts}).chain(conn)


# --- reading the evidence -------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class _Checkpoint:
    id: int
    digest: str
    rows: int
    baseline: bool
    reason: str | None


def _last_checkpoint(conn: sqlite3.Connection) -> _Checkpoint | None:
    row = conn.execute(
        "SELECT id, detail FROM events WHERE kind = ? ORDER BY id DESC LIMIT 1", (CHECKPOINT_EVENT,)
    ).fetchone()
    if row is None:
        return None
    detail = json.loads(row[1])
    return _Checkpoint(id=int(row[0]), digest=str(detail.get("digest", "")), rows=int(detail.get("rows", -1)),
                       baseline=bool(detail.get("baseline", False)), reason=detail.get("reason"))


def _snapshot_digest(conn: sqlite3.Connection) -> tuple[str, int]:
    """SHA-256 over the snapshot in key order, key and facts length-prefixed
    (in characters) so the encoding is unambiguous; hashed in batches, since
    at 10^6 rows fetching dominates and per-row hashing calls doubled it."""
    digest = hashlib.sha256()
    count = 0
    cur = conn.execute("SELECT kind, row_key, facts FROM state_evidence ORDER BY kind, row_key")
    while batch := cur.fetchmany(10_000):
        digest.update("".join([f"{k}\0{len(r)}:{r}{len(f)}:{f}" for k, r, f in batch]).encode("utf-8"))
        count += len(batch)
    return digest.hexdigest(), count


def _fold(conn: sqlite3.Connection, after_id: int) -> tuple[dict[tuple[str, str], str | None], int, int]:
    """The ``state.recorded`` events after ``after_id``: last facts per row, count, last id."""
    overlay: dict[tuple[str, str], str | None] = {}
    count = 0
    last = after_id
    for event_id, detail in conn.execute(
        "SELECT id, detail FROM events WHERE kind = ? AND id > ? ORDER BY id", (RECORDED_EVENT, after_id)
    ):
        for name, key, facts in json.loads(detail)["rows"]:
            overlay[(name, key)] = facts
        count += 1
        last = event_id
    return overlay, count, last


def verify_state(conn: sqlite3.Connection, role: str) -> StateReport:
    """Compare every evidenced table with the state the log implies (one read snapshot)."""
    kinds = ROW_KINDS[role]
    checkpoint = _last_checkpoint(conn)
    problems: list[StateDisagreement] = []
    digest, snapshot_rows = _snapshot_digest(conn)
    if checkpoint is None:
        if snapshot_rows:
            problems.append(StateDisagreement(
                problem="no-checkpoint", kind="snapshot", table="state_evidence", key="",
                expected=f"{snapshot_rows} snapshot rows but no {CHECKPOINT_EVENT} event vouches for them"))
    elif (digest, snapshot_rows) != (checkpoint.digest, checkpoint.rows):
        problems.append(StateDisagreement(
            problem="snapshot-edited", kind="snapshot", table="state_evidence", key="",
            expected=(f"snapshot does not match checkpoint event {checkpoint.id} "
                      f"({snapshot_rows} rows, digest {digest[:16]}..; the event says {checkpoint.rows} rows, "
                      f"{checkpoint.digest[:16]}..)")))
    overlay, replayed, _ = _fold(conn, checkpoint.id if checkpoint else 0)
    checked: dict[str, int] = {}
    for kind in kinds.values():
        # table rows whose facts differ from the snapshot, or that it lacks
        differ: dict[str, tuple[str | None, str | None]] = {}
        for key, found, snap in conn.execute(
            f"SELECT {kind.key_sql}, {kind.facts_sql}, e.facts FROM {kind.table} LEFT JOIN state_evidence e"
            f" ON e.kind = ? AND e.row_key = {kind.key_sql} WHERE e.facts IS NULL OR e.facts <> ({kind.facts_sql})",
            (kind.name,),
        ):
            differ[key] = (found, snap)
        target = "CAST(e.row_key AS INTEGER)" if kind.int_key else "e.row_key"
        for key, snap in conn.execute(
            f"SELECT e.row_key, e.facts FROM state_evidence e WHERE e.kind = ? AND NOT EXISTS"
            f" (SELECT 1 FROM {kind.table} t WHERE t.{kind.key_column} = {target})",
            (kind.name,),
        ):
            differ[key] = (None, snap)
        checked[kind.table] = int(conn.execute(f"SELECT count(*) FROM {kind.table}").fetchone()[0])
        keys = set(differ) | {key for (name, key) in overlay if name == kind.name}
        for key in sorted(keys):
            if (kind.name, key) in overlay:
                expected = overlay[(kind.name, key)]
                found = differ[key][0] if key in differ else row_facts(conn, kind, key)
            else:
                found, expected = differ[key]
            if found == expected:
                continue
            problem: Problem = "changed" if found is not None and expected is not None else (
                "missing" if found is None else "unexpected")
            problems.append(StateDisagreement(problem=problem, kind=kind.name, table=kind.table, key=key,
                                              expected=expected, found=found))
    return StateReport(
        ok=not problems,
        checkpoint_id=checkpoint.id if checkpoint else None,
        checkpoint_baseline=bool(checkpoint and checkpoint.baseline),
        checkpoint_reason=checkpoint.reason if checkpoint else None,
        snapshot_rows=snapshot_rows,
        events_replayed=replayed,
        rows_checked=checked,
        disagreements=tuple(problems),
    )


# --- writing checkpoints -------------------------------------------------------------------


def _chain_checkpoint(conn: sqlite3.Connection, *, at: datetime, detail: dict[str, Any]) -> int:
    from brski_storage.sqlite_events import PreparedEvent

    digest, rows = _snapshot_digest(conn)
    event = NewEvent(at=at, kind=CHECKPOINT_EVENT, device_serial=None, outcome="info", check=None,
                     detail={**detail, "digest": digest, "rows": rows})
    return PreparedEvent(event).insert(conn).id


def checkpoint_state(conn: sqlite3.Connection, *, at: datetime, expect_checkpoint: int | None) -> int | None:
    """Fold the ``state.recorded`` events since the last checkpoint into the
    snapshot and chain a new checkpoint; returns its event id (None: nothing new).

    ``expect_checkpoint`` is the checkpoint the caller's verify found the
    snapshot consistent with; if another checkpoint was taken since, this
    one is skipped rather than built on a snapshot nobody verified. Runs in
    the writer transaction.
    """
    current = _last_checkpoint(conn)
    if (current.id if current else None) != expect_checkpoint:
        return None
    overlay, count, _ = _fold(conn, current.id if current else 0)
    if not count:
        return None
    for (name, key), facts in overlay.items():
        if facts is None:
            conn.execute("DELETE FROM state_evidence WHERE kind = ? AND row_key = ?", (name, key))
        else:
            conn.execute(
                "INSERT INTO state_evidence (kind, row_key, facts) VALUES (?, ?, ?)"
                " ON CONFLICT (kind, row_key) DO UPDATE SET facts = excluded.facts",
                (name, key, facts),
            )
    return _chain_checkpoint(conn, at=at, detail={
        "previous": current.id if current else None, "folded_events": count, "baseline": False})


def adopt_baseline(conn: sqlite3.Connection, role: str, *, at: datetime, reason: str) -> int:
    """Take the tables as found as the evidence, recorded as a baseline checkpoint.

    For stores that predate state evidence (run by the migration's first
    open) and for an operator who has checked a store by other means. The
    event names the reason and every later verify reports the baseline.
    """
    conn.execute("DELETE FROM state_evidence")
    for kind in ROW_KINDS[role].values():
        conn.execute(
            f"INSERT INTO state_evidence (kind, row_key, facts) SELECT ?, {kind.key_sql}, {kind.facts_sql}"
            f" FROM {kind.table}",
            (kind.name,),
        )
    previous = _last_checkpoint(conn)
    return _chain_checkpoint(conn, at=at, detail={
        "previous": previous.id if previous else None, "baseline": True, "reason": reason})


def has_evidenced_rows(conn: sqlite3.Connection, role: str) -> bool:
    return any(
        conn.execute(f"SELECT 1 FROM {kind.table} LIMIT 1").fetchone() is not None
        for kind in ROW_KINDS[role].values()
    )

