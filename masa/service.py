"""The MASA's orchestration: check a registrar voucher-request, decide, sign, log.

The order matters and is the point of this module (RFC 8995 section 5.6):
every check runs first, then the ownership policy, then the voucher is
signed in memory, then the voucher, its audit-log entry and the decision
event are committed in one durable transaction, and only then is the voucher
returned. If the commit fails the registrar gets a 503 and no voucher.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509

from brski.admission import masa_ownership
from brski.artifact import sign_artifact
from brski.auditlog import AuditEvent, AuditLog
from brski.errors import BrskiError, ChainInvalid, Forbidden, NotFound, PolicyRefused
from brski.negotiate import negotiate_voucher_media
from brski.oids import MT_VOUCHER_CMS_JSON
from brski.pki import PrivateKey, Role, cert_der, fingerprint_sha256, spki_sha256, verify_chain
from brski.validation import MasaRequestCheck, aki_key_id, check_registrar_request, domain_id
from brski.voucher import Assertion, Voucher
from brski_hsm import signing
from brski_storage.base import MasaStore
from brski_web.identity import PeerIdentity
from brski_web.logs import kv
from masa.ratelimit import RateLimiter

__all__ = ["MasaService", "VoucherSigner"]

log = logging.getLogger("brski.masa")


@dataclass(frozen=True, kw_only=True)
class VoucherSigner:
    key: PrivateKey
    cert: x509.Certificate
    chain: tuple[x509.Certificate, ...]


# Verified voucher-requests remembered for /requestauditlog (see _verified).
_RECHECK_AFTER = timedelta(minutes=5)
_RECENT_MAX = 1024  # the audit-log request follows within seconds; ~14 s of history at 73/s


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class MasaService:
    def __init__(
        self,
        *,
        store: MasaStore,
        signer: VoucherSigner,
        manufacturer_anchors: list[x509.Certificate],
        ownership: str,
        nonceless_validity: timedelta,
        supported_media: tuple[str, ...] = (MT_VOUCHER_CMS_JSON,),
        rate_limiter: RateLimiter | None = None,
    ) -> None:
        self.store = store
        # RFC 8995 11.1: per-registrar token buckets (off when None or 0/min).
        self.rate_limiter = rate_limiter or RateLimiter(per_minute=0, burst=1)
        self.signer = signer
        self.anchors = manufacturer_anchors
        self.ownership = ownership
        self.nonceless_validity = nonceless_validity
        self.supported_media = supported_media
        self._recent: OrderedDict[bytes, tuple[datetime, MasaRequestCheck]] = OrderedDict()

    def _verified(self, body: bytes, media: str, *, now: datetime) -> MasaRequestCheck:
        """``check_registrar_request``, remembering recent successes.

        RFC 8995 section 5.8: the registrar posts the same signed request to
        /requestauditlog moments after /requestvoucher, and the MASA "MAY
        leverage internal state to associate this request with the original,
        and by now already validated, voucher-request so as to avoid an extra
        crypto validation" (measured: 40% of the MASA's CPU). Keyed by a hash
        of the exact bytes, kept for minutes, never past the signer's expiry,
        and only for requests that passed every check.
        """
        key = hashlib.sha256(media.encode() + b"\0" + body).digest()
        hit = self._recent.get(key)
        if hit is not None:
            checked_at, chk = hit
            if now - checked_at < _RECHECK_AFTER and now < chk.registrar_signer.not_valid_after_utc:
                return chk
            del self._recent[key]
        chk = check_registrar_request(body, media_type=media, manufacturer_anchors=self.anchors, now=now)
        self._recent[key] = (now, chk)
        if len(self._recent) > _RECENT_MAX:
            self._recent.popitem(last=False)
        return chk

    async def _check(self, body: bytes, media: str, *, now: datetime) -> MasaRequestCheck:
        chk = self._verified(body, media, now=now)
        # RFC 8995 11.1: bound how fast one registrar (its verified signing
        # key) makes us sign and log, before any store work.
        self.rate_limiter.take(spki_sha256(chk.registrar_signer), serial=chk.serial)
        # RFC 8995 section 5.6: 404 for a device this MASA does not know.
        device = await self.store.get_manufactured_device(chk.serial)
        if device is None:
            raise NotFound(
                f"device {chk.serial!r} was not made by this manufacturer",
                check="masa.unknown-device",
                serial=chk.serial,
            )
        if chk.idevid is not None and fingerprint_sha256(chk.idevid) != device.idevid_fingerprint:
            raise Forbidden(
                f"the IDevID that signed the pledge request is not the one made for {chk.serial!r}",
                check="masa.idevid-mismatch",
                serial=chk.serial,
            )
        return chk

    def registrar_authenticated(self, chk: MasaRequestCheck, peer: PeerIdentity | None, *, now: datetime) -> bool:
        """RFC 8995 5.5.4 (EST 3.3.2 style): is the TLS client the registrar that signed?

        True when the TLS client certificate is the voucher-request signer's,
        or is another registrar certificate (id-kp-cmcRA, as 5.5.4 asks of the
        signer) that chains to the domain CA the request carries (the one the
        voucher would pin). A device's LDevID from the same domain is not a
        registrar. False without a client certificate.
        """
        if peer is None or peer.leaf is None:
            return False
        if spki_sha256(peer.leaf) == spki_sha256(chk.registrar_signer):
            return True
        try:
            verify_chain(
                peer.leaf,
                intermediates=[*peer.chain, *chk.artifact.certificates],
                anchors=[chk.domain_cert],
                now=now,
                role=Role.REGISTRAR_RA,
            )
        except ChainInvalid:
            return False
        return True

    async def request_voucher(
        self,
        *,
        body: bytes,
        content_type: str | None,
        accept: str | None,
        now: datetime,
        peer: PeerIdentity | None = None,
    ) -> tuple[bytes, str]:
        """RFC 8995 sections 5.5 and 5.6: returns (voucher bytes, media type)."""
        req_media, resp_media = negotiate_voucher_media(content_type, accept, self.supported_media)
        chk = await self._check(body, req_media, now=now)
        domain = spki_sha256(chk.domain_cert)
        owners = await self.store.owners(chk.serial)
        nonceless = chk.nonce is None
        decision = masa_ownership(
            mode=self.ownership,
            domain=domain,
            owners=[o.domain_ca_spki_sha256 for o in owners],
            nonceless=nonceless,
            registrar_authenticated=self.registrar_authenticated(chk, peer, now=now),
        )
        if not decision.allow:
            raise PolicyRefused(decision.detail, check=decision.rule, serial=chk.serial)
        if chk.proximity:
            assertion = Assertion.PROXIMITY  # RFC 8995 section 5.5.5
        elif owners:
            assertion = Assertion.VERIFIED
        else:
            assertion = Assertion.LOGGED
        # Whole seconds, as the signed voucher carries it (sign_artifact).
        expires_on = (now + self.nonceless_validity).replace(microsecond=0) if nonceless else None
        voucher = Voucher(
            # Whole seconds, as sign_artifact sends it: built so, the voucher
            # is not built (and validated) a second time there.
            created_on=now.replace(microsecond=0),
            expires_on=expires_on,
            assertion=assertion,
            serial_number=chk.serial,
            nonce=chk.nonce,
            idevid_issuer=aki_key_id(chk.idevid) if chk.idevid is not None else None,
            pinned_domain_cert=cert_der(chk.domain_cert),
            domain_cert_revocation_checks=False,
        )
        raw = await signing(  # in a thread when the key is in a token
            self.signer.key,
            sign_artifact,
            voucher,
            media_type=resp_media,
            key=self.signer.key,
            cert=self.signer.cert,
            chain=self.signer.chain,
        )
        did = _b64(domain_id(chk.domain_cert))
        registrar = chk.registrar_signer.subject.rfc4514_string()  # for the event and the log line
        # RFC 8995 section 5.6: the audit log is written before the voucher
        # leaves; a failed commit raises StorageError (503) and nothing is sent.
        # A first claim records the owner in the same commit.
        await self.store.issue_voucher_atomically(
            serial=chk.serial,
            voucher=raw,
            media_type=resp_media,
            assertion=str(assertion),
            nonce=chk.nonce,
            registrar_spki_sha256=spki_sha256(chk.registrar_signer),
            domain_ca_spki_sha256=domain,
            domain_id=did,
            created_at=now,
            expires_on=expires_on,
            new_owner_der=cert_der(chk.domain_cert) if decision.record_owner else None,
            event_kind="voucher.issued",
            event_check=decision.rule,
            event_detail={
                "assertion": str(assertion),
                "domain_id": did,
                "registrar": registrar,
                "nonceless": nonceless,
            },
        )
        log.info(
            kv(
                "voucher-issued",
                serial=chk.serial,
                assertion=str(assertion),
                domain=did,
                rule=decision.rule,
                registrar=registrar,
            )
        )
        return raw, resp_media

    async def request_audit_log(
        self, *, body: bytes, content_type: str | None, now: datetime
    ) -> AuditLog:
        """RFC 8995 section 5.8: the log of a device, for a domain that claimed it."""
        req_media, _ = negotiate_voucher_media(content_type, None, self.supported_media)
        chk = await self._check(body, req_media, now=now)
        did = _b64(domain_id(chk.domain_cert))
        # RFC 8995 section 5.8: 404 for a requester that was never an owner,
        # i.e. no audit entry names its domain (read with the entries: one
        # snapshot, one read).
        entries = await self.store.audit_entries(chk.serial)
        if not any(e.domain_id == did for e in entries):
            raise NotFound(
                f"this domain never claimed device {chk.serial!r}",
                check="masa.auditlog.not-claimed",
                serial=chk.serial,
            )
        await self.store.append_event(
            at=now,
            kind="auditlog.served",
            device_serial=chk.serial,
            outcome="allow",
            check="masa.auditlog.claimed",
            detail={"domain_id": did, "entries": len(entries)},
        )
        return AuditLog(
            events=tuple(
                AuditEvent(
                    date=e.at,
                    domain_id=e.domain_id,
                    # RFC 8995 5.8.1: null when the voucher had no nonce.
                    nonce=_b64(e.nonce) if e.nonce is not None else None,
                    assertion=e.assertion,
                    truncated=e.truncated,
                )
                for e in entries
            )
        )

    async def record_refusal(self, *, kind: str, err: BrskiError, now: datetime) -> None:
        serial = err.extra.get("serial")
        await self.store.append_event(
            at=now,
            kind=kind,
            device_serial=serial if isinstance(serial, str) else None,
            outcome="refuse",
            check=err.check,
            detail={"status": err.http_status, "detail": err.detail},
        )
