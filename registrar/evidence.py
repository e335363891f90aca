"""The registrar's evidence: events for the hash-chained log (SP 1800-36).

An event that records a write rides with it (:func:`new_event`, passed as a
store write's ``events=``: both or neither); one that records nothing else
is appended on its own (:func:`record_event`). Refusals answered by any
handler are recorded once, by :func:`record_refusal`, from the error tree.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from brski.errors import BrskiError
from brski.pki import device_serial
from brski_storage.base import EventLog, NewEvent
from brski_web.identity import PeerIdentity

__all__ = ["new_event", "record_event", "record_refusal"]


def new_event(
    *, now: datetime, kind: str, serial: str | None, outcome: str, check: str | None, **detail: Any
) -> NewEvent:
    """An event for a store write's ``events=``: appended in the same
    transaction as the change it records (brski_storage.NewEvent)."""
    return NewEvent(
        at=now, kind=kind, device_serial=serial, outcome=outcome, check=check, detail=detail  # type: ignore[arg-type]
    )


async def record_event(
    store: EventLog, *, now: datetime, kind: str, serial: str | None, outcome: str, check: str | None, **detail: Any
) -> None:
    """An event on its own; one that records a write rides with it (:func:`new_event`)."""
    await store.append_event(
        at=now, kind=kind, device_serial=serial, outcome=outcome, check=check, detail=detail  # type: ignore[arg-type]
    )


async def record_refusal(
    store: EventLog, *, kind: str, err: BrskiError, peer: PeerIdentity, now: datetime, via: str | None = None
) -> None:
    """A refused request, by the check that refused it and the client that asked."""
    serial = err.extra.get("serial")
    if not isinstance(serial, str) and peer.leaf is not None:
        serial = device_serial(peer.leaf)
    await store.append_event(
        at=now,
        kind=kind,
        device_serial=serial if isinstance(serial, str) else None,
        # 202 (RFC 8995 5.6, the approval queue) is not a refusal: not decided yet.
        outcome="info" if err.http_status == 202 else "refuse",
        check=err.check,
        detail={
            "status": err.http_status,
            "detail": err.detail,
            "client": peer.leaf.subject.rfc4514_string() if peer.leaf is not None else None,
            # RFC 8995 4.3: came through a configured join proxy (recorded, never decided on).
            **({"via": via} if via else {}),
        },
    )
