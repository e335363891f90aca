"""Operator actions on a device, one implementation for every channel.

The admin API (/admin/v1), the web console (/console/) and, for approvals,
the command line call these, so an action taken in a browser is the same
store write, the same events naming the admin and the same CRL publication
as one taken with curl. Each returns what the caller shows; refusals are
BrskiErrors naming the check.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

from brski.crl import REASONS
from brski.errors import MalformedInput, NotFound
from brski_storage.base import (
    ApprovalDecision,
    ApprovalRecord,
    CertificateRecord,
    RegistrarStore,
)
from brski_web.console import verify_audit
from registrar.revocation import RevocationPublisher, decommission_device, revoke_device

__all__ = ["REASON_CHOICES", "decide_approval", "decommission", "revoke", "verify_audit"]

# RFC 5280 5.3.1 reason codes an operator may pick (brski.crl names them once).
REASON_CHOICES = tuple(sorted(REASONS))


async def decide_approval(
    store: RegistrarStore, serial: str, *, decision: ApprovalDecision, now: datetime, by: str,
    reason: str | None = None, require_device: bool = False,
) -> ApprovalRecord:
    """RFC 8995 5.6 approval queue: the operator's decision, read by the running server.

    ``require_device``: refuse a serial the registrar has never seen (the
    console acts on devices it lists; the CLI may pre-approve a serial).
    """
    if decision not in ("approved", "rejected"):
        raise MalformedInput(f"decision must be approved or rejected, not {decision!r}", check="admin.body")
    if require_device and await store.get_device(serial) is None:
        raise NotFound(f"unknown device {serial!r}", check="admin.unknown-device", serial=serial)
    rec = await store.decide_approval(serial, decision=decision, at=now, by=by, reason=reason)
    # Every admission decision is an event with the rule that made it.
    await store.append_event(
        at=now, kind="admission.operator", device_serial=serial,
        outcome="allow" if decision == "approved" else "refuse",
        check=f"registrar.approval-{decision}", detail={"by": by, "reason": reason},
    )
    return rec


async def _lifecycle(
    op: Callable[..., Awaitable[list[CertificateRecord]]], kind: str, check: str, store: RegistrarStore,
    publisher: RevocationPublisher, serial: str, *, reason: str | None, now: datetime, admin: str,
) -> list[CertificateRecord]:
    revoked = await op(store, serial, reason=reason, now=now, actor=admin)
    await store.append_event(
        at=now, kind=kind, device_serial=serial, outcome="allow", check=check,
        detail={"admin": admin, "reason": reason, "certificates": [c.cert_serial for c in revoked]},
    )
    await publisher.crl_der(now=now)  # publish at once
    return revoked


async def revoke(
    store: RegistrarStore, publisher: RevocationPublisher, serial: str, *, reason: str | None, now: datetime, admin: str
) -> list[CertificateRecord]:
    """Revoke every issued LDevID of the device and publish a new CRL at once."""
    return await _lifecycle(revoke_device, "admin.revoked", "admin.revoke", store, publisher, serial, reason=reason, now=now, admin=admin)


async def decommission(
    store: RegistrarStore, publisher: RevocationPublisher, serial: str, *, reason: str | None, now: datetime, admin: str
) -> list[CertificateRecord]:
    """Retire the device (its LDevIDs revoked) and publish a new CRL at once."""
    return await _lifecycle(
        decommission_device, "admin.decommissioned", "admin.decommission", store, publisher, serial, reason=reason, now=now, admin=admin
    )
