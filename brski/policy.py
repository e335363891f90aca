"""Who may claim and join: pure policy decisions, one rule name each.

Servers gather the facts (owner records, prior claims, configured lists) and
ask these functions; the returned :class:`Decision` names the rule that
decided, and that name is what gets stored in the event log, so an auditor
can see why every device was let in or kept out (SP 1800-36 evidence).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

__all__ = ["Decision", "masa_ownership"]


@dataclass(frozen=True, kw_only=True)
class Decision:
    allow: bool
    rule: str
    detail: str
    # For an allowed claim: whether it creates the owner record (first use).
    record_owner: bool = False


def masa_ownership(
    *,
    mode: str,
    domain: bytes,
    owners: Collection[bytes],
    nonceless: bool,
) -> Decision:
    """May the registrar domain ``domain`` (its pinned cert's SPKI hash) claim the device?

    ``open``: the first domain to claim a device becomes its owner and later
    claims by other domains are refused (the claim is logged either way).
    ``sales-records``: only domains in the owner records may claim.
    Nonceless vouchers (RFC 8995 sections 5.5.4 and 7.4.1) outlive the
    pledge's nonce check, so they need an explicit owner record whatever the
    mode: "first use" is not proof of ownership for an offline voucher.
    """
    is_owner = domain in owners
    if nonceless and not is_owner:
        return Decision(
            allow=False,
            rule="masa.nonceless-needs-owner-record",
            detail="a nonceless voucher needs an owner record for this domain",
        )
    if mode == "sales-records":
        if is_owner:
            return Decision(allow=True, rule="masa.sales-record", detail="domain is the recorded owner")
        return Decision(allow=False, rule="masa.not-owner", detail="domain is not the recorded owner of this device")
    if mode == "open":
        if is_owner:
            return Decision(allow=True, rule="masa.open.owner", detail="domain already owns the device")
        if owners:
            return Decision(
                allow=False,
                rule="masa.open.claimed-by-other",
                detail="device was first claimed by another domain",
            )
        return Decision(allow=True, rule="masa.open.first-claim", detail="first claim: domain recorded as owner", record_owner=True)
    return Decision(allow=False, rule="masa.policy-unknown", detail=f"unknown ownership mode {mode!r}")
