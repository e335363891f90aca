"""Who gets which LDevID, how many, and what happens to the previous ones.

Three registrar rules around EST issuance, with their facts read here and
their decisions pure (:mod:`brski.ldevid`):

* identity binding (RFC 8995 5.9.2): the LDevID's subject, key purposes and
  names come from the device's profile; a CSR asking for more is ignored
  (and that is recorded) or refused with ``est.csr-not-granted``, per
  ``ldevid_csr_extras``;
* an issuance limit per device: at most ``limit`` certificates reserved in
  any ``window``, else 429 with Retry-After (RFC 6585 section 4) naming
  ``est.issuance-limit``; this bounds what one IDevID (or one stolen
  LDevID) can mint;
* one valid LDevID per device: a certificate issued through the IDevID path
  (a factory-reset device enrolling again) supersedes the device's earlier
  ones, which are revoked with reason superseded (RFC 5280 5.3.1), each an
  event. Renewal (RFC 7030 4.2.2) keeps the overlap a rollover needs.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cryptography import x509

from brski.errors import PolicyRefused, RateLimited
from brski.ldevid import LdevidGrant, LdevidProfiles, csr_beyond_grant
from brski_storage.base import CertificateRecord, DeviceRecord, RegistrarStore
from brski_web.logs import kv
from registrar.revocation import revoke_issued

__all__ = ["IssuancePolicy"]

log = logging.getLogger("brski.registrar")


@dataclass(frozen=True, kw_only=True)
class IssuancePolicy:
    profiles: LdevidProfiles = field(default_factory=LdevidProfiles)
    # The names a manufacturer goes by, keyed by what the device row stores
    # (the anchor subject): its [[registrar.manufacturers]] name, for profiles.
    manufacturer_names: Mapping[str, Sequence[str]] = field(default_factory=dict)
    supersede: bool = True
    limit: int = 10  # 0: no limit
    window: timedelta = timedelta(days=1)

    def grant(self, device: DeviceRecord) -> LdevidGrant:
        names = (device.manufacturer, *self.manufacturer_names.get(device.manufacturer, ()))
        return self.profiles.grant(serial=device.serial, manufacturers=names)

    def beyond_grant(self, csr: x509.CertificateSigningRequest, grant: LdevidGrant, *, serial: str) -> tuple[str, ...]:
        """What the CSR asks for beyond ``grant``: refused, or returned to be recorded as ignored."""
        asked = csr_beyond_grant(csr, grant)
        if asked and self.profiles.csr_extras == "refuse":
            raise PolicyRefused(
                f"the CSR asks for what the registrar does not grant this device: {'; '.join(asked)}",
                check="est.csr-not-granted",
                serial=serial,
            )
        return asked

    def check_limit_on(self, certificates: Sequence[CertificateRecord], serial: str, *, now: datetime) -> None:
        """The issuance limit on ``serial``'s certificates as the request read
        them (``est_facts(certificates=True)``, on every EST request)."""
        if self.limit == 0:
            return
        if any(c.device_serial != serial for c in certificates):
            raise ValueError(f"the issuance limit for {serial} was handed another device's certificates")
        since = now - self.window
        recent = sorted(c.reserved_at for c in certificates if c.reserved_at > since)
        if len(recent) < self.limit:
            return
        # The next issuance fits once the oldest that counts leaves the window.
        wait = recent[-self.limit] + self.window - now
        raise RateLimited(
            f"device {serial} was issued {len(recent)} certificates in the last "
            f"{int(self.window.total_seconds())} s (limit {self.limit})",
            check="est.issuance-limit",
            serial=serial,
            retry_after=max(1, math.ceil(wait.total_seconds())),
        )

    async def supersede_previous(
        self, store: RegistrarStore, serial: str, *, keep: str, now: datetime
    ) -> list[CertificateRecord]:
        """Revoke (superseded) every issued LDevID of ``serial`` but ``keep``."""
        if not self.supersede:
            return []
        revoked = await revoke_issued(
            store, serial, reason=x509.ReasonFlags.superseded, now=now, actor=f"registrar (superseded by {keep})",
            keep=keep, check="registrar.supersede",
        )
        self.log_superseded(serial, revoked, keep=keep)
        return revoked

    @staticmethod
    def log_superseded(serial: str, revoked: Sequence[CertificateRecord], *, keep: str) -> None:
        for record in revoked:
            log.info(kv("superseded", serial=serial, cert_serial=record.cert_serial, by=keep))
