"""Revocation at the registrar: revoke, decommission, the CRL and the OCSP responder.

Lifecycle operations (:func:`revoke_device`, :func:`decommission_device`)
need only the store, so ``brski registrar devices revoke|decommission`` can
run them against the database while the server runs. Publication needs the
CA key and lives in :class:`RevocationPublisher`, inside the server:

* CRL (RFC 5280 section 5): the newest published CRL is served while it is
  current -- its nextUpdate is more than a margin away and it lists as many
  revocations as the store holds (revocations are never undone, so the count
  tells whether anything was revoked since, also by the CLI). Otherwise a new
  one is signed with the next cRLNumber and recorded before it is served.
* OCSP (RFC 6960): every query reads the certificate's row, so an answer is
  never staler than the last committed revocation.

Both are served over plain HTTP (RFC 5280 4.2.1.13 and RFC 6960 Appendix A.1
use http URIs: the objects are signed, and a relying party checking a TLS
certificate must not need TLS to do so), see ``http_port`` in the config.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from brski.crl import RevokedEntry, build_crl, parse_reason, reason_name
from brski.errors import Conflict, NotFound
from brski.ocsp import CertStatus, OcspAnswer, read_request, respond
from brski_hsm import signing
from brski_storage.base import CertificateRecord, RegistrarStore
from brski_web.logs import kv
from registrar.context import DeviceStates, RegistrarKeys

__all__ = [
    "CRL_VALIDITY",
    "OCSP_VALIDITY",
    "RevocationPublisher",
    "decommission_device",
    "revoke_device",
]

log = logging.getLogger("brski.registrar")

CRL_VALIDITY = timedelta(hours=24)
# Re-sign before a relying party could see nextUpdate in the past.
CRL_REFRESH_MARGIN = timedelta(hours=1)
OCSP_VALIDITY = timedelta(hours=1)


async def _revoke_issued(
    store: RegistrarStore, serial: str, *, reason: x509.ReasonFlags, now: datetime, actor: str
) -> list[CertificateRecord]:
    revoked: list[CertificateRecord] = []
    for cert in await store.list_certificates(serial):
        if cert.state != "issued":
            continue
        try:
            record = await store.revoke_certificate(cert.cert_serial, reason=reason_name(reason), at=now)
        except Conflict:  # revoked concurrently: already what we want
            continue
        revoked.append(record)
        await store.append_event(
            at=now, kind="credential.revoked", device_serial=serial, outcome="allow",
            check="registrar.revoke",
            detail={"cert_serial": record.cert_serial, "reason": reason_name(reason), "by": actor},
        )
    return revoked


async def revoke_device(
    store: RegistrarStore, serial: str, *, reason: str | None, now: datetime, actor: str
) -> list[CertificateRecord]:
    """Revoke every issued LDevID of ``serial``; the device becomes "revoked".

    Every unexpired LDevID is revoked, not only the newest: after a rekey the
    previous certificate is still valid and would otherwise keep working.
    """
    flag = parse_reason(reason)
    device = await store.get_device(serial)
    if device is None:
        raise NotFound(f"unknown device {serial!r}", check="registrar.unknown-device")
    if device.state == DeviceStates.DECOMMISSIONED:
        raise Conflict(f"device {serial} is decommissioned", check="revocation.decommissioned")
    revoked = await _revoke_issued(store, serial, reason=flag, now=now, actor=actor)
    if not revoked:
        raise Conflict(f"device {serial} has no issued LDevID to revoke", check="revocation.nothing-issued")
    await store.set_device_state(
        serial, DeviceStates.REVOKED, at=now, reason=f"LDevID revoked ({reason_name(flag)}) by {actor}"
    )
    log.info(kv("revoked", serial=serial, certs=len(revoked), reason=reason_name(flag), by=actor))
    return revoked


async def decommission_device(
    store: RegistrarStore, serial: str, *, reason: str | None, now: datetime, actor: str
) -> list[CertificateRecord]:
    """Retire ``serial``: revoke its LDevIDs (cessationOfOperation unless told
    otherwise) and move it to "decommissioned"."""
    flag = parse_reason(reason or "cessationOfOperation")
    device = await store.get_device(serial)
    if device is None:
        raise NotFound(f"unknown device {serial!r}", check="registrar.unknown-device")
    if device.state == DeviceStates.DECOMMISSIONED:
        raise Conflict(f"device {serial} is already decommissioned", check="revocation.decommissioned")
    revoked = await _revoke_issued(store, serial, reason=flag, now=now, actor=actor)
    await store.set_device_state(
        serial, DeviceStates.DECOMMISSIONED, at=now, reason=f"decommissioned by {actor}"
    )
    await store.append_event(
        at=now, kind="device.decommissioned", device_serial=serial, outcome="allow",
        check="registrar.decommission",
        detail={"revoked": [c.cert_serial for c in revoked], "by": actor, "previous_state": device.state},
    )
    log.info(kv("decommissioned", serial=serial, certs=len(revoked), by=actor))
    return revoked


class RevocationPublisher:
    """Signs and serves the CRL and OCSP answers with the domain CA key."""

    def __init__(self, store: RegistrarStore, keys: RegistrarKeys) -> None:
        self.store = store
        self.keys = keys
        self._lock = asyncio.Lock()

    async def crl_der(self, *, now: datetime) -> bytes:
        """The current CRL (DER), signing a new one if needed."""
        async with self._lock:
            latest = await self.store.latest_crl()
            count = await self.store.revoked_count()
            if (
                latest is not None
                and latest.revoked_count == count
                and latest.next_update - CRL_REFRESH_MARGIN > now
                and latest.this_update <= now
            ):
                return latest.der
            number = (latest.number if latest else 0) + 1
            for _ in range(5):  # another process (a second registrar) may take a number
                der = await self._sign(number, now=now)
                try:
                    await self.store.add_crl(
                        number=number, this_update=now, next_update=now + CRL_VALIDITY,
                        revoked_count=count, der=der,
                    )
                except Conflict:
                    newest = await self.store.latest_crl()
                    number = (newest.number if newest else number) + 1
                    continue
                await self.store.append_event(
                    at=now, kind="crl.published", device_serial=None, outcome="info", check="registrar.crl",
                    detail={"number": number, "revoked": count, "next_update": (now + CRL_VALIDITY).isoformat()},
                )
                log.info(kv("crl-published", number=number, revoked=count))
                return der
            raise Conflict("could not allocate a CRL number", check="crl.number-race")

    async def _sign(self, number: int, *, now: datetime) -> bytes:
        entries = [
            RevokedEntry(
                serial=int(r.cert_serial, 16),
                revoked_at=r.revoked_at or now,
                reason=parse_reason(r.revocation_reason),
            )
            for r in await self.store.revoked_certificates()
        ]
        crl = await signing(  # in a thread when the CA key is in a token
            self.keys.ca_key,
            build_crl,
            ca_cert=self.keys.ca_cert, ca_key=self.keys.ca_key, entries=entries,
            number=number, now=now, validity=CRL_VALIDITY,
        )
        return crl.public_bytes(Encoding.DER)

    async def _status(self, serial: int) -> CertStatus:
        record = await self.store.get_certificate(serial) if serial > 0 else None
        if record is None or record.state == "reserved":
            return CertStatus(status="unknown")
        if record.state == "revoked":
            return CertStatus(
                status="revoked", revoked_at=record.revoked_at,
                reason=parse_reason(record.revocation_reason),
            )
        return CertStatus(status="good")

    async def ocsp(self, der: bytes, *, now: datetime) -> OcspAnswer:
        query = read_request(der, ca_cert=self.keys.ca_cert)
        result = query if isinstance(query, OcspAnswer) else await signing(  # in a thread for a token key
            self.keys.ca_key, respond,
            query, await self._status(query.serial), ca_cert=self.keys.ca_cert,
            ca_key=self.keys.ca_key, now=now, validity=OCSP_VALIDITY,
        )
        log.info(kv(
            "ocsp", response=result.response_status,
            serial=format(result.serial, "x") if result.serial else None, status=result.cert_status,
        ))
        return result
