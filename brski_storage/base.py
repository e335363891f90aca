"""The storage interface the registrar and the MASA program against.

Roles depend on these abstract classes only, never on a backend, so that the
SQLite implementation (the default, one file, no server) and a later
PostgreSQL one are interchangeable behind ``open_registrar_store`` /
``open_masa_store``.

Rules every backend keeps:

* Writes that take ``events=`` append those events to the hash-chained log in
  the same transaction as the change (:class:`NewEvent`): both or neither.

* Every timestamp comes from the caller (``at=``, ``received_at=`` ...). The
  store never reads a clock, so tests and replays are deterministic and the
  protocol logic decides what "now" is.
* Timestamps must be timezone-aware; they are stored as ISO 8601 UTC text and
  come back as aware UTC datetimes.
* A write that returns has been committed durably. A write that cannot be
  committed raises :class:`brski.errors.StorageError` (503) so nothing that
  depends on it (a voucher, a certificate) is handed out.
* Uniqueness violations the caller must react to raise
  :class:`brski.errors.Conflict` with ``check="storage.duplicate-key"``; a
  missing row the caller named explicitly raises :class:`brski.errors.NotFound`.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Protocol, Self

from brski_storage.certificates import CertificateStore
from brski_storage.evidence import StateReport
from brski_storage.lifecycle import LifecycleStore
from brski_storage.netaccess import NetworkAccessStore
from brski_storage.records import (
    ApprovalDecision,
    ApprovalRecord,
    AuditEntry,
    AuditLogRecord,
    CertificateRecord,
    CertificateState,
    ChainProblem,
    ChainReport,
    DeviceImport,
    DeviceRecord,
    EventRecord,
    IssuedVoucher,
    ManufacturedDevice,
    ManufacturerPin,
    MasaVoucherRecord,
    NewAuditLog,
    NewDevice,
    NewEvent,
    NewVoucherRequest,
    Outcome,
    OwnerRecord,
    PinnedManufacturer,
    StateChange,
    StatusKind,
    StatusReportRecord,
    TransitionRecord,
    VoucherRecord,
    VoucherRequestRecord,
)

__all__ = [
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
    "EventLog",
    "EventRecord",
    "IssuedVoucher",
    "ManufacturedDevice",
    "ManufacturerPin",
    "MasaStore",
    "MasaVoucherRecord",
    "NewAuditLog",
    "NewDevice",
    "NewEvent",
    "NewVoucherRequest",
    "Outcome",
    "OwnerRecord",
    "PinnedManufacturer",
    "RegistrarStore",
    "StateChange",
    "StatusKind",
    "StatusReportRecord",
    "Store",
    "TransitionRecord",
    "VoucherRecord",
    "VoucherRequestRecord",
    "WriteObserver",
]

# --- interfaces ---------------------------------------------------------------


class WriteObserver(Protocol):
    """Told about every write transaction (metrics: latency, writes in flight)."""

    def write_started(self) -> None: ...

    def write_finished(self, seconds: float) -> None: ...


class Store(abc.ABC):
    """Lifecycle shared by both stores: open via the factory, then close."""

    def observe_writes(self, observer: WriteObserver) -> None:  # noqa: B027 (a no-op by default, not abstract)
        """Report each write, from submission to durable commit, to ``observer``.
        An engine that cannot simply does not call it."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Finish queued writes, then release connections. Idempotent."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class EventLog(Store):
    """The hash-chained event log both roles keep for their operators."""

    async def append_event(
        self,
        *,
        at: datetime,
        kind: str,
        device_serial: str | None,
        outcome: Outcome,
        check: str | None,
        detail: Mapping[str, Any],
    ) -> EventRecord:
        """Append one event in a write of its own (see :meth:`append`)."""
        event = NewEvent(
            at=at, kind=kind, device_serial=device_serial, outcome=outcome, check=check, detail=detail
        )
        return await self.append(event)

    @abc.abstractmethod
    async def append(self, event: NewEvent) -> EventRecord:
        """Append one event; chaining happens inside the write transaction."""

    @abc.abstractmethod
    async def events(
        self, *, since_id: int = 0, device_serial: str | None = None, limit: int = 1000
    ) -> list[EventRecord]:
        """Events with ``id > since_id`` in id order (poll with the last id seen)."""

    @abc.abstractmethod
    async def verify_event_chain(self) -> ChainReport:
        """Re-walk every event and report the first one that breaks the chain."""

    @abc.abstractmethod
    async def verify_event_chain_since_checkpoint(self) -> ChainReport:
        """Walk only the events from the last state checkpoint on (start-up):
        O(changes since), anchored at the checkpoint event's stored hash."""

    @abc.abstractmethod
    async def verify_state(self) -> StateReport:
        """Compare the state-bearing tables with the state the log implies
        (brski_storage.evidence), naming every row that disagrees."""

    @abc.abstractmethod
    async def checkpoint_state(self, *, at: datetime, expect_checkpoint: int | None) -> int | None:
        """Fold the state events since the last checkpoint into a new one
        (chained); None if there was nothing to fold or another checkpoint
        was taken since ``expect_checkpoint``."""

    @abc.abstractmethod
    async def adopt_state_baseline(self, *, at: datetime | None, reason: str) -> int:
        """Take the tables as found as the evidence, recorded as a chained
        baseline checkpoint naming ``reason``; returns its event id."""

    async def recent_events(
        self, *, before_id: int | None = None, device_serial: str | None = None, limit: int = 100
    ) -> list[EventRecord]:
        """The newest events (``id < before_id`` if given), newest first.

        For views that read the log backwards from its head (a console's last
        hour, a device's latest events) without walking it from the start.
        This generic version pages forward with :meth:`events` and keeps the
        tail; an engine overrides it with a descending index scan.
        """
        tail: list[EventRecord] = []
        last = 0
        while True:
            page = await self.events(since_id=last, device_serial=device_serial, limit=1000)
            if not page:
                break
            tail.extend(e for e in page if before_id is None or e.id < before_id)
            tail = tail[-limit:]
            last = page[-1].id
        return tail[::-1]


