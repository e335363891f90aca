"""The registrar's orchestration: BRSKI voucher brokering and the EST CA.

What the registrar promises (RFC 8995 sections 5.3-5.9, RFC 7030 section 4):

* a voucher-request is forwarded to the MASA only after the pledge proved it
  holds the IDevID, the IDevID chains to a trusted manufacturer, and the
  request is signed by that IDevID and names this registrar;
* EST enrolment is open only to a device that obtained a voucher through
  this registrar and reported it accepted it;
* an LDevID is issued in a fixed order: reserve the serial and the key in
  the store, sign, record the certificate, and only then answer. A crash at
  any point leaves either nothing issued or a recorded certificate, never a
  certificate the registrar does not know about.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from brski import est
from brski.artifact import sign_artifact, verify_artifact
from brski.ca import csr_names_device, issue_ldevid, new_serial
from brski.errors import (
    BadGateway,
    BrskiError,
    ChainInvalid,
    Conflict,
    Forbidden,
    Unauthenticated,
)
from brski.negotiate import negotiate_voucher_media
from brski.oids import MT_VOUCHER_CMS_JSON
from brski.pki import PrivateKey, Role, device_serial, fingerprint_sha256, masa_url, spki_sha256, verify_chain
from brski.storage.base import RegistrarStore
from brski.telemetry import parse_status
from brski.validation import aki_key_id, check_pledge_request
from brski.voucher import Assertion, Voucher, VoucherRequest
from brski_web.identity import PeerIdentity
from brski_web.logs import kv
from registrar.masa_client import MasaClient

__all__ = ["DeviceStates", "RegistrarKeys", "RegistrarService"]

log = logging.getLogger("brski.registrar")


class DeviceStates:
    """The registrar's device lifecycle states (stored as text)."""

    DISCOVERED = "discovered"
    VOUCHER_OBTAINED = "voucher-obtained"
    ENROLLED = "enrolled"
    RENEWED = "renewed"
    REVOKED = "revoked"
    DECOMMISSIONED = "decommissioned"


@dataclass(frozen=True, kw_only=True)
class RegistrarKeys:
    ca_cert: x509.Certificate
    ca_key: PrivateKey
    ra_cert: x509.Certificate
    ra_key: PrivateKey
    tls_cert: x509.Certificate


