"""Storage for the domain CA's certificates: recorded once signed, revoked, read.

Kept apart from :mod:`brski_storage.base` like the lifecycle store;
:class:`brski_storage.base.RegistrarStore` inherits this interface, so roles
still program against one store. The rows are
:class:`brski_storage.records.CertificateRecord`, one per serial the domain CA
signed or reserved (RFC 5280 4.1.2.2: serials unique among the CA's
certificates); a key is certified afresh at most once (see
:mod:`brski_storage.lifecycle`).
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from brski_storage.records import (
    ApprovalRecord,
    AuditLogRecord,
    CertificateRecord,
    DeviceRecord,
    NewEvent,
    StateChange,
)

__all__ = ["CertificateStore", "EstFacts", "Supersede"]


@dataclass(frozen=True, kw_only=True)
class EstFacts:
    """What one EST request checks about its client, read from one snapshot
    (:meth:`CertificateStore.est_facts`); a part not asked for is empty."""

    #: The row of the client's LDevID, by the serial of the certificate it presented.
    client_certificate: CertificateRecord | None = None
    #: The device asked for, or the LDevID row's device.
    device: DeviceRecord | None = None
    #: The operator's approval decision on the device (RFC 8995 5.8.3 gate).
    approval: ApprovalRecord | None = None
    #: The newest MASA audit log fetched for the device (RFC 8995 5.8.3 gate).
    audit_log: AuditLogRecord | None = None
    #: The device's certificates, oldest reservation first (the issuance limit).
    certificates: tuple[CertificateRecord, ...] = ()
    #: The newest row for the CSR's key (renewals share a key), if any.
    key_certificate: CertificateRecord | None = None
    #: The newest published CRL's number (RFC 5280 3.3), None before the first.
    crl_number: int | None = None


@dataclass(frozen=True, kw_only=True)
class Supersede:
    """Who supersedes a device's earlier LDevIDs, for each revocation's
    event (:meth:`CertificateStore.record_issued_superseding`)."""

    by: str
    check: str

    def __post_init__(self) -> None:
        if not self.by or not self.check:
            raise ValueError("a supersede names who supersedes and the rule")


class CertificateStore(abc.ABC):
    @abc.abstractmethod
    async def record_issued_certificate(
        self,
        *,
        cert_serial: int | str,
        device_serial: str,
        spki_sha256: bytes,
        der: bytes,
        not_before: datetime,
        not_after: datetime,
        at: datetime,
        renews: int | str | None = None,
        events: Sequence[NewEvent] = (),
        then: StateChange | None = None,
    ) -> CertificateRecord:
        """Record a certificate signed under a serial nobody reserved: one
        flushed transaction, the reservation's checks and the completion's
        writes together.

        Inside the transaction it refuses, with ``Conflict``, what
        :meth:`reserve_certificate` (``renews`` None: a key certified before,
        a serial used before) or ``reserve_renewal`` (``renews``: a
        certificate already renewed, not issued, or another key or device)
        would have refused; otherwise it inserts the row as 'issued'
        (``reserved_at`` = ``at``), with ``events`` and ``then`` as
        :meth:`complete_certificate` writes them. A refused certificate is
        to be discarded: it never left the registrar, so no serial or key
        was handed out twice (RFC 5280 4.1.2.2: serials unique among the
        CA's certificates). A crash before the COMMIT leaves nothing
        recorded and nothing released; after it, the certificate is durable
        before the caller is answered.
        """

    @abc.abstractmethod
    async def record_issued_superseding(
        self,
        *,
        supersede: Supersede,
        cert_serial: int | str,
        device_serial: str,
        spki_sha256: bytes,
        der: bytes,
        not_before: datetime,
        not_after: datetime,
        at: datetime,
        events: Sequence[NewEvent] = (),
        then: StateChange | None = None,
    ) -> tuple[CertificateRecord, tuple[CertificateRecord, ...]]:
        """:meth:`record_issued_certificate` of a certificate that renews
        nothing, which in the same transaction also revokes every certificate
        of the device recorded before it and still issued (RFC 5280 5.3.1
        reason superseded, at ``at``): each with its state evidence and, after
        ``events``, a ``credential.revoked`` event naming ``supersede``.
        Certificates recorded after it are kept (of two concurrent
        enrolments the newer survives, never neither). Returns the new row and
        the revoked ones, oldest first. A refused recording revokes nothing.
        """

    @abc.abstractmethod
    async def reserve_certificate(
        self, *, cert_serial: int | str, device_serial: str, spki_sha256: bytes, at: datetime
    ) -> CertificateRecord:
        """Claim a serial and a key before signing (the registrar now signs
        first and uses :meth:`record_issued_certificate`; rows reserved by
        older versions are still completed).

        Reserving first means a crash between signing and recording can never
        produce a certificate the registrar has forgotten, nor hand the same
        serial out twice. A reused serial or an already-certified key raises
        ``Conflict(check="storage.duplicate-key")``. A reservation orphaned by
        a crash is visible through ``certificate_by_spki`` in state
        'reserved' and may be completed later with the same serial.

        The reservation is answered once committed (visible to every later
        write and read), without waiting for its own flush to stable
        storage: a crash can lose it only together with everything after
        it, so only before :meth:`complete_certificate` was flushed, and then
        the signed certificate never left the registrar. The completion is
        always flushed before it is answered, and its flush makes the
        reservation durable too (brski_storage.writer).
        """

    @abc.abstractmethod
    async def complete_certificate(
        self,
        cert_serial: int | str,
        *,
        der: bytes,
        not_before: datetime,
        not_after: datetime,
        at: datetime,
        events: Sequence[NewEvent] = (),
        then: StateChange | None = None,
    ) -> CertificateRecord:
        """reserved -> issued; anything else is ``Conflict``, unknown is NotFound.
        With ``then``, the certificate's device changes state in the same
        transaction (see StateChange)."""

    @abc.abstractmethod
    async def get_certificate(self, cert_serial: int | str) -> CertificateRecord | None: ...

    @abc.abstractmethod
    async def certificate_by_spki(self, spki_sha256: bytes) -> CertificateRecord | None: ...

    @abc.abstractmethod
    async def current_certificate(self, device_serial: str) -> CertificateRecord | None:
        """The latest issued and unrevoked certificate of a device."""

    @abc.abstractmethod
    async def revoke_certificate(
        self, cert_serial: int | str, *, reason: str, at: datetime
    ) -> CertificateRecord:
        """issued -> revoked; anything else is ``Conflict``, unknown is NotFound."""

    @abc.abstractmethod
    async def revoked_certificates(self) -> list[CertificateRecord]:
        """Every revoked certificate, oldest revocation first (CRL input)."""

    @abc.abstractmethod
    async def list_certificates(self, device_serial: str) -> list[CertificateRecord]:
        """A device's certificates in the order they were reserved (oldest first)."""

    @abc.abstractmethod
    async def est_facts(
        self,
        *,
        device_serial: str | None = None,
        cert_serial: int | str | None = None,
        spki_sha256: bytes | None = None,
        gate: bool = False,
        certificates: bool = False,
        crl_number: bool = False,
    ) -> EstFacts:
        """The facts one EST request checks, read in ONE read transaction, so
        they are one snapshot of the store (never a mix of before and after a
        concurrent write) and one read instead of one per fact.

        The device is ``device_serial`` (a client on its IDevID) or the
        device of certificate ``cert_serial``'s row (a client on an LDevID:
        ``client_certificate``; no such row, no device and nothing else);
        exactly one of the two is given. With ``gate``, the device's
        approval and newest audit log; with ``certificates``, the device's
        certificates (as :meth:`list_certificates`); with ``spki_sha256``,
        the newest row for that key, whichever device it belongs to (as
        ``latest_certificate_for_key``); with ``crl_number``, the newest
        published CRL's number (as ``latest_crl_number``).
        """