class RegistrarStore(CertificateStore, NetworkAccessStore, LifecycleStore, EventLog):
    # devices
    @abc.abstractmethod
    async def upsert_device(
        self,
        serial: str,
        *,
        idevid_issuer: str,
        idevid_fingerprint: str,
        manufacturer: str,
        at: datetime,
    ) -> DeviceRecord:
        """Insert as 'discovered' if new, else return the stored record.

        A different IDevID (fingerprint, issuer or manufacturer) under a known
        serial raises ``Conflict(check="storage.idevid-mismatch")``: the serial
        is the key, and two identities behind one key is a clone or a
        collision between manufacturers, never something to overwrite.
        """

    @abc.abstractmethod
    async def get_device(self, serial: str) -> DeviceRecord | None: ...

    @abc.abstractmethod
    async def set_device_state(
        self,
        serial: str,
        state: str,
        *,
        at: datetime,
        reason: str,
        expect: str | None = None,
        events: Sequence[NewEvent] = (),
    ) -> DeviceRecord:
        """Change state and append a transition row in the same transaction.

        With ``expect``, the change only happens if the current state is
        ``expect`` (else ``Conflict(check="storage.state-changed")``), which
        lets two concurrent handlers race safely. Unknown serial: NotFound.
        """

    @abc.abstractmethod
    async def list_devices(
        self,
        *,
        state: str | None = None,
        manufacturer: str | None = None,
        after_serial: str | None = None,
        limit: int = 100,
    ) -> list[DeviceRecord]:
        """Devices ordered by serial; pass the last serial back as ``after_serial``."""

    @abc.abstractmethod
    async def device_transitions(self, serial: str) -> list[TransitionRecord]: ...

    # voucher requests and vouchers
    @abc.abstractmethod
    async def add_voucher_request(
        self,
        *,
        serial: str,
        nonce: bytes | None,
        pledge_request: bytes,
        registrar_request: bytes | None,
        media_type: str,
        received_at: datetime,
        events: Sequence[NewEvent] = (),
    ) -> int: ...

    @abc.abstractmethod
    async def voucher_requests(self, serial: str) -> list[VoucherRequestRecord]: ...

    @abc.abstractmethod
    async def latest_voucher_request(self, serial: str) -> VoucherRequestRecord | None:
        """The most recently stored voucher-request (by insertion order)."""

    @abc.abstractmethod
    async def add_voucher(
        self,
        *,
        serial: str,
        voucher: bytes,
        media_type: str,
        assertion: str,
        nonce: bytes | None,
        expires_on: datetime | None,
        received_at: datetime,
        events: Sequence[NewEvent] = (),
        then: StateChange | None = None,
    ) -> int:
        """Store a voucher; with ``then``, change the device's state in the same
        transaction (see StateChange)."""

    @abc.abstractmethod
    async def latest_voucher(self, serial: str) -> VoucherRecord | None:
        """The most recently stored voucher (by insertion order)."""

    # status telemetry
    @abc.abstractmethod
    async def add_status_report(
        self,
        *,
        serial: str,
        kind: StatusKind,
        status: bool,
        reason: str | None,
        body: str | Mapping[str, Any],
        received_at: datetime,
        events: Sequence[NewEvent] = (),
        audit_log: NewAuditLog | None = None,
    ) -> int:
        """A ``str`` body is stored verbatim; a mapping as canonical JSON.

        ``audit_log`` (a voucher status report only): the MASA audit log the
        report led to (RFC 8995 5.8), stored with its events in the same
        transaction, after the report's ``events``, as :meth:`add_audit_log`
        would store it."""

    @abc.abstractmethod
    async def status_reports(self, serial: str) -> list[StatusReportRecord]: ...

    # MASA audit logs fetched by the registrar
    @abc.abstractmethod
    async def add_audit_log(
        self, *, serial: str, fetched_at: datetime, body: bytes, events: Sequence[NewEvent] = ()
    ) -> int: ...

    @abc.abstractmethod
    async def audit_logs(self, serial: str) -> list[AuditLogRecord]: ...

    @abc.abstractmethod
    async def latest_audit_log(self, serial: str) -> AuditLogRecord | None:
        """The most recently fetched MASA audit log (by insertion order)."""

    @abc.abstractmethod
    async def stats(self) -> dict[str, int]:
        """Counters for /metrics and the admin view (``devices.<state>`` etc.)."""


    # admission policy: approval queue and first-use pins (migration 0002)
    @abc.abstractmethod
    async def get_approval(self, serial: str) -> ApprovalRecord | None: ...

    @abc.abstractmethod
    async def request_approval(self, serial: str, *, at: datetime) -> ApprovalRecord:
        """Queue ``serial`` as 'pending' unless a row exists; return the row."""

    @abc.abstractmethod
    async def decide_approval(
        self, serial: str, *, decision: ApprovalDecision, at: datetime, by: str, reason: str | None = None
    ) -> ApprovalRecord:
        """Record an operator's 'approved' or 'rejected' (creating the row if needed)."""

    @abc.abstractmethod
    async def list_approvals(self, *, decision: ApprovalDecision | None = None) -> list[ApprovalRecord]: ...

    @abc.abstractmethod
    async def get_pinned_manufacturer(self, issuer: str) -> PinnedManufacturer | None: ...

    @abc.abstractmethod
    async def commit_voucher_decision(
        self,
        serial: str,
        *,
        at: datetime,
        device: NewDevice | None = None,
        changes: Sequence[StateChange] = (),
        pin: ManufacturerPin | None = None,
        queue_for_approval: bool = False,
        voucher_request: NewVoucherRequest | None = None,
        events: Sequence[NewEvent] = (),
    ) -> None:
        """Commit the registrar's decision on one voucher-request: all of it, or nothing.

        In one transaction and in this order: with ``device``, the device row
        when ``serial`` is new (as :meth:`upsert_device`; a row holding
        another IDevID raises ``Conflict(check="storage.idevid-mismatch")``
        and rolls everything back), the state ``changes`` (each
        with its transition row, honouring ``expect``), the first-use ``pin``
        (first writer wins; a pin already held for another certificate raises
        ``Conflict(check="storage.pin-held")`` and rolls everything back), a
        'pending' approval row when ``queue_for_approval`` (as
        :meth:`request_approval`), the ``voucher_request`` row, then
        ``events``. Unknown serial without ``device``: NotFound.
        """

    @abc.abstractmethod
    async def pin_manufacturer(
        self, *, issuer: str, cert_der: bytes, spki_sha256: bytes, policy_name: str, first_serial: str, at: datetime
    ) -> PinnedManufacturer:
        """Pin ``issuer`` to ``cert_der`` unless already pinned; return the pin that holds.

        First writer wins: two pledges racing on first use cannot re-pin.
        """

