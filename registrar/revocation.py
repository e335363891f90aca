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
* RFC 5280 3.3: revocation is never undone, so an entry stays on every CRL
  until its certificate expires. Each new CRL keeps the previous CRL's
  unexpired entries even if the store lost a row, a certificate the last
  CRL lists is never "good" to OCSP nor accepted for /simplereenroll, and a
  store that contradicts its last CRL (a row edited back to 'issued', an old
  backup) is refused at start-up (:func:`check_published_crl`) and reported
  by ``brski registrar audit verify``.

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

from brski.crl import (
    CertRow,
    CrlDisagreement,
    PublishedCrl,
    RevokedEntry,
    build_crl,
    crl_disagreements,
    parse_reason,
    reason_name,
)
from brski.errors import BrskiError, ConfigError, Conflict, NotFound
from brski.lifecycle import DeviceState
from brski.ocsp import CertStatus, OcspAnswer, read_request, respond
from brski_hsm import signing
from brski_storage.base import CertificateRecord, RegistrarStore
from brski_web.logs import kv
from registrar.identity import RegistrarKeys

__all__ = [
    "CRL_VALIDITY",
    "OCSP_VALIDITY",
    "RevocationPublisher",
    "check_published_crl",
    "crl_consistency",
    "decommission_device",
    "describe_disagreements",
    "revoke_device",
    "revoke_issued",
]

log = logging.getLogger("brski.registrar")

CRL_VALIDITY = timedelta(hours=24)
# Re-sign before a relying party could see nextUpdate in the past.
CRL_REFRESH_MARGIN = timedelta(hours=1)
OCSP_VALIDITY = timedelta(hours=1)


