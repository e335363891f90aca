"""The store against its own evidence: at start-up, in ``audit verify``, in the admin API.

Both roles run the same check (:mod:`brski_storage.evidence` explains the
evidence itself):

* ``audit verify`` and the admin API walk the *whole* chain, then compare
  every evidenced table with the state the log implies; :func:`audit_report`
  is the one structured answer (the admin API's JSON, a console page).
* At start-up (:func:`check_store_evidence`) the chain is walked only from
  the last checkpoint (the state check needs exactly those events to be
  genuine; the full walk stays with ``audit verify``), so starting on a
  store of 10^6 devices costs one pass over the tables, not over the log.
  A disagreement refuses to serve (exit 2, check ``audit.store-inconsistent``)
  unless ``allow_inconsistent`` / ``--allow-inconsistent`` is set, which is
  logged and recorded as an event. Serving on an edited store would answer
  for certificates, approvals and owners no decision of ours produced.
* After a check whose chain is intact the server takes a checkpoint, so the
  next start-up replays only what happened since.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from brski.errors import ConfigError
from brski_storage import ChainReport, EventLog, StateReport
from brski_web.logs import kv

__all__ = ["AuditReport", "audit_report", "check_store_evidence", "checkpoint_after"]

log = logging.getLogger("brski.evidence")

#: Disagreements written into the refusal event and the error (all are
#: printed by ``audit verify``); bounded so a wholly foreign store cannot
#: produce a megabyte event.
SHOWN = 50


@dataclass(frozen=True, kw_only=True)
class AuditReport:
    """The chain and the state verdicts together, as one renderable object."""

    chain: ChainReport
    state: StateReport

    @property
    def ok(self) -> bool:
        return self.chain.ok and self.state.ok

    def as_json(self, *, limit: int | None = 1000) -> dict[str, Any]:
        c = self.chain
        return {
            "ok": self.ok,
            "chain_ok": c.ok,
            "count": c.count,
            "problem": c.problem,
            "first_bad_id": c.first_bad_id,
            "detail": c.detail,
            "head_id": c.head_id,
            "head_hash": c.head_hash.hex() if c.head_hash else None,
            "state": self.state.as_json(limit=limit),
        }


async def audit_report(store: EventLog) -> AuditReport:
    """Full chain walk + state comparison (``audit verify``, admin API)."""
    return AuditReport(chain=await store.verify_event_chain(), state=await store.verify_state())


def state_summary(state: StateReport) -> str:
    if state.checkpoint_id is None:
        basis = "replayed from the first event"
    else:
        basis = f"checkpoint event {state.checkpoint_id} ({state.snapshot_rows} rows)"
        if state.checkpoint_baseline:
            basis += f", a BASELINE adopted without evidence: {state.checkpoint_reason}"
    checked = ", ".join(f"{table} {n}" for table, n in state.rows_checked.items())
    return f"{checked} checked against {basis} + {state.events_replayed} state event(s) since"


async def checkpoint_after(store: EventLog, report: AuditReport | ChainReport, state: StateReport,
                           *, now: datetime) -> int | None:
    """Fold the replayed events into a new checkpoint when the chain held.

    Derived from the log and the verified snapshot only, so it is safe even
    when the tables disagree (they go on disagreeing with the new snapshot).
    """
    chain = report.chain if isinstance(report, AuditReport) else report
    if not chain.ok or any(d.problem in ("snapshot-edited", "no-checkpoint") for d in state.disagreements):
        return None
    return await store.checkpoint_state(at=now, expect_checkpoint=state.checkpoint_id)


async def check_store_evidence(store: EventLog, *, role: str, now: datetime, allow_inconsistent: bool) -> None:
    """At start-up: refuse to serve on a store its own evidence contradicts."""
    chain = await store.verify_event_chain_since_checkpoint()
    state = await store.verify_state()
    lines = [] if chain.ok else [
        f"event log {chain.problem} at event {chain.first_bad_id}: {chain.detail}"]
    lines += state.lines()
    if state.checkpoint_baseline:
        log.info(kv("state-evidence-baseline", checkpoint=state.checkpoint_id, reason=state.checkpoint_reason))
    if lines:
        await store.append_event(
            at=now, kind="audit.store-inconsistent", device_serial=None,
            outcome="info" if allow_inconsistent else "refuse", check="audit.store-inconsistent",
            detail={"problems": lines[:SHOWN], "count": len(lines), "allowed": allow_inconsistent},
        )
        if not allow_inconsistent:
            more = f" (and {len(lines) - SHOWN} more; `brski {role} audit verify` lists all)" if len(lines) > SHOWN else ""
            raise ConfigError(
                f"the {role} store disagrees with its own event log; refusing to serve"
                f" [check audit.store-inconsistent]: {'; '.join(lines[:SHOWN])}{more}. Restore the store,"
                " or start with --allow-inconsistent to serve on it as it is (logged and recorded)",
                check="audit.store-inconsistent",
            )
        log.warning(kv("store-inconsistent-allowed", problems=len(lines), first=lines[0]))
    else:
        log.info(kv("store-evidence-ok", summary=state_summary(state)))
    await checkpoint_after(store, chain, state, now=now)