class MasaStore(EventLog):
    @abc.abstractmethod
    async def add_manufactured_device(
        self, serial: str, *, idevid_fingerprint: str, at: datetime
    ) -> ManufacturedDevice:
        """Idempotent for the same fingerprint; a different one is ``Conflict``."""

    @abc.abstractmethod
    async def add_manufactured_devices(
        self, devices: Sequence[tuple[str, str]], *, at: datetime
    ) -> DeviceImport:
        """Record ``(serial, idevid_fingerprint)`` pairs in ONE transaction.

        Bulk import (a factory's day, a lab fleet): one commit per call instead
        of one per device. Each pair follows :meth:`add_manufactured_device`,
        except that a serial already recorded with another IDevID is left as
        it is and named in ``conflicts`` instead of failing the whole batch.
        """

    @abc.abstractmethod
    async def get_manufactured_device(self, serial: str) -> ManufacturedDevice | None: ...

    @abc.abstractmethod
    async def count_devices(self) -> int: ...

    @abc.abstractmethod
    async def list_manufactured_devices(
        self, *, after_serial: str | None = None, limit: int = 100
    ) -> list[ManufacturedDevice]:
        """Devices made, in serial order after ``after_serial`` (keyset paging)."""

    @abc.abstractmethod
    async def add_owner(
        self,
        serial: str,
        *,
        domain_ca_spki_sha256: bytes,
        domain_ca_der: bytes,
        at: datetime,
    ) -> OwnerRecord:
        """Unknown serial: NotFound; the same (serial, key) twice: Conflict."""

    @abc.abstractmethod
    async def remove_owner(
        self, serial: str, *, domain_ca_spki_sha256: bytes, at: datetime | None = None
    ) -> None:
        """NotFound if that owner was not registered. ``at`` stamps the
        state evidence of the removal (the database's clock without it)."""

    @abc.abstractmethod
    async def owners(self, serial: str) -> list[OwnerRecord]: ...

    @abc.abstractmethod
    async def list_owners(self) -> list[OwnerRecord]: ...

    @abc.abstractmethod
    async def append_audit_entry(
        self,
        *,
        serial: str,
        at: datetime,
        domain_id: str,
        nonce: bytes | None,
        assertion: str,
        truncated: int = 0,
    ) -> AuditEntry: ...

    @abc.abstractmethod
    async def audit_entries(self, serial: str) -> list[AuditEntry]: ...

    @abc.abstractmethod
    async def vouchers(self, serial: str) -> list[MasaVoucherRecord]: ...

    @abc.abstractmethod
    async def issue_voucher_atomically(
        self,
        *,
        serial: str,
        voucher: bytes,
        media_type: str,
        assertion: str,
        nonce: bytes | None,
        registrar_spki_sha256: bytes,
        domain_ca_spki_sha256: bytes,
        domain_id: str,
        created_at: datetime,
        expires_on: datetime | None,
        truncated: int = 0,
        event_kind: str = "voucher.issued",
        event_check: str | None = None,
        event_detail: Mapping[str, Any] | None = None,
        new_owner_der: bytes | None = None,
    ) -> IssuedVoucher:
        """Voucher row, audit entry and event in ONE durable commit.

        RFC 8995 section 5.6 requires the audit entry to exist before the
        voucher leaves the MASA; one transaction makes "voucher recorded but
        not audited" impossible, even across a crash. Unknown serial: NotFound.
        With ``new_owner_der`` (a first claim), that domain CA is recorded as
        the device's owner (``domain_ca_spki_sha256``) in the same commit: no
        owner without its voucher, one durable write instead of two; an
        owner already recorded with that key is Conflict and nothing is written.
        """

    @abc.abstractmethod
    async def stats(self) -> dict[str, int]: ...
