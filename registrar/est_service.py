"""EST at the registrar (RFC 7030 section 4, RFC 8995 section 5.9): the domain CA.

Enrolment is open only to a device that obtained a voucher through this
registrar. An LDevID is issued in a fixed order: sign under a fresh random
serial, record the certificate in one durable transaction that re-checks the
key and the serial, and only then answer. A crash at any point leaves either
nothing issued or a recorded certificate, never a certificate the registrar
does not know about.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from brski import est
from brski.ca import LdevidIssuer, csr_names_device, new_serial
from brski.csrattrs import csrattrs_for_device
from brski.errors import Conflict, Forbidden, Unauthenticated
from brski.lifecycle import LifecycleEvent, next_state
from brski.pki import device_serial, spki_sha256
from brski.telemetry import parse_status
from brski_hsm import signing
from brski_storage import StateChange
from brski_storage.base import (
    ApprovalRecord,
    AuditLogRecord,
    CertificateRecord,
    DeviceRecord,
    RegistrarStore,
)
from brski_storage.certificates import EstFacts, Supersede
from brski_web.identity import PeerIdentity
from brski_web.logs import kv
from registrar.evidence import new_event
from registrar.identity import ClientIdentity, RegistrarKeys
from registrar.issuance import IssuancePolicy

__all__ = ["EnrollGate", "EstService"]

log = logging.getLogger("brski.registrar")


class EnrollGate(Protocol):
    """May ``serial`` use EST now, on its approval row and newest MASA audit
    log as this request read them? Raises the refusal, naming the rule."""

    def __call__(self, serial: str, *, approval: ApprovalRecord | None, audit_log: AuditLogRecord | None) -> None: ...


class EstService:
    def __init__(
        self,
        *,
        store: RegistrarStore,
        keys: RegistrarKeys,
        clients: ClientIdentity,
        enroll_gate: EnrollGate | None = None,
        ldevid_validity: timedelta,
        crl_url: str | None = None,
        ocsp_url: str | None = None,
        issuance: IssuancePolicy | None = None,
    ) -> None:
        self.store = store
        self.keys = keys
        self.clients = clients
        # RFC 8995 5.8.3 "the Registrar MUST then refuse any EST actions" when
        # a device's audit log or an operator's rejection says so
        # (registrar/admission.py). None: no such gate.
        self.enroll_gate = enroll_gate
        self.ldevid_validity = ldevid_validity
        self.crl_url = crl_url
        self.ocsp_url = ocsp_url
        # RFC 7030 4.1.3: the same answer to every /cacerts for the life of the process.
        self._cacerts = est.encode_base64_body(est.build_certs_only([keys.ca_cert]))
        # What an LDevID says, how many a device gets (registrar/issuance.py).
        self.issuance = issuance or IssuancePolicy()
        # The CA's constant part of every LDevID, built at the first issuance
        # (so a CA the key does not match is refused there, as it always was).
        self._issuer: LdevidIssuer | None = None

    def _ldevid_issuer(self) -> LdevidIssuer:
        if self._issuer is None:
            self._issuer = LdevidIssuer(
                ca_cert=self.keys.ca_cert, ca_key=self.keys.ca_key, crl_url=self.crl_url, ocsp_url=self.ocsp_url
            )
        return self._issuer

    def _check_enroll_gate(self, serial: str, facts: EstFacts) -> None:
        if self.enroll_gate is not None:
            self.enroll_gate(serial, approval=facts.approval, audit_log=facts.audit_log)

    async def _facts(
        self, spki: bytes | None, *, device_serial: str | None = None, cert_serial: int | None = None
    ) -> EstFacts:
        """Everything an enrolment checks in the store, in one read (one
        snapshot): the device (or the LDevID's row and its device, with the
        published CRL's number), what the EST gate and the issuance limit
        read, and the newest certificate for the CSR's key. Read on every
        request, nothing kept: each check below runs on this request's rows."""
        return await self.store.est_facts(
            device_serial=device_serial, cert_serial=cert_serial, spki_sha256=spki,
            gate=self.enroll_gate is not None, certificates=self.issuance.limit != 0,
            crl_number=cert_serial is not None,
        )

    async def enroll_status(self, *, body: bytes, peer: PeerIdentity, now: datetime) -> None:
        """RFC 8995 5.9.4: the pledge reports whether its LDevID works."""
        report = parse_status(body, kind="enroll-status")
        serial = await self.clients.client_device(peer, now=now, what="enroll-status")
        await self.store.add_status_report(
            serial=serial, kind="enroll", status=report.status, reason=report.reason,
            body=body.decode("utf-8", "replace"), received_at=now,
            events=(
                new_event(
                    now=now, kind="telemetry.enroll-status", serial=serial, outcome="info",
                    check="registrar.enroll-status", status=report.status, reason=report.reason,
                ),
            ),
        )

    def cacerts(self) -> bytes:
        """RFC 7030 4.1.3: the domain CA as a certs-only CMS, base64."""
        return self._cacerts

    async def csrattrs(self, *, peer: PeerIdentity, now: datetime) -> bytes:
        """RFC 7030 4.5 / RFC 8995 5.9.2: what the LDevID CSR should contain."""
        serial = None
        if peer.leaf is not None:
            serial = device_serial(peer.leaf)
        return est.encode_base64_body(csrattrs_for_device(serial_number=serial))

    async def simpleenroll(
        self, *, body: bytes, cte: str | None, peer: PeerIdentity, now: datetime
    ) -> bytes:
        """RFC 7030 4.2.1, RFC 8995 5.9.3: first LDevID for a vouched device."""
        if peer.leaf is None:
            raise Unauthenticated("EST enrolment needs the IDevID as client certificate", check="tls.client-cert")
        serial = self.clients.idevid_serial(peer, what="simpleenroll")
        parsed = _ParsedCsr(body, cte)
        facts = await self._facts(parsed.spki, device_serial=serial)
        device = self.clients.idevid_match(peer, facts.device, what="simpleenroll")
        # RFC 7030 3.7 / RFC 8995 5.9: only a device this registrar vouched for.
        enrolled = next_state(device.state, LifecycleEvent.LDEVID_ISSUED, serial=serial)
        self._check_enroll_gate(serial, facts)  # RFC 8995 5.8.3 (registrar/admission.py)
        self.issuance.check_limit_on(facts.certificates, serial, now=now)
        csr, spki = parsed.result()
        if not csr_names_device(csr, serial):
            raise Forbidden("CSR names another device than the IDevID", check="est.csr-identity", serial=serial)
        if spki == spki_sha256(peer.leaf):
            raise Forbidden("CSR reuses the IDevID key", check="est.csr-idevid-key", serial=serial)
        # A device holds one valid LDevID: enrolling again through the IDevID
        # (a factory reset) supersedes the earlier ones (RFC 5280 5.3.1), in
        # the transaction that records the new one (IssuancePolicy.supersede).
        cert, superseded = await self._issue(
            csr, spki=spki, device=device, latest=facts.key_certificate, now=now, kind="credential.issued",
            then=StateChange(state=enrolled, reason="LDevID issued"), supersede=self.issuance.supersede,
        )
        keep = format(cert.serial_number, "x")
        if superseded is None:  # an orphaned reservation completed: superseded after it
            await self.issuance.supersede_previous(self.store, serial, keep=keep, now=now)
        else:
            self.issuance.log_superseded(serial, superseded, keep=keep)
        return est.encode_base64_body(est.build_certs_only([cert]))

    async def simplereenroll(
        self, *, body: bytes, cte: str | None, peer: PeerIdentity, now: datetime
    ) -> bytes:
        """RFC 7030 4.2.2: renew with the current LDevID as client certificate."""
        if peer.leaf is None or not self.clients.is_ldevid(peer.leaf):
            raise Unauthenticated("re-enrolment needs the current LDevID as client certificate", check="est.reenroll-client")
        parsed = _ParsedCsr(body, cte)
        facts = await self._facts(parsed.spki, cert_serial=peer.leaf.serial_number)
        record, device = await self.clients.ldevid_device(peer, now=now, facts=facts)
        serial = record.device_serial
        assert device is not None  # a certificate row references its device
        self._check_enroll_gate(serial, facts)  # RFC 8995 5.8.3 (registrar/admission.py)
        self.issuance.check_limit_on(facts.certificates, serial, now=now)
        renewed = next_state(device.state, LifecycleEvent.LDEVID_RENEWED, serial=serial)
        csr, spki = parsed.result()
        # RFC 7030 4.2.2: the subject must be the same as the current certificate's.
        if csr.subject != peer.leaf.subject:
            raise Forbidden("re-enrolment CSR subject differs from the current certificate", check="est.reenroll-subject", serial=serial)
        # RFC 7030 4.2.2 allows both "renew" (same key) and "rekey" (new key).
        # Same key: the new row names the certificate it renews, and the store
        # lets a key be renewed only by the device it was first certified for
        # (migration 0003). New key: it must never have been certified, like
        # any key at first enrolment.
        same_key = spki == spki_sha256(peer.leaf)
        cert, _ = await self._issue(
            csr, spki=spki, device=device, latest=facts.key_certificate, now=now, kind="credential.renewed",
            renews=record.cert_serial if same_key else None,
            then=StateChange(state=renewed, reason="LDevID renewed"),
        )
        return est.encode_base64_body(est.build_certs_only([cert]))

    async def _issue(
        self,
        csr: x509.CertificateSigningRequest,
        *,
        spki: bytes,
        device: DeviceRecord,
        latest: CertificateRecord | None,
        now: datetime,
        kind: str,
        then: StateChange,
        renews: str | None = None,
        supersede: bool = False,
    ) -> tuple[x509.Certificate, tuple[CertificateRecord, ...] | None]:
        """Sign under a fresh serial, record in one durable transaction, and
        only then return.

        ``supersede`` (a first enrolment): the same transaction revokes the
        device's earlier LDevIDs, returned second; None when they were not
        (an orphaned reservation completed, or ``supersede`` false).

        ``spki``: the SHA-256 of the CSR's SubjectPublicKeyInfo (the caller
        computed it for its own check); ``latest``: the newest row for that
        key, read with the request's other facts. ``renews``: the serial of
        the certificate a same-key renewal replaces.

        ``latest`` refuses a key certified before without signing; the
        store re-checks it inside the transaction that records the
        certificate (record_issued_certificate: key not yet certified, or
        for a renewal the renewed certificate issued and not yet renewed;
        serial unused), together with its events and the device's state
        change, flushed before the answer. A request that lost a race there
        gets the refusal a reservation gave before signing, and its signed
        certificate is discarded: it never left the registrar, so no serial
        or key was handed out twice (RFC 5280 4.1.2.2).
        Crashes: before that COMMIT, nothing is recorded and nothing was
        released (the device asks again and gets a new serial); after it,
        the certificate, its events and the state change are durable
        together, before the device can have seen the certificate.

        A reservation orphaned by a crash (a row 'reserved' for this key and
        device, written by a version that reserved before signing) is
        completed under its reserved serial when the device asks again with
        the same key: that certificate never left the registrar, so nothing
        was issued twice, and complete_certificate lets only one request
        finish it.

        The subject and extensions are the device's grant (RFC 8995 5.9.2);
        what the CSR asked beyond it is refused or, ignored, recorded.
        """
        serial = device.serial
        grant = self.issuance.grant(device)
        ignored = self.issuance.beyond_grant(csr, grant, serial=serial)
        if latest is not None and latest.spki_sha256 != spki:
            raise AssertionError("the newest row of another key")
        resume = latest is not None and latest.state == "reserved" and latest.device_serial == serial
        if latest is not None and resume:
            serial_hex = latest.cert_serial
            cert_serial = int(serial_hex, 16)
        elif renews is None and latest is not None:
            # Every key is certified afresh once: never for a second device or
            # a second first enrolment (RFC 8995 5.9.3: a new key per LDevID).
            raise Forbidden("this public key is already certified", check="est.csr-key-reused", serial=serial)
        else:
            cert_serial = new_serial()
            serial_hex = format(cert_serial, "x")
        cert = await signing(  # in a thread when the CA key is in a token
            self.keys.ca_key,
            self._ldevid_issuer().issue_ldevid,
            csr,
            serial=cert_serial,
            now=now,
            validity=self.ldevid_validity,
            device_serial=serial,
            grant=grant,
        )
        events = [
            new_event(
                now=now, kind=kind, serial=serial, outcome="allow", check="registrar.issue",
                cert_serial=serial_hex, subject=cert.subject.rfc4514_string(),
                not_after=cert.not_valid_after_utc.isoformat(), renews=renews,
                spki_sha256=spki.hex(), **grant.describe(),
            ),
        ]
        if ignored:
            events.append(new_event(
                now=now, kind="credential.csr-ignored", serial=serial, outcome="info",
                check="est.csr-not-granted", cert_serial=serial_hex, ignored=list(ignored),
            ))
        der = cert.public_bytes(Encoding.DER)
        superseded: tuple[CertificateRecord, ...] | None = None
        if resume:
            await self.store.complete_certificate(
                serial_hex, der=der, not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc,
                at=now, then=then, events=tuple(events),  # issued and enrolled/renewed commit together
            )
        else:
            try:
                if supersede and renews is None:
                    _, superseded = await self.store.record_issued_superseding(
                        supersede=Supersede(by=f"registrar (superseded by {serial_hex})", check="registrar.supersede"),
                        cert_serial=serial_hex, device_serial=serial, spki_sha256=spki, der=der,
                        not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc,
                        at=now, then=then, events=tuple(events),  # issued, enrolled and superseded together
                    )
                else:
                    await self.store.record_issued_certificate(
                        cert_serial=serial_hex, device_serial=serial, spki_sha256=spki, renews=renews, der=der,
                        not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc,
                        at=now, then=then, events=tuple(events),  # issued and enrolled/renewed commit together
                    )
            except Conflict as exc:  # a concurrent request took the key, or this cert was renewed
                raise Forbidden(
                    "this public key is already certified" if renews is None
                    else "this certificate was already renewed with its key; use the newest LDevID",
                    check="est.csr-key-reused" if renews is None else "est.already-renewed",
                    serial=serial,
                ) from exc
        log.info(kv(kind, serial=serial, cert_serial=serial_hex))
        return cert, superseded


class _ParsedCsr:
    """The request's CSR, parsed before the store read (its key's newest row
    is one of the request's facts), or the refusal, which :meth:`result`
    raises where the CSR is checked: after the device, gate and limit checks,
    as every refusal's order was before the one read."""

    __slots__ = ("csr", "error", "spki")

    def __init__(self, body: bytes, cte: str | None) -> None:
        self.csr: x509.CertificateSigningRequest | None = None
        self.spki: bytes | None = None
        self.error: Exception | None = None
        try:
            self.csr = est.parse_csr(est.decode_est_body(body, content_transfer_encoding=cte))
            self.spki = spki_sha256(self.csr.public_key())  # type: ignore[arg-type]
        except Exception as exc:  # raised by result(), in the checks' order
            self.error = exc

    def result(self) -> tuple[x509.CertificateSigningRequest, bytes]:
        if self.error is not None:
            raise self.error
        assert self.csr is not None and self.spki is not None
        return self.csr, self.spki

