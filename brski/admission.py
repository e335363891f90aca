"""Who may claim and join: pure admission decisions, one rule name each.

Servers gather the facts (owner records, prior claims, configured lists,
the operator's approval, the MASA audit log) and ask these functions; the
returned :class:`Decision` names the rule that decided, and that name is
what gets stored in the event log, so an auditor can see why every device
was let in or kept out (SP 1800-36 evidence). Nothing here does I/O or reads
a clock.

:func:`decide_voucher_request` is the registrar's whole answer to a verified
voucher-request (RFC 8995 5.3-5.6) as a :data:`VoucherRequestPlan`: forward it
to the MASA, park it for an operator (202), or refuse it, together with every
state change and event the answer implies, which the registrar commits in
one transaction before it calls the MASA.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any

from brski.auditlog import AuditEvent
from brski.errors import BrskiError, Forbidden, PolicyRefused
from brski.lifecycle import BLOCKED, DeviceState, LifecycleEvent, next_state
from brski.voucher import Assertion, VoucherRequest

__all__ = [
    "AUDIT_OTHER_DOMAINS",
    "MANUFACTURER_POLICIES",
    "UNLISTED_DEVICE_POLICIES",
    "Decision",
    "Forward",
    "Park",
    "PlannedEvent",
    "Refuse",
    "Transition",
    "VoucherRequestFacts",
    "VoucherRequestPlan",
    "audit_log_review",
    "decide_voucher_request",
    "masa_ownership",
    "registrar_admission",
]

# Per-manufacturer trust (RFC 8995 5.3): "brski" = IDevIDs must chain to the
# configured anchor (RFC 8995 5.3); "first-use" = an IDevID whose issuer no
# anchor covers is accepted the first time and its issuer pinned; "deny" =
# IDevIDs of this manufacturer are refused even though they chain.
MANUFACTURER_POLICIES = ("brski", "first-use", "deny")
# A device on neither the allow nor the deny list: let it in, queue it for
# an operator (RFC 8995 5.6: 202 + Retry-After), or refuse it.
UNLISTED_DEVICE_POLICIES = ("admit", "queue", "refuse")
# Audit-log entries by a domain that is neither ours nor allowed: refuse the
# device, or tolerate them when they carry a nonce (RFC 8995 5.8.3).
AUDIT_OTHER_DOMAINS = ("refuse", "allow-nonced")


@dataclass(frozen=True, kw_only=True)
class Decision:
    allow: bool
    rule: str
    detail: str
    # For an allowed claim: whether it creates the owner record (first use).
    record_owner: bool = False
    # Neither allowed nor refused yet: an operator has to decide (202).
    pending: bool = False


def masa_ownership(
    *,
    mode: str,
    domain: bytes,
    owners: Collection[bytes],
    nonceless: bool,
    registrar_authenticated: bool = False,
) -> Decision:
    """May the registrar domain ``domain`` (its pinned cert's SPKI hash) claim the device?

    ``open``: the first domain to claim a device becomes its owner and later
    claims by other domains are refused (the claim is logged either way).
    ``sales-records``: only domains in the owner records may claim.
    Nonceless vouchers (RFC 8995 sections 5.5.4 and 7.4.1) outlive the
    pledge's nonce check, so they need an explicit owner record whatever the
    mode ("first use" is not proof of ownership for an offline voucher), and
    RFC 8995 5.5.4 says the MASA "MUST authenticate the registrar" for them:
    ``registrar_authenticated`` is whether the TLS client certificate is the
    voucher-request signer or chains to its domain CA.
    """
    is_owner = domain in owners
    if nonceless and not registrar_authenticated:
        return Decision(
            allow=False,
            rule="masa.nonceless-needs-authenticated-registrar",
            detail="a nonceless voucher-request needs a TLS client certificate of the signing registrar's domain",
        )
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


def registrar_admission(
    *,
    serial: str,
    manufacturer: str,
    manufacturer_policy: str,
    allow_serials: Collection[str],
    deny_serials: Collection[str],
    unlisted: str,
    approval: str | None,
) -> Decision:
    """May the pledge ``serial``, whose IDevID already verified, join this domain?

    Called after the RFC 8995 5.3 checks (the IDevID chains to ``manufacturer``
    or was pinned on first use). Refusals come first and win: a denied
    manufacturer, a denied serial, an operator's rejection. Then explicit
    admissions (allow list, operator approval), then the ``unlisted`` rule.
    ``approval`` is the stored queue decision or None.
    """
    if manufacturer_policy == "deny":
        return Decision(
            allow=False,
            rule="registrar.manufacturer-denied",
            detail=f"manufacturer {manufacturer!r} is set to deny",
        )
    if serial in deny_serials:
        return Decision(allow=False, rule="registrar.serial-denied", detail=f"device {serial} is on the deny list")
    if approval == "rejected":
        return Decision(
            allow=False, rule="registrar.approval-rejected", detail=f"an operator rejected device {serial}"
        )
    if serial in allow_serials:
        return Decision(allow=True, rule="registrar.serial-allowed", detail=f"device {serial} is on the allow list")
    if approval == "approved":
        return Decision(allow=True, rule="registrar.approval-approved", detail=f"an operator approved device {serial}")
    if unlisted == "queue":
        return Decision(
            allow=False,
            pending=True,
            rule="registrar.approval-pending",
            detail=f"device {serial} waits for an operator: brski registrar devices approve|reject {serial}",
        )
    if unlisted == "refuse":
        return Decision(
            allow=False, rule="registrar.serial-not-allowed", detail=f"device {serial} is not on the allow list"
        )
    if unlisted != "admit":
        return Decision(allow=False, rule="registrar.policy-unknown", detail=f"unknown unlisted policy {unlisted!r}")
    if manufacturer_policy == "first-use":
        return Decision(
            allow=True, rule="registrar.manufacturer-first-use", detail=f"first-use manufacturer {manufacturer!r}"
        )
    return Decision(
        allow=True, rule="registrar.manufacturer-trusted", detail=f"IDevID chains to trusted manufacturer {manufacturer!r}"
    )


def audit_log_review(
    *,
    events: Sequence[AuditEvent],
    own_domain: str,
    allowed_domains: Collection[str],
    other_domains: str,
) -> Decision:
    """RFC 8995 5.8.3: does the MASA audit log allow bootstrapping to go on?

    ``events`` are the log's "events" entries (:class:`brski.auditlog.AuditEvent`);
    ``own_domain`` is this registrar's domainID (5.8.2). An entry by a domain
    that is neither ours nor in ``allowed_domains`` means the pledge may have
    imprinted elsewhere. A nonceless one is always refused: "the logged
    domainID could theoretically trigger a reset of the pledge and then take
    over management" (5.8.3). A nonced one is refused when ``other_domains``
    is "refuse" (the "white list known domainIDs" policy of 5.8.3) and
    tolerated under "allow-nonced" (pre-owned equipment). When the policy is
    broken the registrar "MUST then refuse any EST actions".
    """
    known = {own_domain, *allowed_domains}
    others = [e for e in events if e.domain_id not in known]
    nonceless = [e for e in others if e.nonce is None]
    if nonceless:
        return Decision(
            allow=False,
            rule="registrar.audit.nonceless-other-domain",
            detail=f"the MASA issued {len(nonceless)} nonceless voucher(s) to domain(s) "
            f"{sorted({e.domain_id for e in nonceless})}",
        )
    if others and other_domains != "allow-nonced":
        return Decision(
            allow=False,
            rule="registrar.audit.unexpected-domain",
            detail=f"the MASA log shows claims by unexpected domain(s) {sorted({e.domain_id for e in others})}",
        )
    if others:
        return Decision(
            allow=True, rule="registrar.audit.nonced-other-domain", detail=f"{len(others)} nonced claim(s) by other domains tolerated"
        )
    return Decision(allow=True, rule="registrar.audit.clean", detail="only this domain and allowed domains claimed the device")


# --- the registrar's voucher-request decision ---------------------------------


@dataclass(frozen=True, kw_only=True)
class VoucherRequestFacts:
    """What the registrar knows when a verified voucher-request arrives.

    Read once, before deciding: the device record's ``state`` (None: a device
    never seen), the manufacturer entry the IDevID chained to (or was pinned
    under, ``first_use_pin``: a pin still to be recorded), the operator's queue
    decision, the configured lists, the MASA the request goes to, and the
    fields of the pledge's request the registrar's own request repeats.
    """

    serial: str
    state: DeviceState | None
    manufacturer: str
    # The subject of the anchor the IDevID chains to (the device record's manufacturer).
    manufacturer_subject: str
    manufacturer_policy: str
    first_use_pin: bool
    approval: str | None
    allow_serials: Collection[str]
    deny_serials: Collection[str]
    unlisted: str
    reonboard_decommissioned: bool
    retry_after_s: int
    masa: str | None
    nonce: bytes | None
    idevid_issuer: bytes | None
    pledge_request: bytes


@dataclass(frozen=True, kw_only=True)
class PlannedEvent:
    """An event the plan records, committed with its state changes."""

    kind: str
    outcome: str
    check: str
    detail: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, kw_only=True)
class Transition:
    """One lifecycle edge to commit: from ``expect`` to ``state`` because of ``event``."""

    event: LifecycleEvent
    state: DeviceState
    reason: str
    expect: DeviceState | None = None


@dataclass(frozen=True, kw_only=True)
class Forward:
    """Admitted: commit, then ask the MASA with ``request`` (RFC 8995 5.5)."""

    rule: str
    transitions: tuple[Transition, ...]
    events: tuple[PlannedEvent, ...]
    commit_pin: bool
    masa: str
    request: VoucherRequest
    # The state once the MASA's voucher is stored (RFC 8995 5.6).
    on_voucher: DeviceState


@dataclass(frozen=True, kw_only=True)
class Park:
    """Not decided yet: queue for an operator, answer 202 + Retry-After (RFC 8995 5.6)."""

    rule: str
    detail: str
    retry_after_s: int
    transitions: tuple[Transition, ...]
    events: tuple[PlannedEvent, ...]


@dataclass(frozen=True, kw_only=True)
class Refuse:
    """Refused by the named check; nothing is committed (the refusal is recorded as evidence)."""

    error: BrskiError

    @property
    def check(self) -> str | None:
        return self.error.check


VoucherRequestPlan = Forward | Park | Refuse


def _reonboard(facts: VoucherRequestFacts) -> Refuse | tuple[DeviceState, tuple[Transition, ...], tuple[PlannedEvent, ...]]:
    """Lifecycle policy for a device seen before; its state once the request is accepted.

    A *revoked* device stays quarantined until an operator decommissions it.
    A *decommissioned* device back with its IDevID (a factory reset) onboards
    again only if ``reonboard_decommissioned``; it restarts at "discovered".
    """
    serial, state = facts.serial, facts.state or DeviceState.DISCOVERED
    if state not in BLOCKED:
        return state, (), ()
    if state == DeviceState.REVOKED:
        return Refuse(error=PolicyRefused(
            f"device {serial} has a revoked LDevID; decommission it before it may onboard again",
            check="registrar.device-revoked", serial=serial,
        ))
    if not facts.reonboard_decommissioned:
        return Refuse(error=PolicyRefused(
            f"device {serial} is decommissioned and policy forbids onboarding it again",
            check="registrar.decommissioned", serial=serial,
        ))
    after = next_state(state, LifecycleEvent.REONBOARDED, serial=serial)
    return (
        after,
        (Transition(event=LifecycleEvent.REONBOARDED, state=after, reason="factory reset: onboarding again", expect=state),),
        (PlannedEvent(kind="policy.reonboard", outcome="allow", check="registrar.reonboard-decommissioned"),),
    )


def decide_voucher_request(facts: VoucherRequestFacts, *, now: datetime) -> VoucherRequestPlan:
    """RFC 8995 5.3-5.6: forward, park or refuse a voucher-request whose checks passed.

    Order (each refusal wins over what follows): the device's lifecycle
    (revoked, decommissioned), then :func:`registrar_admission` (deny lists,
    operator decisions, the ``unlisted`` rule; "queue" parks), then a MASA to
    ask (the IDevID's id-pe-masa-url or the configured override).
    """
    serial = facts.serial
    lifecycle = _reonboard(facts)
    if isinstance(lifecycle, Refuse):
        return lifecycle
    state, transitions, events = lifecycle
    decision = registrar_admission(
        serial=serial,
        manufacturer=facts.manufacturer,
        manufacturer_policy=facts.manufacturer_policy,
        allow_serials=facts.allow_serials,
        deny_serials=facts.deny_serials,
        unlisted=facts.unlisted,
        approval=facts.approval,
    )
    if decision.pending:
        parked = next_state(state, LifecycleEvent.VOUCHER_PARKED, serial=serial)
        if parked != state:  # asking again while queued changes nothing
            transitions += (
                Transition(event=LifecycleEvent.VOUCHER_PARKED, state=parked, reason="parked for operator approval"),
            )
        return Park(
            rule=decision.rule,
            detail=decision.detail,
            retry_after_s=facts.retry_after_s,
            transitions=transitions,
            events=(*events, PlannedEvent(kind="admission.parked", outcome="info", check=decision.rule)),
        )
    if not decision.allow:
        return Refuse(error=PolicyRefused(decision.detail, check=decision.rule, serial=serial))
    if not facts.masa:
        return Refuse(error=Forbidden(
            "the IDevID names no MASA (id-pe-masa-url) and none is configured", check="idevid.masa-url", serial=serial
        ))
    admitted = PlannedEvent(
        kind="admission.decided", outcome="allow", check=decision.rule,
        detail=MappingProxyType({
            "manufacturer": facts.manufacturer_subject,
            "manufacturer_policy": facts.manufacturer_policy,
            "manufacturer_name": facts.manufacturer,
            "first_use_pinned": facts.first_use_pin,
        }),
    )
    return Forward(
        rule=decision.rule,
        transitions=transitions,
        events=(*events, admitted),
        commit_pin=facts.first_use_pin,
        masa=facts.masa,
        # RFC 8995 5.5: the registrar's voucher-request wraps the pledge's.
        request=VoucherRequest(
            assertion=Assertion.PROXIMITY,
            created_on=now,
            serial_number=serial,
            nonce=facts.nonce,
            idevid_issuer=facts.idevid_issuer,
            prior_signed_voucher_request=facts.pledge_request,
        ),
        on_voucher=next_state(state, LifecycleEvent.VOUCHER_OBTAINED, serial=serial),
    )
