"""BRSKI voucher brokering at the registrar (RFC 8995 sections 5.2-5.8).

A voucher-request is forwarded to the MASA only after the pledge proved it
holds the IDevID, the IDevID chains to a trusted manufacturer, and the request
is signed by that IDevID and names this registrar. Whether it is forwarded,
parked for an operator or refused is decided by the pure
:func:`brski.admission.decide_voucher_request` from facts read once; its plan
is committed in one transaction before the MASA is asked. The voucher the MASA
returns is checked for transparency (5.6), stored, and passed on unchanged.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

from cryptography import x509

from brski.admission import (
    Park,
    PlannedEvent,
    Refuse,
    Transition,
    VoucherRequestFacts,
    decide_voucher_request,
)
from brski.artifact import sign_artifact, verify_artifact
from brski.errors import (
    BadGateway,
    BrskiError,
    Conflict,
    MalformedInput,
    PolicyRefused,
    Unauthenticated,
)
from brski.lifecycle import DeviceState
from brski.negotiate import negotiate_voucher_media
from brski.oids import MT_VOUCHER_CMS_JSON
from brski.pki import fingerprint_sha256, masa_url
from brski.telemetry import StatusReport, parse_status
from brski.validation import aki_key_id, base64_voucher_request, check_pledge_request
from brski.voucher import Voucher, VoucherRequest
from brski_hsm import signing
from brski_storage import (
    NewAuditLog,
    NewDevice,
    NewEvent,
    NewVoucherRequest,
    RegistrarStore,
    StateChange,
)
from brski_web.identity import PeerIdentity
from brski_web.logs import kv
from registrar.admission import AdmissionControl, Manufacturer
from registrar.evidence import new_event
from registrar.identity import ClientIdentity, RegistrarKeys
from registrar.masa_client import MasaClient

__all__ = ["VoucherService"]

log = logging.getLogger("brski.registrar")

# Devices whose MASA URL is remembered between voucher and audit-log fetch
# (the pledge asks for its voucher status right after its voucher; a device
# past the bound has its stored request verified again).  About 230 bytes an
# entry: 4096 hold ~1 MB where 100,000 held ~23 MB in a long-running registrar.
_MASA_OF_MAX = 4096


class VoucherService:
    def __init__(
        self,
        *,
        store: RegistrarStore,
        keys: RegistrarKeys,
        clients: ClientIdentity,
        admission: AdmissionControl,
        masa: MasaClient,
        masa_url_override: str | None,
        supported_media: tuple[str, ...] = (MT_VOUCHER_CMS_JSON,),
        accept_base64: bool = False,
        reonboard_decommissioned: bool = True,
    ) -> None:
        self.store = store
        self.keys = keys
        self.clients = clients
        self.admission = admission
        self.masa = masa
        # Network access (registrar/mud_service.py): told of every IDevID seen
        # in a voucher exchange, to learn its MUD URL (RFC 8520 10).
        self.on_idevid: Callable[[str, x509.Certificate, datetime], Awaitable[None]] | None = None
        self.masa_url_override = masa_url_override
        self.supported_media = supported_media
        # Interop labs only (config accept_base64_voucher_requests).
        self.accept_base64 = accept_base64
        # Lifecycle policy: may a decommissioned device onboard again after a
        # factory reset? (config reonboard_decommissioned)
        self.reonboard_decommissioned = reonboard_decommissioned
        # serial -> the MASA its IDevID names, learned while the chain was
        # verified, so the audit-log fetch need not verify the request again.
        self._masa_of: OrderedDict[str, str] = OrderedDict()

    def _manufacturer(self, chain_top: x509.Certificate) -> str:
        return chain_top.subject.rfc4514_string()

    async def request_voucher(
        self, *, body: bytes, content_type: str | None, accept: str | None, peer: PeerIdentity, now: datetime
    ) -> tuple[bytes, str] | Park:
        """RFC 8995 sections 5.2-5.6: check the pledge, decide, commit, ask its MASA.

        Returns the MASA's voucher (to pass on unchanged) or, when an
        operator has to decide first, the :class:`Park` plan the HTTP layer
        answers with 202 + Retry-After. Refusals raise, naming the check.
        """
        req_media, resp_media = negotiate_voucher_media(content_type, accept, self.supported_media)
        if peer.leaf is None:
            # RFC 8995 section 5.3: the pledge authenticates with its IDevID.
            raise Unauthenticated("no TLS client certificate (IDevID) presented", check="tls.client-cert")
        body, encoding = self._der_body(body, req_media, peer)
        # RFC 8995 5.3: which manufacturer (anchor, or first-use pin) vouches for this IDevID.
        mfr = await self.admission.manufacturer(peer.leaf, chain=peer.chain, now=now)
        chk = check_pledge_request(
            body,
            media_type=req_media,
            tls_client_cert=peer.leaf,
            tls_client_chain=peer.chain,
            manufacturer_anchors=mfr.anchors,
            own_certs=[self.keys.tls_cert],
            now=now,
        )
        idevid, serial = chk.idevid, chk.serial
        anchor = chk.idevid_chain[-1] if chk.idevid_chain else idevid
        # The facts, read once. The device record pins the IDevID seen now
        # (RFC 8995 5.3; a different one under this serial is a Conflict,
        # checked here and again inside the decision's transaction). A new
        # device is recorded with the decision, so a refusal commits nothing.
        seen = NewDevice(
            idevid_issuer=idevid.issuer.rfc4514_string(),
            idevid_fingerprint=fingerprint_sha256(idevid),
            manufacturer=self._manufacturer(anchor),
        )
        device = await self.store.get_device(serial)
        if device is not None:
            seen.check_same(device)
            await self._note_idevid(serial, idevid, now)
        approval = await self.store.get_approval(serial)
        cfg = self.admission.cfg
        plan = decide_voucher_request(
            VoucherRequestFacts(
                serial=serial,
                state=DeviceState(device.state) if device is not None else None,
                manufacturer=mfr.name,
                manufacturer_subject=seen.manufacturer,
                manufacturer_policy=mfr.policy,
                first_use_pin=mfr.pin is not None,
                approval=approval.decision if approval is not None else None,
                allow_serials=cfg.allow_serials,
                deny_serials=cfg.deny_serials,
                unlisted=cfg.unlisted_devices,
                reonboard_decommissioned=self.reonboard_decommissioned,
                retry_after_s=cfg.approval_retry_after_s,
                masa=self.masa_url_override or masa_url(idevid),
                nonce=chk.request.nonce,
                idevid_issuer=aki_key_id(idevid),
                pledge_request=body,
            ),
            now=now,
        )
        if isinstance(plan, Refuse):
            raise plan.error  # recorded as a refusal by the HTTP layer, nothing committed
        if isinstance(plan, Park):
            await self._commit(serial, plan.transitions, plan.events, now=now, device=seen, queue_for_approval=True)
            if device is None:
                await self._note_idevid(serial, idevid, now)
            return plan
        # RFC 8995 section 5.5: include the chain the MASA should pin; the TLS
        # certificate rides along so the MASA can see that the pledge's
        # proximity-registrar-cert is in our chain (section 5.5.5).
        raw_rvr = await signing(  # in a thread when the RA key is in a token
            self.keys.ra_key,
            sign_artifact,
            plan.request,
            media_type=req_media,
            key=self.keys.ra_key,
            cert=self.keys.ra_cert,
            chain=(self.keys.tls_cert, self.keys.ca_cert),
        )
        requested = PlannedEvent(
            kind="voucher.requested", outcome="info", check="registrar.voucher-request",
            detail={"masa": plan.masa, "media_type": req_media, **({"body_encoding": encoding} if encoding != "der" else {})},
        )
        # Evidence: the lifecycle change, the pin, the admission and the
        # request are on record, in one transaction, before the MASA is asked,
        # even if it never answers.
        await self._commit(
            serial, plan.transitions, (*plan.events, requested), now=now, device=seen,
            pin=mfr if plan.commit_pin else None,
            voucher_request=NewVoucherRequest(
                nonce=chk.request.nonce, pledge_request=body, registrar_request=raw_rvr, media_type=req_media
            ),
        )
        if device is None:
            await self._note_idevid(serial, idevid, now)
        target = plan.masa
        self._masa_of[serial] = target
        self._masa_of.move_to_end(serial)
        if len(self._masa_of) > _MASA_OF_MAX:
            self._masa_of.popitem(last=False)
        resp = await self.masa.request_voucher(target, body=raw_rvr, media_type=req_media, accept=resp_media)
        voucher = self._check_voucher(resp.body, resp.content_type, serial=serial, nonce=chk.request.nonce)
        await self.store.add_voucher(
            serial=serial,
            voucher=resp.body,
            media_type=resp.content_type,
            assertion=str(voucher.assertion),
            nonce=voucher.nonce,
            expires_on=voucher.expires_on,
            received_at=now,
            then=StateChange(state=plan.on_voucher, reason="voucher from MASA"),
            events=(
                new_event(
                    now=now, kind="voucher.obtained", serial=serial, outcome="allow", check="registrar.voucher",
                    assertion=str(voucher.assertion), masa=target,
                ),
            ),
        )
        log.info(kv("voucher-forwarded", serial=serial, assertion=str(voucher.assertion), masa=target))
        return resp.body, resp.content_type

    async def _commit(
        self,
        serial: str,
        transitions: tuple[Transition, ...],
        events: Sequence[PlannedEvent],
        *,
        now: datetime,
        device: NewDevice,
        queue_for_approval: bool = False,
        pin: Manufacturer | None = None,
        voucher_request: NewVoucherRequest | None = None,
    ) -> None:
        """One transaction for a plan: the device if new, state changes, pin, queue row, request, events."""
        try:
            await self.store.commit_voucher_decision(
                serial,
                at=now,
                device=device,
                changes=[StateChange(state=t.state, reason=t.reason, expect=t.expect) for t in transitions],
                pin=pin.pin_record() if pin is not None else None,
                queue_for_approval=queue_for_approval,
                voucher_request=voucher_request,
                events=[
                    new_event(now=now, kind=e.kind, serial=serial, outcome=e.outcome, check=e.check, **e.detail)
                    for e in events
                ],
            )
        except Conflict as exc:
            if exc.check != "storage.pin-held":
                raise
            # A concurrent first use of the same issuer pinned another certificate first.
            raise PolicyRefused(
                f"IDevID issuer was pinned concurrently to another certificate: {exc.detail}",
                check="registrar.first-use.pin-mismatch",
                serial=serial,
            ) from exc

    async def _note_idevid(self, serial: str, idevid: x509.Certificate, now: datetime) -> None:
        """Network access learns the MUD URL (RFC 8520 10) of a device on record."""
        if self.on_idevid is not None:
            await self.on_idevid(serial, idevid, now)

    def _der_body(self, body: bytes, media_type: str, peer: PeerIdentity) -> tuple[bytes, str]:
        """RFC 8366 8.3: a CMS voucher-request is DER; base64 text of it is
        recognised and refused by name, or decoded where a lab configured it."""
        der = base64_voucher_request(body, media_type=media_type)
        if der is None:
            return body, "der"
        if not self.accept_base64:
            raise MalformedInput(
                f"the voucher-request is base64 text ({len(body)} bytes), not DER: RFC 8366 section 8.3 "
                f"says CMS-signed vouchers are ASN.1/DER encoded; send the {len(der)} decoded bytes "
                "(a lab may set accept_base64_voucher_requests = true)",
                check="pledge-request.base64-body",
            )
        subject = peer.leaf.subject.rfc4514_string() if peer.leaf is not None else None
        log.warning(kv("voucher-request-base64-decoded", client=subject, bytes=len(body)))
        return der, "base64"

    def _check_voucher(self, raw: bytes, media_type: str, *, serial: str, nonce: bytes | None) -> Voucher:
        """RFC 8995 5.6: the registrar looks at the voucher for audit; a voucher
        that does not even parse or names another device is a MASA fault."""
        if media_type not in self.supported_media:
            raise BadGateway(f"MASA answered with media type {media_type!r}", check="masa.voucher-media-type")
        try:
            art = verify_artifact(raw, media_type=media_type, kind=Voucher)
        except BrskiError as exc:
            raise BadGateway(f"MASA voucher does not verify: {exc.detail}", check="masa.voucher-invalid") from exc
        v = art.payload
        assert isinstance(v, Voucher)
        if v.serial_number != serial or v.nonce != nonce:
            raise BadGateway("MASA voucher is for another request", check="masa.voucher-mismatch")
        return v

    async def voucher_status(self, *, body: bytes, peer: PeerIdentity, now: datetime) -> None:
        """RFC 8995 5.7: store the pledge's verdict on its voucher; fetch the audit log (5.8).

        One transaction holds the report, the MASA's audit log and the verdict
        on it (or the fetch's failure), each row with its event, and commits
        before the pledge is answered: the EST gate (RFC 8995 5.8.3,
        AdmissionControl.enroll_gate_on) reads that verdict when the pledge asks
        for its LDevID next, so the fetch cannot move after the answer.
        """
        report = parse_status(body, kind="voucher-status")
        serial = await self.clients.idevid_device(peer, what="voucher-status")
        events = [
            new_event(
                now=now, kind="telemetry.voucher-status", serial=serial,
                outcome="info", check="registrar.voucher-status", status=report.status, reason=report.reason,
            ),
        ]
        audit: NewAuditLog | None = None
        if report.status:
            try:
                audit, failed = await self._fetch_audit_log(serial, now=now)
            except BaseException:
                # Whatever became of the fetch, the pledge's verdict is on record.
                await self._add_voucher_status(serial, report, body, events, None, now=now)
                raise
            events.extend(failed)
        await self._add_voucher_status(serial, report, body, events, audit, now=now)

    async def _add_voucher_status(
        self, serial: str, report: StatusReport, body: bytes, events: Sequence[NewEvent],
        audit: NewAuditLog | None, *, now: datetime,
    ) -> None:
        await self.store.add_status_report(
            serial=serial, kind="voucher", status=report.status, reason=report.reason,
            body=body.decode("utf-8", "replace"), received_at=now, events=events, audit_log=audit,
        )

    async def _fetch_audit_log(self, serial: str, *, now: datetime) -> tuple[NewAuditLog | None, list[NewEvent]]:
        """RFC 8995 5.8: the registrar SHOULD fetch the MASA audit log after
        the pledge's voucher status; a failure is recorded, not fatal. The log
        with the verdict on it, or the failure's event, to store with the report."""
        last = await self.store.latest_voucher_request(serial)
        if last is None or last.registrar_request is None:
            return None, []
        # The device is on record: voucher_status found it (ClientIdentity.idevid_device).
        target = self.masa_url_override or self._masa_of.get(serial)
        if target is None:  # e.g. after a restart: read it from the stored request
            try:
                art = verify_artifact(last.pledge_request, media_type=last.media_type, kind=VoucherRequest)
                target = masa_url(art.signer)
            except BrskiError:
                target = None
        if not target:
            return None, []
        try:
            doc = await self.masa.request_audit_log(target, body=last.registrar_request, media_type=last.media_type)
        except BrskiError as exc:
            return None, [new_event(
                now=now, kind="auditlog.fetch-failed", serial=serial, outcome="info",
                check=exc.check, detail=exc.detail,
            )]
        # RFC 8995 5.8.3: review the log now; a refusal here is what makes the
        # EST gate (AdmissionControl.enroll_gate_on) refuse this device.  The log
        # and the verdict on it are stored together.
        decision = self.admission.review(doc)
        if not decision.allow:
            log.warning(kv("auditlog-review-refused", serial=serial, rule=decision.rule, detail=decision.detail))
        return NewAuditLog(
            fetched_at=now, body=doc.to_json(),
            events=(
                new_event(
                    now=now, kind="auditlog.reviewed", serial=serial, outcome="allow" if decision.allow else "refuse",
                    check=decision.rule, entries=len(doc.events), detail=decision.detail,
                ),
            ),
        ), []