async def revoke_issued(
    store: RegistrarStore, serial: str, *, reason: x509.ReasonFlags, now: datetime, actor: str,
    keep: str | None = None, check: str = "registrar.revoke",
) -> list[CertificateRecord]:
    """Revoke every issued LDevID of ``serial``; one event each.

    With ``keep``, only those issued before it (the store lists a device's
    certificates in issuance order): of two concurrent enrolments the newer
    one survives, never neither.
    """
    revoked: list[CertificateRecord] = []
    for cert in await store.list_certificates(serial):
        if cert.cert_serial == keep:
            break
        if cert.state != "issued":
            continue
        try:
            record = await store.revoke_certificate(cert.cert_serial, reason=reason_name(reason), at=now)
        except Conflict:  # revoked concurrently: already what we want
            continue
        revoked.append(record)
        await store.append_event(
            at=now, kind="credential.revoked", device_serial=serial, outcome="allow",
            check=check,
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
    if device.state == DeviceState.DECOMMISSIONED:
        raise Conflict(f"device {serial} is decommissioned", check="revocation.decommissioned")
    revoked = await revoke_issued(store, serial, reason=flag, now=now, actor=actor)
    if not revoked:
        raise Conflict(f"device {serial} has no issued LDevID to revoke", check="revocation.nothing-issued")
    await store.set_device_state(
        serial, DeviceState.REVOKED, at=now, reason=f"LDevID revoked ({reason_name(flag)}) by {actor}"
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
    if device.state == DeviceState.DECOMMISSIONED:
        raise Conflict(f"device {serial} is already decommissioned", check="revocation.decommissioned")
    revoked = await revoke_issued(store, serial, reason=flag, now=now, actor=actor)
    await store.set_device_state(
        serial, DeviceState.DECOMMISSIONED, at=now, reason=f"decommissioned by {actor}"
    )
    await store.append_event(
        at=now, kind="device.decommissioned", device_serial=serial, outcome="allow",
        check="registrar.decommission",
        detail={"revoked": [c.cert_serial for c in revoked], "by": actor, "previous_state": device.state},
    )
    log.info(kv("decommissioned", serial=serial, certs=len(revoked), by=actor))
    return revoked


async def _rows_for(store: RegistrarStore, serials: list[int]) -> dict[int, CertRow]:
    """Store rows for ``serials``: the revoked ones in one query, the rest one by one."""
    rows = {int(r.cert_serial, 16): CertRow(state=r.state, not_after=r.not_after)
            for r in await store.revoked_certificates()}
    for serial in serials:
        if serial not in rows:
            record = await store.get_certificate(serial)
            if record is not None:
                rows[serial] = CertRow(state=record.state, not_after=record.not_after)
    return rows


async def crl_consistency(
    store: RegistrarStore, *, ca_cert: x509.Certificate | None, now: datetime
) -> list[CrlDisagreement]:
    """Every entry of the last published CRL that the store contradicts (RFC 5280 3.3).

    With ``ca_cert`` the stored CRL's signature is checked too, so a forged
    row in ``crls`` cannot vouch for an edited store.
    """
    latest = await store.latest_crl()
    if latest is None:
        return []
    try:
        published = PublishedCrl(latest.der, ca_cert=ca_cert)
    except BrskiError as exc:
        return [CrlDisagreement(serial=0, check=exc.check, detail=f"CRL number {latest.number}: {exc.detail}")]
    rows = await _rows_for(store, list(published.serials))
    return crl_disagreements(published.serials, rows, now=now)


def describe_disagreements(problems: list[CrlDisagreement]) -> list[str]:
    return [f"certificate {p.serial:x}: {p.detail} [{p.check}]" for p in problems]


async def check_published_crl(
    store: RegistrarStore, keys: RegistrarKeys, *, now: datetime, allow_mismatch: bool
) -> None:
    """At start-up: refuse to serve on a store that contradicts its last CRL.

    Serving would answer OCSP "good" for a certificate the domain already
    declared revoked. ``allow_mismatch`` (``--allow-crl-mismatch``) serves
    anyway, logged and recorded; the CRL, OCSP and re-enrolment still treat
    every listed certificate as revoked (RevocationPublisher).
    """
    problems = await crl_consistency(store, ca_cert=keys.ca_cert, now=now)
    if not problems:
        return
    lines = describe_disagreements(problems)
    await store.append_event(
        at=now, kind="crl.store-disagrees", device_serial=None,
        outcome="info" if allow_mismatch else "refuse", check="crl.store-disagrees",
        detail={"problems": lines, "allowed": allow_mismatch},
    )
    if not allow_mismatch:
        raise ConfigError(
            "the store contradicts the last published CRL (RFC 5280 3.3: a revocation is never undone); "
            f"refusing to serve [check crl.store-disagrees]: {'; '.join(lines)}. "
            "Restore the store, or start with --allow-crl-mismatch to serve with the CRL's revocations in force",
            check="crl.store-disagrees",
        )
    log.warning(kv("crl-store-disagrees-allowed", problems=len(lines), first=lines[0]))


class RevocationPublisher:
    """Signs and serves the CRL and OCSP answers with the domain CA key."""

    def __init__(self, store: RegistrarStore, keys: RegistrarKeys) -> None:
        self.store = store
        self.keys = keys
        self._lock = asyncio.Lock()
        # The last published CRL, parsed once per CRL number.
        self._published: tuple[int, PublishedCrl] | None = None

    async def published(self) -> PublishedCrl | None:
        """The newest CRL in the store (None before the first).

        Its number is read on every call (RFC 5280 3.3: a revocation counts from
        publication, whichever process published it); its DER only when the
        number is not the one already parsed here.
        """
        return await self.published_numbered(await self.store.latest_crl_number())

    async def published_numbered(self, number: int | None) -> PublishedCrl | None:
        """:meth:`published`, given the newest CRL's number as the caller read
        it for this request (``est_facts``, with the request's other facts)."""
        if number is None:
            return None
        if self._published is not None and self._published[0] == number:
            return self._published[1]
        latest = await self.store.latest_crl()
        if latest is None:
            return None
        if self._published is None or self._published[0] != latest.number:
            self._published = (latest.number, PublishedCrl(latest.der))
        return self._published[1]

    async def listed_in(self, serial: int, crl_number: int | None) -> bool:
        """Is ``serial`` on the published CRL numbered ``crl_number`` (the newest
        one's, as this request read it with its other facts), whatever its row
        says now?"""
        published = await self.published_numbered(crl_number)
        return published is not None and serial in published.serials

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
        entries = {
            int(r.cert_serial, 16): RevokedEntry(
                serial=int(r.cert_serial, 16),
                revoked_at=r.revoked_at or now,
                reason=parse_reason(r.revocation_reason),
            )
            for r in await self.store.revoked_certificates()
        }
        # RFC 5280 3.3: the previous CRL's entries stay until their
        # certificate expires, whatever the store says now.
        previous = await self.published()
        missing = [s for s in previous.serials if s not in entries] if previous is not None else []
        if previous is not None and missing:
            rows = await _rows_for(self.store, missing)
            for serial in missing:
                row = rows.get(serial)
                kept = previous.entry(serial)
                if kept is not None and (row is None or row.not_after is None or row.not_after > now):
                    entries[serial] = kept
        crl = await signing(  # in a thread when the CA key is in a token
            self.keys.ca_key,
            build_crl,
            ca_cert=self.keys.ca_cert, ca_key=self.keys.ca_key, entries=list(entries.values()),
            number=number, now=now, validity=CRL_VALIDITY,
        )
        return crl.public_bytes(Encoding.DER)

    async def cert_status(self, serial: int) -> CertStatus:
        """What OCSP answers for ``serial`` (the console shows the same)."""
        record = await self.store.get_certificate(serial) if serial > 0 else None
        if record is None or record.state == "reserved":
            return CertStatus(status="unknown")
        if record.state == "revoked":
            return CertStatus(
                status="revoked", revoked_at=record.revoked_at,
                reason=parse_reason(record.revocation_reason),
            )
        published = await self.published()
        listed = published.entry(serial) if published is not None else None
        if listed is not None:  # RFC 5280 3.3: never "good" once published as revoked
            return CertStatus(status="revoked", revoked_at=listed.revoked_at, reason=listed.reason)
        return CertStatus(status="good")

    async def ocsp(self, der: bytes, *, now: datetime) -> OcspAnswer:
        query = read_request(der, ca_cert=self.keys.ca_cert)
        result = query if isinstance(query, OcspAnswer) else await signing(  # in a thread for a token key
            self.keys.ca_key, respond,
            query, await self.cert_status(query.serial), ca_cert=self.keys.ca_cert,
            ca_key=self.keys.ca_key, now=now, validity=OCSP_VALIDITY,
        )
        log.info(kv(
            "ocsp", response=result.response_status,
            serial=format(result.serial, "x") if result.serial else None, status=result.cert_status,
        ))
        return result