class RegistrarService:
    def __init__(
        self,
        *,
        store: RegistrarStore,
        keys: RegistrarKeys,
        manufacturer_anchors: list[x509.Certificate],
        masa: MasaClient,
        masa_url_override: str | None,
        ldevid_validity: timedelta,
        crl_url: str | None = None,
        ocsp_url: str | None = None,
        supported_media: tuple[str, ...] = (MT_VOUCHER_CMS_JSON,),
    ) -> None:
        self.store = store
        self.keys = keys
        self.anchors = manufacturer_anchors
        self.masa = masa
        self.masa_url_override = masa_url_override
        self.ldevid_validity = ldevid_validity
        self.crl_url = crl_url
        self.ocsp_url = ocsp_url
        self.supported_media = supported_media
        self._ca_subject = keys.ca_cert.subject

    # --- BRSKI -----------------------------------------------------------------

    async def _event(
        self, *, now: datetime, kind: str, serial: str | None, outcome: str, check: str | None, **detail: Any
    ) -> None:
        await self.store.append_event(
            at=now, kind=kind, device_serial=serial, outcome=outcome, check=check, detail=detail  # type: ignore[arg-type]
        )

    def _manufacturer(self, chain_top: x509.Certificate) -> str:
        return chain_top.subject.rfc4514_string()

    async def request_voucher(
        self, *, body: bytes, content_type: str | None, accept: str | None, peer: PeerIdentity, now: datetime
    ) -> tuple[bytes, str]:
        """RFC 8995 sections 5.2-5.6: check the pledge, ask its MASA, return the voucher."""
        req_media, resp_media = negotiate_voucher_media(content_type, accept, self.supported_media)
        chk = check_pledge_request(
            body,
            media_type=req_media,
            tls_client_cert=peer.leaf,
            tls_client_chain=peer.chain,
            manufacturer_anchors=self.anchors,
            own_certs=[self.keys.tls_cert],
            now=now,
        )
        idevid = chk.idevid
        serial = chk.serial
        anchor = chk.idevid_chain[-1] if chk.idevid_chain else idevid
        device = await self.store.upsert_device(
            serial,
            idevid_issuer=idevid.issuer.rfc4514_string(),
            idevid_fingerprint=fingerprint_sha256(idevid),
            manufacturer=self._manufacturer(anchor),
            at=now,
        )
        await self._event(
            now=now, kind="trust.pledge-authenticated", serial=serial, outcome="allow",
            check="registrar.pledge-request", manufacturer=device.manufacturer,
        )
        # RFC 8995 section 5.5: the registrar's own voucher-request.
        rvr = VoucherRequest(
            assertion=Assertion.PROXIMITY,
            created_on=now,
            serial_number=serial,
            nonce=chk.request.nonce,
            idevid_issuer=aki_key_id(idevid),
            prior_signed_voucher_request=body,
        )
        # RFC 8995 section 5.5: include the chain the MASA should pin; the TLS
        # certificate rides along so the MASA can see that the pledge's
        # proximity-registrar-cert is in our chain (section 5.5.5).
        raw_rvr = sign_artifact(
            rvr,
            media_type=req_media,
            key=self.keys.ra_key,
            cert=self.keys.ra_cert,
            chain=(self.keys.tls_cert, self.keys.ca_cert),
        )
        await self.store.add_voucher_request(
            serial=serial,
            nonce=chk.request.nonce,
            pledge_request=body,
            registrar_request=raw_rvr,
            media_type=req_media,
            received_at=now,
        )
        target = self.masa_url_override or masa_url(idevid)
        if not target:
            raise Forbidden(
                "the IDevID names no MASA (id-pe-masa-url) and none is configured",
                check="idevid.masa-url",
                serial=serial,
            )
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
        )
        await self.store.set_device_state(serial, DeviceStates.VOUCHER_OBTAINED, at=now, reason="voucher from MASA")
        await self._event(
            now=now, kind="voucher.obtained", serial=serial, outcome="allow", check="registrar.voucher",
            assertion=str(voucher.assertion), masa=target,
        )
        log.info(kv("voucher-forwarded", serial=serial, assertion=str(voucher.assertion), masa=target))
        return resp.body, resp.content_type

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

    # --- telemetry ---------------------------------------------------------------

    async def _idevid_device(self, peer: PeerIdentity, *, what: str) -> str:
        """The serial of the device behind an IDevID-authenticated connection.

        RFC 8995 5.7 / 5.9.4: telemetry is accepted from the device it is
        about; the device record pins the IDevID fingerprint seen when its
        chain was fully verified during the voucher exchange.
        """
        if peer.leaf is None:
            raise Unauthenticated(f"{what} needs the device's client certificate", check="tls.client-cert")
        serial = device_serial(peer.leaf)
        if not serial:
            raise Forbidden("client certificate has no serialNumber", check="idevid.serial-number")
        device = await self.store.get_device(serial)
        if device is None or device.idevid_fingerprint != fingerprint_sha256(peer.leaf):
            raise Forbidden(f"{what} from a client that is not a known device", check=f"{what}.unknown-device")
        return serial

    async def voucher_status(self, *, body: bytes, peer: PeerIdentity, now: datetime) -> None:
        """RFC 8995 5.7: store the pledge's verdict on its voucher; fetch the audit log."""
        report = parse_status(body, kind="voucher-status")
        serial = await self._idevid_device(peer, what="voucher-status")
        await self.store.add_status_report(
            serial=serial, kind="voucher", status=report.status, reason=report.reason,
            body=body.decode("utf-8", "replace"), received_at=now,
        )
        await self._event(
            now=now, kind="telemetry.voucher-status", serial=serial,
            outcome="info", check="registrar.voucher-status", status=report.status, reason=report.reason,
        )
        if report.status:
            await self._fetch_audit_log(serial, now=now)

    async def _fetch_audit_log(self, serial: str, *, now: datetime) -> None:
        """RFC 8995 5.8: the registrar SHOULD fetch the MASA audit log after
        the pledge's voucher status; a failure is recorded, not fatal."""
        requests = await self.store.voucher_requests(serial)
        if not requests or requests[-1].registrar_request is None:
            return
        last = requests[-1]
        assert last.registrar_request is not None
        device = await self.store.get_device(serial)
        target = self.masa_url_override
        if target is None:
            try:
                art = verify_artifact(last.pledge_request, media_type=last.media_type, kind=VoucherRequest)
                target = masa_url(art.signer)
            except BrskiError:
                target = None
        if not target or device is None:
            return
        try:
            doc = await self.masa.request_audit_log(target, body=last.registrar_request, media_type=last.media_type)
        except BrskiError as exc:
            await self._event(
                now=now, kind="auditlog.fetch-failed", serial=serial, outcome="info",
                check=exc.check, detail=exc.detail,
            )
            return
        await self.store.add_audit_log(serial=serial, fetched_at=now, body=json.dumps(doc).encode())
        await self._event(
            now=now, kind="auditlog.fetched", serial=serial, outcome="info", check="registrar.auditlog",
            entries=len(doc["events"]),
        )

    async def enroll_status(self, *, body: bytes, peer: PeerIdentity, now: datetime) -> None:
        """RFC 8995 5.9.4: the pledge reports whether its LDevID works."""
        report = parse_status(body, kind="enroll-status")
        serial = await self._client_device(peer, now=now, what="enroll-status")
        await self.store.add_status_report(
            serial=serial, kind="enroll", status=report.status, reason=report.reason,
            body=body.decode("utf-8", "replace"), received_at=now,
        )
        await self._event(
            now=now, kind="telemetry.enroll-status", serial=serial, outcome="info",
            check="registrar.enroll-status", status=report.status, reason=report.reason,
        )

    # --- EST ---------------------------------------------------------------------

    def _is_ldevid(self, cert: x509.Certificate) -> bool:
        return cert.issuer == self._ca_subject

    async def _client_device(self, peer: PeerIdentity, *, now: datetime, what: str) -> str:
        """IDevID or LDevID: the device serial behind the TLS client."""
        if peer.leaf is not None and self._is_ldevid(peer.leaf):
            return (await self._ldevid_device(peer, now=now)).device_serial
        return await self._idevid_device(peer, what=what)

    async def _ldevid_device(self, peer: PeerIdentity, *, now: datetime) -> Any:
        assert peer.leaf is not None
        try:
            verify_chain(peer.leaf, anchors=[self.keys.ca_cert], now=now, role=Role.LDEVID)
        except ChainInvalid as exc:
            raise Forbidden(f"LDevID not valid: {exc.detail}", check=exc.check) from exc
        record = await self.store.get_certificate(format(peer.leaf.serial_number, "x"))
        if record is None:
            raise Forbidden("LDevID unknown to this registrar", check="ldevid.unknown")
        if record.state == "revoked":
            raise Forbidden("LDevID has been revoked", check="ldevid.revoked", serial=record.device_serial)
        return record

    def cacerts(self) -> bytes:
        """RFC 7030 4.1.3: the domain CA as a certs-only CMS, base64."""
        return est.encode_base64_body(est.build_certs_only([self.keys.ca_cert]))

    async def csrattrs(self, *, peer: PeerIdentity, now: datetime) -> bytes:
        """RFC 7030 4.5 / RFC 8995 5.9.2: what the LDevID CSR should contain."""
        serial = None
        if peer.leaf is not None:
            serial = device_serial(peer.leaf)
        return est.encode_base64_body(est.csrattrs_for_device(serial_number=serial))

    async def simpleenroll(
        self, *, body: bytes, cte: str | None, peer: PeerIdentity, now: datetime
    ) -> bytes:
        """RFC 7030 4.2.1, RFC 8995 5.9.3: first LDevID for a vouched device."""
        if peer.leaf is None:
            raise Unauthenticated("EST enrolment needs the IDevID as client certificate", check="tls.client-cert")
        serial = await self._idevid_device(peer, what="simpleenroll")
        device = await self.store.get_device(serial)
        assert device is not None
        # RFC 7030 3.7 / RFC 8995 5.9: only a device this registrar vouched for.
        if device.state not in (DeviceStates.VOUCHER_OBTAINED, DeviceStates.ENROLLED, DeviceStates.RENEWED):
            raise Forbidden(
                f"device {serial} is {device.state}; it needs a voucher before enrolling",
                check="est.not-authorised",
                serial=serial,
            )
        csr = est.parse_csr(est.decode_est_body(body, content_transfer_encoding=cte))
        if not csr_names_device(csr, serial):
            raise Forbidden("CSR names another device than the IDevID", check="est.csr-identity", serial=serial)
        if spki_sha256(csr.public_key()) == spki_sha256(peer.leaf):  # type: ignore[arg-type]
            raise Forbidden("CSR reuses the IDevID key", check="est.csr-idevid-key", serial=serial)
        cert = await self._issue(csr, serial=serial, now=now, kind="credential.issued")
        await self.store.set_device_state(serial, DeviceStates.ENROLLED, at=now, reason="LDevID issued")
        return est.encode_base64_body(est.build_certs_only([cert]))

    async def simplereenroll(
        self, *, body: bytes, cte: str | None, peer: PeerIdentity, now: datetime
    ) -> bytes:
        """RFC 7030 4.2.2: renew with the current LDevID as client certificate."""
        if peer.leaf is None or not self._is_ldevid(peer.leaf):
            raise Unauthenticated("re-enrolment needs the current LDevID as client certificate", check="est.reenroll-client")
        record = await self._ldevid_device(peer, now=now)
        serial = record.device_serial
        csr = est.parse_csr(est.decode_est_body(body, content_transfer_encoding=cte))
        # RFC 7030 4.2.2: the subject must be the same as the current certificate's.
        if csr.subject != peer.leaf.subject:
            raise Forbidden("re-enrolment CSR subject differs from the current certificate", check="est.reenroll-subject", serial=serial)
        # A renewal gets a fresh key: the store certifies each key once, which
        # is what makes "a CSR for an already certified key" detectable.
        if spki_sha256(csr.public_key()) == spki_sha256(peer.leaf):  # type: ignore[arg-type]
            raise Forbidden(
                "re-enrolment must use a new key pair", check="est.reenroll-same-key", serial=serial
            )
        cert = await self._issue(csr, serial=serial, now=now, kind="credential.renewed")
        await self.store.set_device_state(serial, DeviceStates.RENEWED, at=now, reason="LDevID renewed")
        return est.encode_base64_body(est.build_certs_only([cert]))

    async def _issue(
        self, csr: x509.CertificateSigningRequest, *, serial: str, now: datetime, kind: str
    ) -> x509.Certificate:
        """Reserve serial and key, sign, record, and only then return."""
        spki = spki_sha256(csr.public_key())  # type: ignore[arg-type]
        if await self.store.certificate_by_spki(spki) is not None:
            # Every LDevID has its own key: a key certified once is never certified again.
            raise Forbidden("this public key is already certified", check="est.csr-key-reused", serial=serial)
        cert_serial = new_serial()
        serial_hex = format(cert_serial, "x")
        try:
            await self.store.reserve_certificate(cert_serial=serial_hex, device_serial=serial, spki_sha256=spki, at=now)
        except Conflict as exc:  # a concurrent request certified the same key
            raise Forbidden("this public key is already certified", check="est.csr-key-reused", serial=serial) from exc
        cert = issue_ldevid(
            csr,
            ca_cert=self.keys.ca_cert,
            ca_key=self.keys.ca_key,
            serial=cert_serial,
            now=now,
            validity=self.ldevid_validity,
            device_serial=serial,
            crl_url=self.crl_url,
            ocsp_url=self.ocsp_url,
        )
        await self.store.complete_certificate(
            serial_hex,
            der=cert.public_bytes(Encoding.DER),
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            at=now,
        )
        await self._event(
            now=now, kind=kind, serial=serial, outcome="allow", check="registrar.issue",
            cert_serial=serial_hex, subject=cert.subject.rfc4514_string(),
            not_after=cert.not_valid_after_utc.isoformat(),
        )
        log.info(kv(kind, serial=serial, cert_serial=serial_hex))
        return cert

    async def record_refusal(self, *, kind: str, err: BrskiError, peer: PeerIdentity, now: datetime) -> None:
        serial = err.extra.get("serial")
        if not isinstance(serial, str) and peer.leaf is not None:
            serial = device_serial(peer.leaf)
        await self.store.append_event(
            at=now,
            kind=kind,
            device_serial=serial if isinstance(serial, str) else None,
            outcome="refuse",
            check=err.check,
            detail={
                "status": err.http_status,
                "detail": err.detail,
                "client": peer.leaf.subject.rfc4514_string() if peer.leaf is not None else None,
            },
        )

