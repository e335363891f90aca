"""The registrar's admission policy: which manufacturers, which devices, which histories.

Configuration (``[registrar]`` in the TOML file, see :mod:`registrar.config`)::

    manufacturer_anchors = ["root-ca.crt"]        # each one: policy "brski"
    [[registrar.manufacturers]]
    name = "acme"                                  # a label for events and logs
    anchor = "acme-root.crt"                       # IDevIDs must chain here (RFC 8995 5.3)
    policy = "brski"                               # or "deny" (chains, but refused)
    [[registrar.manufacturers]]
    name = "unknown"
    policy = "first-use"                           # no anchor: trust on first use

    allow_serials = ["PLG-000001"]                 # admitted without the queue
    deny_serials = ["PLG-000666"]                  # always refused
    unlisted_devices = "admit"                     # or "queue" (202 until approved) / "refuse"
    approval_retry_after_s = 30                    # RFC 8995 5.6: at most 60
    audit_review = true                            # RFC 8995 5.8.3
    audit_allowed_domains = []                     # extra domainIDs (base64) allowed in the log
    audit_other_domains = "refuse"                 # or "allow-nonced"

The decisions themselves are pure functions in :mod:`brski.admission`; this
module gathers their facts (which anchor an IDevID chains to, the first-use
pin, the operator's queue decision, the audit log the registrar fetched) and
turns refusals into errors naming the rule. Queue decisions and pins live in
the store, so ``brski registrar devices approve|reject`` takes effect on a
running server.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography import x509

from brski.admission import (
    AUDIT_OTHER_DOMAINS,
    MANUFACTURER_POLICIES,
    UNLISTED_DEVICE_POLICIES,
    Decision,
    audit_log_review,
)
from brski.auditlog import AuditLog
from brski.errors import ChainInvalid, ConfigError, MalformedInput, PolicyRefused
from brski.issuer_path import verify_chain_via_issuer
from brski.pki import Role, cert_der, load_certs, spki_sha256, verify_chain
from brski_storage.base import ApprovalRecord, AuditLogRecord, ManufacturerPin, RegistrarStore

__all__ = [
    "AdmissionControl",
    "AdmissionPolicy",
    "Manufacturer",
    "ManufacturerEntry",
    "parse_manufacturers",
]

# RFC 8995 5.6: "the pledge MUST limit the 'Retry-After' time to 60 seconds".
MAX_RETRY_AFTER_S = 60


@dataclass(frozen=True, kw_only=True)
class ManufacturerEntry:
    """One ``[[registrar.manufacturers]]`` table, paths resolved."""

    name: str
    policy: str
    anchor: Path | None = None


def parse_manufacturers(raw: Any, base: Path) -> list[ManufacturerEntry]:
    """Validate the ``manufacturers`` array of tables; anchors resolve against ``base``."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ConfigError("manufacturers must be an array of tables", check="config.manufacturers")
    out: list[ManufacturerEntry] = []
    for item in raw:
        if isinstance(item, ManufacturerEntry):
            out.append(item)
            continue
        if not isinstance(item, dict) or set(item) - {"name", "anchor", "policy"}:
            raise ConfigError(
                "each [[registrar.manufacturers]] takes name, anchor and policy", check="config.manufacturers"
            )
        name, policy, anchor = item.get("name"), item.get("policy", "brski"), item.get("anchor")
        if not isinstance(name, str) or not name:
            raise ConfigError("manufacturer entry needs a name", check="config.manufacturers")
        if policy not in MANUFACTURER_POLICIES:
            raise ConfigError(
                f"manufacturer {name!r}: policy must be one of {', '.join(MANUFACTURER_POLICIES)}",
                check="config.manufacturers",
            )
        if anchor is None and policy != "first-use":
            raise ConfigError(f"manufacturer {name!r}: policy {policy} needs an anchor", check="config.manufacturers")
        if anchor is not None and policy == "first-use":
            raise ConfigError(
                f"manufacturer {name!r}: first-use is for manufacturers without an anchor",
                check="config.manufacturers",
            )
        out.append(ManufacturerEntry(name=name, policy=policy, anchor=base / anchor if anchor is not None else None))
    if sum(1 for m in out if m.policy == "first-use") > 1:
        raise ConfigError("at most one first-use manufacturer entry", check="config.manufacturers")
    return out


