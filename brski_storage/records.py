"""The records the storage interface hands out, and the events it appends.

Kept apart from :mod:`brski_storage.base` (the abstract stores) so each stays
readable; ``base`` re-exports every name here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from brski.errors import Conflict

__all__ = [
    "INITIAL_DEVICE_STATE",
    "ApprovalDecision",
    "ApprovalRecord",
    "AuditEntry",
    "AuditLogRecord",
    "CertificateRecord",
    "CertificateState",
    "ChainProblem",
    "ChainReport",
    "DeviceImport",
    "DeviceRecord",
    "EventRecord",
    "IssuedVoucher",
    "ManufacturedDevice",
    "ManufacturerPin",
    "MasaVoucherRecord",
    "NewAuditLog",
    "NewDevice",
    "NewEvent",
    "NewVoucherRequest",
    "Outcome",
    "OwnerRecord",
    "PinnedManufacturer",
    "StateChange",
    "StatusKind",
    "StatusReportRecord",
    "TransitionRecord",
    "VoucherRecord",
    "VoucherRequestRecord",
]

Outcome = Literal["allow", "refuse", "info"]
StatusKind = Literal["voucher", "enroll"]
CertificateState = Literal["reserved", "issued", "revoked"]
ChainProblem = Literal["edited", "removed", "reordered"]
ApprovalDecision = Literal["pending", "approved", "rejected"]

# The state a device gets the first time the registrar sees it. Every other
# state name belongs to the registrar's state machine, not to storage.
INITIAL_DEVICE_STATE = "discovered"


# --- records ------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class DeviceRecord:
    """A pledge as the registrar knows it; ``serial`` is the key."""

    serial: str
    idevid_issuer: str
    idevid_fingerprint: str
    manufacturer: str
    state: str
    first_seen: datetime
    updated_at: datetime


@dataclass(frozen=True, kw_only=True)
class TransitionRecord:
    """One state change; ``from_state`` is None for the first sighting."""

    id: int
    serial: str
    from_state: str | None
    to_state: str
    at: datetime
    reason: str


@dataclass(frozen=True, kw_only=True)
class VoucherRequestRecord:
    id: int
    serial: str
    nonce: bytes | None
    pledge_request: bytes
    registrar_request: bytes | None
    media_type: str
    received_at: datetime


@dataclass(frozen=True, kw_only=True)
class VoucherRecord:
    """A voucher the registrar received from a MASA, kept verbatim."""

    id: int
    serial: str
    voucher: bytes
    media_type: str
    assertion: str
    nonce: bytes | None
    expires_on: datetime | None
    received_at: datetime


@dataclass(frozen=True, kw_only=True)
class StatusReportRecord:
    """A pledge's voucher or enroll status telemetry (RFC 8995 5.7, 5.9.4)."""

    id: int
    serial: str
    kind: StatusKind
    status: bool
    reason: str | None
    body: str
    received_at: datetime


@dataclass(frozen=True, kw_only=True)
class CertificateRecord:
    """An LDevID through its life: reserved -> issued -> revoked.

    ``der``, ``not_before``, ``not_after`` and ``issued_at`` are None while
    the row is only a reservation.
    """

    cert_serial: str
    device_serial: str
    spki_sha256: bytes
    state: CertificateState
    der: bytes | None
    not_before: datetime | None
    not_after: datetime | None
    reserved_at: datetime
    issued_at: datetime | None
    revoked_at: datetime | None
    revocation_reason: str | None


@dataclass(frozen=True, kw_only=True)
class AuditLogRecord:
    """A MASA audit log as the registrar fetched it (RFC 8995 5.8)."""

    id: int
    serial: str
    fetched_at: datetime
    body: bytes


@dataclass(frozen=True, kw_only=True)
class EventRecord:
    """One entry of the tamper-evident event log.

    ``hash`` = SHA-256(``prev_hash`` || canonical JSON of the other fields
    except ``id``); see :mod:`brski_storage.chain`.
    """

    id: int
    at: datetime
    kind: str
    device_serial: str | None
    outcome: Outcome
    check: str | None
    detail: Mapping[str, Any]
    prev_hash: bytes
    hash: bytes


@dataclass(frozen=True, kw_only=True)
class ChainReport:
    """Result of re-walking the event chain.

    ``head_hash`` is worth copying somewhere the database's owner cannot
    write: dropping rows from the *end* of a hash chain leaves a valid shorter
    chain, which only an external copy of the head can reveal.
    """

    ok: bool
    count: int
    first_bad_id: int | None = None
    problem: ChainProblem | None = None
    detail: str = ""
    head_id: int | None = None
    head_hash: bytes | None = None


@dataclass(frozen=True, kw_only=True)
class ManufacturedDevice:
    serial: str
    idevid_fingerprint: str
    created_at: datetime


