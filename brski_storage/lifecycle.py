"""Storage for the LDevID lifecycle after issuance: renewal and published CRLs.

Kept apart from :mod:`brski_storage.base` so that the certificate lifecycle
and the admission policy grow the registrar store side
by side; :class:`brski_storage.base.RegistrarStore` inherits this interface,
so roles still program against one store.

The rules (schema version 3, ``0003_renewal_and_crls.sql``):

* A key is certified *afresh* at most once: a first enrolment or a rekey
  with a key that any certificate row already carries is ``Conflict``. So a
  key never belongs to two devices.
* A same-key renewal (RFC 7030 4.2.2 "renew") is a new row naming the
  certificate it renews; the database checks that it keeps that row's key
  and device, and that each certificate is renewed with its key only once.
* CRL numbers increase monotonically (RFC 5280 5.2.3): every CRL the CA
  publishes is kept, the newest is served.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from brski_storage.base import CertificateRecord

__all__ = ["CrlRecord", "LifecycleStore"]


@dataclass(frozen=True, kw_only=True)
class CrlRecord:
    """A CRL as published; ``revoked_count`` is how many revocations it lists."""

    number: int
    this_update: datetime
    next_update: datetime
    revoked_count: int
    der: bytes


class LifecycleStore(abc.ABC):
    @abc.abstractmethod
    async def reserve_renewal(
        self, *, cert_serial: int | str, renews: int | str, spki_sha256: bytes, at: datetime
    ) -> CertificateRecord:
        """Reserve a serial for a same-key renewal of certificate ``renews``.

        The new row takes the device and the key of ``renews`` (which must be
        issued, not revoked); a second renewal of the same certificate, or a
        different key, is ``Conflict(check="storage.duplicate-key")``.
        Committed without a flush of its own, as ``reserve_certificate``.
        """

    @abc.abstractmethod
    async def latest_certificate_for_key(self, spki_sha256: bytes) -> CertificateRecord | None:
        """The newest row for this key (renewals share a key), or None."""

    @abc.abstractmethod
    async def revoked_count(self) -> int:
        """How many certificates are revoked: tells whether the newest CRL is current."""

    @abc.abstractmethod
    async def add_crl(
        self,
        *,
        number: int,
        this_update: datetime,
        next_update: datetime,
        revoked_count: int,
        der: bytes,
    ) -> CrlRecord:
        """Record a published CRL; a number already used is ``Conflict``."""

    @abc.abstractmethod
    async def latest_crl(self) -> CrlRecord | None: ...

    @abc.abstractmethod
    async def latest_crl_number(self) -> int | None:
        """The newest CRL's number (None before the first): a primary-key point
        read, so a caller that holds that CRL parsed need not read its DER again."""