@dataclass(frozen=True, kw_only=True)
class AdmissionPolicy:
    """The admission settings of the registrar config, validated."""

    manufacturers: tuple[ManufacturerEntry, ...] = ()
    allow_serials: frozenset[str] = frozenset()
    deny_serials: frozenset[str] = frozenset()
    unlisted_devices: str = "admit"
    approval_retry_after_s: int = 30
    audit_review: bool = True
    audit_allowed_domains: frozenset[str] = frozenset()
    audit_other_domains: str = "refuse"

    def __post_init__(self) -> None:
        if self.unlisted_devices not in UNLISTED_DEVICE_POLICIES:
            raise ConfigError(
                f"unlisted_devices must be one of {', '.join(UNLISTED_DEVICE_POLICIES)}", check="config.unlisted"
            )
        if not 1 <= self.approval_retry_after_s <= MAX_RETRY_AFTER_S:
            raise ConfigError("approval_retry_after_s must be 1..60 (RFC 8995 5.6)", check="config.retry-after")
        if self.audit_other_domains not in AUDIT_OTHER_DOMAINS:
            raise ConfigError(
                f"audit_other_domains must be one of {', '.join(AUDIT_OTHER_DOMAINS)}", check="config.audit"
            )
        if self.allow_serials & self.deny_serials:
            raise ConfigError(
                f"serial(s) on both lists: {', '.join(sorted(self.allow_serials & self.deny_serials))}",
                check="config.serial-lists",
            )


@dataclass(frozen=True, kw_only=True)
class Manufacturer:
    """Which manufacturer an IDevID belongs to, and the anchor it is checked against."""

    name: str
    policy: str
    anchors: tuple[x509.Certificate, ...]
    # First use: the issuer certificate to pin once the whole request has passed.
    pin: x509.Certificate | None = None

    def pin_record(self) -> ManufacturerPin | None:
        """The first-use pin to commit with the admission (RFC 8995 5.3 trust on first use)."""
        if self.pin is None:
            return None
        return ManufacturerPin(
            issuer=self.pin.subject.rfc4514_string(), cert_der=cert_der(self.pin),
            spki_sha256=spki_sha256(self.pin), policy_name=self.name,
        )


@dataclass(kw_only=True)
class _Loaded:
    entry: ManufacturerEntry
    anchors: list[x509.Certificate] = field(default_factory=list)


# Audit-log verdicts remembered per process (32-byte key and a Decision each).
_REVIEWED_MAX = 4096