@dataclass(frozen=True, kw_only=True)
class DeviceImport:
    """What one bulk registration of manufactured devices did."""

    added: int
    already_known: int
    #: Serials already recorded with a different IDevID (left unchanged).
    conflicts: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class OwnerRecord:
    """A domain CA the MASA will pin in vouchers for ``serial``."""

    id: int
    serial: str
    domain_ca_spki_sha256: bytes
    domain_ca_der: bytes
    added_at: datetime


@dataclass(frozen=True, kw_only=True)
class MasaVoucherRecord:
    id: int
    serial: str
    registrar_spki_sha256: bytes
    domain_ca_spki_sha256: bytes
    nonce: bytes | None
    assertion: str
    voucher: bytes
    media_type: str
    created_at: datetime
    expires_on: datetime | None


@dataclass(frozen=True, kw_only=True)
class AuditEntry:
    """One RFC 8995 section 5.8.1 audit log event.

    ``domain_id`` is the base64 of the SHA-256 SubjectKeyIdentifier of the
    domain CA ("domainID"); ``at`` is the entry's "date".
    """

    id: int
    serial: str
    at: datetime
    domain_id: str
    nonce: bytes | None
    assertion: str
    truncated: int


@dataclass(frozen=True, kw_only=True)
class IssuedVoucher:
    """What ``issue_voucher_atomically`` committed, all in one transaction."""

    voucher: MasaVoucherRecord
    audit_entry: AuditEntry
    event: EventRecord


@dataclass(frozen=True, kw_only=True)
class ApprovalRecord:
    """An operator's decision on a device in the manual approval queue.

    ``decision`` is 'pending' while the device waits (RFC 8995 5.6: the
    registrar answers 202), then 'approved' or 'rejected'. An operator may
    decide before the device first asks; ``requested_at`` is then None.
    """

    serial: str
    decision: ApprovalDecision
    requested_at: datetime | None
    decided_at: datetime | None
    decided_by: str | None
    reason: str | None


@dataclass(frozen=True, kw_only=True)
class PinnedManufacturer:
    """An IDevID issuer trusted on first use, keyed by its subject (RFC 4514)."""

    issuer: str
    cert_der: bytes
    spki_sha256: bytes
    policy_name: str
    first_serial: str
    pinned_at: datetime


@dataclass(frozen=True, kw_only=True)
class StateChange:
    """A device state change to commit with the write it follows from.

    Why: "voucher stored" and "voucher-obtained", or "LDevID issued" and
    "enrolled", written as two transactions, leave the device a step behind
    its own records after a crash between them; carried by the write, the
    state and the rows that justify it agree. The transition row is written
    exactly as :meth:`RegistrarStore.set_device_state` writes it.
    """

    state: str
    reason: str
    # Only from this state, else Conflict(check="storage.state-changed"):
    # two handlers racing on one device cannot both move it.
    expect: str | None = None

    def __post_init__(self) -> None:
        if not self.state:
            raise ValueError("device state must not be empty")


@dataclass(frozen=True, kw_only=True)
class ManufacturerPin:
    """A first-use pin to record: ``issuer`` trusted as ``cert_der`` from now on."""

    issuer: str
    cert_der: bytes
    spki_sha256: bytes
    policy_name: str


@dataclass(frozen=True, kw_only=True)
class NewDevice:
    """A device as a voucher-request shows it (RFC 8995 5.3: the IDevID the
    pledge authenticated with), to record the first time its serial is seen."""

    idevid_issuer: str
    idevid_fingerprint: str
    manufacturer: str

    def check_same(self, known: DeviceRecord) -> None:
        """The row already stored under this serial must hold the same IDevID:
        another certificate under a known serial is a Conflict, never a re-pin."""
        if (known.idevid_fingerprint, known.idevid_issuer, known.manufacturer) != (
            self.idevid_fingerprint, self.idevid_issuer, self.manufacturer
        ):
            raise Conflict(
                f"device {known.serial!r} is already known with a different IDevID",
                check="storage.idevid-mismatch",
            )


@dataclass(frozen=True, kw_only=True)
class NewAuditLog:
    """A MASA audit log fetched for a device (RFC 8995 5.8), with the events
    that record its review, to store in the same transaction."""

    fetched_at: datetime
    body: bytes
    events: Sequence[NewEvent] = ()


@dataclass(frozen=True, kw_only=True)
class NewVoucherRequest:
    """A pledge's voucher-request and the registrar's, as stored before the MASA is asked."""

    nonce: bytes | None
    pledge_request: bytes
    registrar_request: bytes | None
    media_type: str


@dataclass(frozen=True, kw_only=True)
class NewEvent:
    """An event to append in the *same* transaction as the change it records.

    Why: an event written in a transaction of its own can be missing while
    the change it describes is committed (or the reverse, after a crash
    between the two); carried by the write, the log and the tables agree.
    It also spares one durable commit per event.
    """

    at: datetime
    kind: str
    device_serial: str | None
    outcome: Outcome
    check: str | None
    detail: Mapping[str, Any]