class AdmissionControl:
    """The facts admission decisions need, for one running registrar (RFC 8995 5.3, 5.6, 5.8.3).

    Which manufacturer an IDevID belongs to, the audit-log review, and the
    EST gate; the voucher-request decision itself is
    :func:`brski.admission.decide_voucher_request`.
    """

    def __init__(self, *, store: RegistrarStore, policy: AdmissionPolicy, own_domain_id: str) -> None:
        self.store = store
        self.cfg = policy
        self.own_domain_id = own_domain_id
        self._loaded: list[_Loaded] = []
        self._first_use: ManufacturerEntry | None = None
        # SHA-256 of an audit log's bytes -> the verdict on it (enroll_gate_on).
        self._reviewed: dict[bytes, Decision] = {}
        for entry in policy.manufacturers:
            if entry.anchor is None:
                self._first_use = entry
                continue
            try:
                certs = load_certs(entry.anchor.read_bytes())
            except OSError as exc:
                raise ConfigError(f"cannot read anchor {entry.anchor}: {exc.strerror}", check="config.file") from exc
            self._loaded.append(_Loaded(entry=entry, anchors=certs))

    @property
    def anchors(self) -> list[x509.Certificate]:
        """Every configured manufacturer anchor (for TLS client-CA lists and tools)."""
        return [a for m in self._loaded for a in m.anchors]

    async def manufacturer(
        self, idevid: x509.Certificate, *, chain: Sequence[x509.Certificate], now: datetime
    ) -> Manufacturer:
        """RFC 8995 5.3: the manufacturer whose anchor the IDevID chains to.

        With no match, a ``first-use`` entry accepts the IDevID's issuer as
        presented in the TLS chain (pinned with the admission, see :meth:`Manufacturer.pin_record`),
        or holds it to the pin recorded the first time that issuer was seen.
        """
        first_error: ChainInvalid | None = None
        for m in self._loaded:
            try:
                # The manufacturer CA's part of the path is remembered
                # (brski.issuer_path); per device only the IDevID's own link.
                verify_chain_via_issuer(idevid, intermediates=chain, anchors=m.anchors, now=now, role=Role.IDEVID)
            except ChainInvalid as exc:
                first_error = first_error or exc
                continue
            return Manufacturer(name=m.entry.name, policy=m.entry.policy, anchors=tuple(m.anchors))
        if self._first_use is None:
            if first_error is not None:
                raise first_error
            raise ChainInvalid("no manufacturer anchors configured", check="chain.untrusted")
        name = self._first_use.name
        issuer = idevid.issuer.rfc4514_string()
        pinned = await self.store.get_pinned_manufacturer(issuer)
        if pinned is not None:
            anchor = x509.load_der_x509_certificate(pinned.cert_der)
            try:
                verify_chain(idevid, anchors=[anchor], now=now, role=Role.IDEVID)
            except ChainInvalid as exc:
                raise ChainInvalid(
                    f"IDevID issuer {issuer!r} was pinned on first use to another certificate: {exc.detail}",
                    check="registrar.first-use.pin-mismatch",
                ) from exc
            return Manufacturer(name=name, policy="first-use", anchors=(anchor,))
        candidates = [c for c in chain if c.subject == idevid.issuer]
        if not candidates:
            raise ChainInvalid(
                "first use needs the IDevID's issuer certificate in the TLS chain",
                check="registrar.first-use.no-issuer-cert",
            )
        return Manufacturer(name=name, policy="first-use", anchors=(candidates[0],), pin=candidates[0])

    def review(self, audit_log: AuditLog) -> Decision:
        """RFC 8995 5.8.3 on one fetched audit log."""
        if not self.cfg.audit_review:
            return Decision(allow=True, rule="registrar.audit.review-off", detail="audit-log review is switched off")
        return audit_log_review(
            events=audit_log.events,
            own_domain=self.own_domain_id,
            allowed_domains=self.cfg.audit_allowed_domains,
            other_domains=self.cfg.audit_other_domains,
        )

    def enroll_gate_on(
        self, serial: str, *, approval: ApprovalRecord | None, audit_log: AuditLogRecord | None
    ) -> None:
        """RFC 8995 5.8.3 "The Registrar MUST then refuse any EST actions": the
        latest audit log must pass review, and an operator's rejection made
        after the voucher still stops enrolment; on ``serial``'s approval row
        and newest audit log as the EST request read them
        (``est_facts(gate=True)``, on every EST request)."""
        if (approval is not None and approval.serial != serial) or (audit_log is not None and audit_log.serial != serial):
            raise ValueError(f"the EST gate for {serial} was handed another device's rows")
        if approval is not None and approval.decision == "rejected":
            raise PolicyRefused(f"an operator rejected device {serial}", check="registrar.approval-rejected", serial=serial)
        if not self.cfg.audit_review:
            return
        latest = audit_log
        if latest is None:
            return
        # The latest log is read on every EST request (a new one may have been
        # fetched meanwhile); the verdict on it is a function of its bytes and
        # of this process's review rules, which do not change while it runs, so
        # it is remembered by the bytes' SHA-256 rather than parsed and
        # reviewed again at each renewal. Nothing of the device is in the key
        # or the verdict: the refusal names the requesting device below.
        key = hashlib.sha256(latest.body).digest()
        decision = self._reviewed.get(key)
        if decision is None:
            try:
                decision = self.review(AuditLog.from_json(latest.body))
            except MalformedInput as exc:
                decision = Decision(allow=False, rule="registrar.audit.malformed", detail=exc.detail)
            if len(self._reviewed) >= _REVIEWED_MAX:
                del self._reviewed[next(iter(self._reviewed))]  # oldest first
            self._reviewed[key] = decision
        if not decision.allow:
            raise PolicyRefused(decision.detail, check=decision.rule, serial=serial)
