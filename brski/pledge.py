"""The pledge side of BRSKI as a sans-IO state machine.

The driver (``pledge_sim.service``) owns the socket and the clock; this module
owns every decision.  It is shaped like h11's connection state: the legal
moves are *data* (:data:`TRANSITIONS`), each public method names the event it
performs, and a method called in a state that has no row for its event raises
``LocalError(check="pledge.illegal-transition")`` instead of silently doing
something half-sensible.  Keeping the table as data makes the protocol
reviewable at a glance and lets a test enumerate it.

States and rules (RFC 8995 section 5 unless noted):

``START``
    ``connected(der)`` -> ``CONNECTED``.  The TLS server certificate was
    accepted *provisionally* (section 5.1) and is retained for later checks.
``CONNECTED``
    ``build_voucher_request`` -> ``VOUCHER_REQUESTED``.  A proximity
    voucher-request carrying that exact certificate in
    proximity-registrar-cert and a fresh nonce, signed with the IDevID
    (sections 3.3, 5.2).
``VOUCHER_REQUESTED``
    ``voucher_response``: 202 -> ``PENDING`` (Retry-After clamped to 60 s,
    section 5.6); 200 whose voucher passes every section 5.6.1 / 5.6.2 check
    -> ``VOUCHER_ACCEPTED``; anything else -> ``FAILED``.
``PENDING``
    ``retry_voucher_request`` -> ``VOUCHER_REQUESTED`` and returns the *same*
    signed bytes: section 5.6 forbids a new nonce or signature on retry.
``VOUCHER_ACCEPTED``
    ``voucher_status`` -> ``STATUS_REPORTED`` (section 5.7 telemetry).  The
    TLS connection is no longer provisional from here on.
``STATUS_REPORTED``
    ``cacerts_response`` (self-loop, RFC 8995 5.9.1) and ``build_csr`` ->
    ``ENROLLING`` (section 5.9.3, RFC 7030 4.2.1).
``ENROLLING``
    ``enroll_response``: 202 -> ``ENROLL_PENDING``; 200 with an LDevID for
    our CSR key that chains to the pinned domain certificate ->
    ``ENROLLED``; anything else -> ``FAILED``.
``ENROLL_PENDING``
    ``retry_csr`` -> ``ENROLLING`` with the same CSR (RFC 7030 4.2.3).
``ENROLLED``
    ``enroll_status`` -> ``DONE`` (section 5.9.4).
``FAILED``
    Reached by a refusal or by ``abort`` from any non-terminal state; the
    reason is kept in :attr:`Pledge.failure`.  Exactly one failure telemetry
    may still be produced: ``voucher_status`` when the voucher phase failed
    (section 5.6.2 says the pledge SHOULD report before closing), or
    ``enroll_status`` when enrollment failed (section 5.9.4 MUST).
``DONE``
    Terminal.
"""

from __future__ import annotations

import enum
import hmac
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from brski import errors, oids
from brski.artifact import sign_artifact, verify_artifact
from brski.est import decode_base64_body, parse_certs_only
from brski.pki import PrivateKey, Role, device_serial, verify_chain
from brski.pledge_checks import (
    DEFAULT_RETRY_AFTER,
    MAX_NONCE,
    MAX_PENDING,
    MAX_RETRY_AFTER,
    MIN_NONCE,
    Decision,
    Enrolled,
    Failed,
    Retry,
    VoucherAccepted,
    _authority_key_id,
    _base_media_type,
    _header,
    _load_der_cert,
    _problem_text,
    _spki,
    _voucher_decode_error,
    _within_validity,
    authenticate_server_cert,
    build_csr_der,
    device_subject,
    load_server_cert,
    retry_after_seconds,
    verify_issued_cert,
)
from brski.telemetry import StatusReport
from brski.voucher import Assertion, Voucher, VoucherRequest

__all__ = [
    "DEFAULT_RETRY_AFTER",
    "MAX_PENDING",
    "MAX_RETRY_AFTER",
    "TRANSITIONS",
    "Decision",
    "Enrolled",
    "Event",
    "Failed",
    "Pledge",
    "Retry",
    "State",
    "VoucherAccepted",
    "authenticate_server_cert",
    "build_csr_der",
    "device_subject",
    "load_server_cert",
    "retry_after_seconds",
    "verify_issued_cert",
]

class State(enum.Enum):
    START = "start"
    CONNECTED = "connected"
    VOUCHER_REQUESTED = "voucher-requested"
    PENDING = "pending"
    VOUCHER_ACCEPTED = "voucher-accepted"
    STATUS_REPORTED = "status-reported"
    ENROLLING = "enrolling"
    ENROLL_PENDING = "enroll-pending"
    ENROLLED = "enrolled"
    DONE = "done"
    FAILED = "failed"


class Event(enum.Enum):
    CONNECTED = "connected"
    SEND_VOUCHER_REQUEST = "send-voucher-request"
    VOUCHER_PENDING = "voucher-pending"
    RESEND_VOUCHER_REQUEST = "resend-voucher-request"
    VOUCHER_ACCEPTED = "voucher-accepted"
    SEND_VOUCHER_STATUS = "send-voucher-status"
    CACERTS = "cacerts"
    SEND_CSR = "send-csr"
    ENROLL_PENDING = "enroll-pending"
    RESEND_CSR = "resend-csr"
    ENROLL_ACCEPTED = "enroll-accepted"
    SEND_ENROLL_STATUS = "send-enroll-status"
    REFUSED = "refused"
    ABORT = "abort"


S, E = State, Event
_NON_TERMINAL = [s for s in State if s not in (S.DONE, S.FAILED)]
#: (state, event) -> next state.  Anything absent is an illegal transition.
TRANSITIONS: Mapping[tuple[State, Event], State] = {
    (S.START, E.CONNECTED): S.CONNECTED,
    (S.CONNECTED, E.SEND_VOUCHER_REQUEST): S.VOUCHER_REQUESTED,
    (S.VOUCHER_REQUESTED, E.VOUCHER_PENDING): S.PENDING,
    (S.VOUCHER_REQUESTED, E.VOUCHER_ACCEPTED): S.VOUCHER_ACCEPTED,
    (S.VOUCHER_REQUESTED, E.REFUSED): S.FAILED,
    (S.PENDING, E.RESEND_VOUCHER_REQUEST): S.VOUCHER_REQUESTED,
    (S.VOUCHER_ACCEPTED, E.SEND_VOUCHER_STATUS): S.STATUS_REPORTED,
    (S.STATUS_REPORTED, E.CACERTS): S.STATUS_REPORTED,
    (S.STATUS_REPORTED, E.SEND_CSR): S.ENROLLING,
    (S.ENROLLING, E.ENROLL_PENDING): S.ENROLL_PENDING,
    (S.ENROLLING, E.ENROLL_ACCEPTED): S.ENROLLED,
    (S.ENROLLING, E.REFUSED): S.FAILED,
    (S.ENROLL_PENDING, E.RESEND_CSR): S.ENROLLING,
    (S.ENROLLED, E.SEND_ENROLL_STATUS): S.DONE,
    # Failure telemetry, guarded by the phase that failed (see Pledge._telemetry_guard).
    (S.FAILED, E.SEND_VOUCHER_STATUS): S.FAILED,
    (S.FAILED, E.SEND_ENROLL_STATUS): S.FAILED,
    **{(s, E.ABORT): S.FAILED for s in _NON_TERMINAL},
}

# Which protocol phase a failure in a given state belongs to; decides which
# telemetry message (if any) may report it.
_PHASE: Mapping[State, str] = {
    S.START: "connect",
    S.CONNECTED: "connect",
    S.VOUCHER_REQUESTED: "voucher",
    S.PENDING: "voucher",
    S.VOUCHER_ACCEPTED: "voucher",
    S.STATUS_REPORTED: "enroll",
    S.ENROLLING: "enroll",
    S.ENROLL_PENDING: "enroll",
    S.ENROLLED: "enroll",
}


@lru_cache(maxsize=4)
def _cacerts(body: bytes) -> tuple[x509.Certificate, ...]:
    """A /cacerts answer, parsed once per process per distinct answer: every
    pledge of a fleet gets the same bytes from its registrar, and parsing them
    cost 114 us a pledge (measured).  Bodies are at most the HTTP client's 1 MiB;
    a refusal raises and is not kept."""
    return tuple(parse_certs_only(decode_base64_body(body)))


# --- the state machine ----------------------------------------------------------


class Pledge:
    """One bootstrapping attempt against one registrar connection.

    A new attempt (another proxy, another boot) is a new ``Pledge``: RFC 8995
    5.2 requires a different nonce for each attempt, and a fresh object makes
    it impossible to accept a voucher issued for an earlier one.
    """

    def __init__(
        self,
        *,
        idevid: x509.Certificate,
        key: PrivateKey,
        chain: Sequence[x509.Certificate],
        anchors: Sequence[x509.Certificate],
        media_type: str = oids.MT_VOUCHER_CMS_JSON,
        allowed_assertions: Collection[str] = frozenset({"verified", "logged", "proximity"}),
        accept_nonceless: bool = False,
        clock_skew: timedelta = timedelta(minutes=5),
    ) -> None:
        if media_type not in oids.VOUCHER_MEDIA_TYPES:
            raise errors.ConfigError(
                f"unknown voucher media type {media_type!r}", check="pledge.media-type"
            )
        if not anchors:
            raise errors.ConfigError("no manufacturer trust anchor", check="pledge.anchors")
        # The same key check as comparing SubjectPublicKeyInfo bytes, without
        # serializing both (EVP_PKEY_eq: 4 us against 15 us, measured).
        if idevid.public_key() != key.public_key():
            raise errors.ConfigError(
                "IDevID key does not match certificate", check="pledge.idevid-key"
            )
        serial = device_serial(idevid)
        if not serial:
            # RFC 8995 2.3.1: the serial-number comes from the IDevID subject.
            raise errors.ConfigError(
                "IDevID has no subject serialNumber", check="pledge.idevid-serial"
            )
        self.idevid = idevid
        self.serial = serial
        self._key = key
        self._chain = tuple(chain)
        self._anchors = tuple(anchors)
        self.media_type = media_type
        self.allowed_assertions = frozenset(str(a) for a in allowed_assertions)
        self.accept_nonceless = accept_nonceless
        self.clock_skew = clock_skew
        self.state = State.START
        self.failure: Failed | None = None
        self.voucher: Voucher | None = None
        self.pinned_domain_cert: x509.Certificate | None = None
        self.registrar_cert: x509.Certificate | None = None
        self.ldevid: x509.Certificate | None = None
        self.cacerts: tuple[x509.Certificate, ...] = ()
        self._registrar_chain: tuple[x509.Certificate, ...] = ()
        self._registrar_der = b""
        self._nonce: bytes | None = None
        self._voucher_request: bytes | None = None
        self._pending_since: datetime | None = None
        self._csr: bytes | None = None
        self._csr_spki: bytes | None = None
        self._telemetry_sent: set[Event] = set()

    # -- table plumbing --

    def _require(self, event: Event) -> None:
        if (self.state, event) not in TRANSITIONS:
            raise errors.LocalError(
                f"event {event.value!r} is not allowed in state {self.state.value!r}",
                check="pledge.illegal-transition",
            )

    def _fire(self, event: Event) -> None:
        self._require(event)
        self.state = TRANSITIONS[(self.state, event)]

    def _fail(self, check: str, detail: str, *, http_status: int | None = None) -> Failed:
        failed = Failed(
            check=check,
            detail=detail,
            phase=_PHASE.get(self.state, "connect"),
            http_status=http_status,
        )
        event = Event.REFUSED if (self.state, Event.REFUSED) in TRANSITIONS else Event.ABORT
        self._fire(event)
        self.failure = failed
        return failed

    def abort(self, *, check: str, detail: str) -> Failed:
        """The driver gave up (TLS error, timeout, redirect to another origin...)."""
        self._require(Event.ABORT)
        return self._fail(check, detail)

    # -- connection --

    def connected(self, registrar_cert_der: bytes, chain_der: Sequence[bytes] = ()) -> None:
        """Record the provisionally accepted TLS server certificate (RFC 8995 5.1:
        "The certificate (or chain) MUST be retained for later validation")."""
        self._require(Event.CONNECTED)
        self.registrar_cert = _load_der_cert(registrar_cert_der, "pledge.registrar-cert")
        self._registrar_der = bytes(registrar_cert_der)
        self._registrar_chain = tuple(_load_der_cert(d, "pledge.registrar-cert") for d in chain_der)
        self._fire(Event.CONNECTED)

    # -- voucher --

    def build_voucher_request(self, *, now: datetime, nonce: bytes) -> bytes:
        """The pledge voucher-request of RFC 8995 5.2 (example in 3.3), signed with
        the IDevID credential of section 2.3."""
        self._require(Event.SEND_VOUCHER_REQUEST)
        if not MIN_NONCE <= len(nonce) <= MAX_NONCE:
            raise errors.LocalError(
                f"nonce must be {MIN_NONCE}..{MAX_NONCE} bytes", check="pledge.nonce-length"
            )
        assert self.registrar_cert is not None
        request = VoucherRequest(
            # Whole seconds, as sign_artifact sends it (brski.voucher whole_seconds):
            # cut here, the request is built and validated once, not twice.
            created_on=now.replace(microsecond=0),
            assertion=Assertion.PROXIMITY,
            serial_number=self.serial,
            nonce=nonce,
            # 5.2: "the first certificate in the TLS server 'certificate_list'".
            proximity_registrar_cert=self._registrar_der,
        )
        raw = sign_artifact(
            request, media_type=self.media_type, key=self._key, cert=self.idevid, chain=self._chain
        )
        self._nonce = nonce
        self._voucher_request = raw
        self._fire(Event.SEND_VOUCHER_REQUEST)
        return raw

    def retry_voucher_request(self) -> bytes:
        """RFC 8995 5.6: after a 202 the pledge "MUST resend the same voucher-request"."""
        self._fire(Event.RESEND_VOUCHER_REQUEST)
        assert self._voucher_request is not None
        return self._voucher_request

    def voucher_response(
        self, *, status: int, headers: Mapping[str, str], body: bytes, now: datetime
    ) -> Decision:
        self._require(Event.VOUCHER_ACCEPTED)
        if status == 202:
            if self._pending_since is None:
                self._pending_since = now
            elif now - self._pending_since > MAX_PENDING:
                return self._fail(
                    "pledge.voucher-pending-too-long",
                    "registrar kept the voucher pending for more than 4 days",
                )
            self._fire(Event.VOUCHER_PENDING)
            return Retry(
                after=retry_after_seconds(headers, now), detail=_problem_text(headers, body)
            )
        if status != 200:
            return self._fail(
                "pledge.voucher-http-status",
                f"registrar answered HTTP {status}: {_problem_text(headers, body)}",
                http_status=status,
            )
        try:
            accepted = self._check_voucher(headers, body, now)
        except errors.BrskiError as exc:
            return self._fail(exc.check, exc.detail)
        self.voucher = accepted.voucher
        self.pinned_domain_cert = accepted.pinned_domain_cert
        self._fire(Event.VOUCHER_ACCEPTED)
        return accepted

    def _check_voucher(
        self, headers: Mapping[str, str], body: bytes, now: datetime
    ) -> VoucherAccepted:
        ctype = _base_media_type(_header(headers, "Content-Type"))
        if ctype != self.media_type:
            raise errors.UnsupportedMediaType(
                f"voucher has Content-Type {ctype!r}, asked for {self.media_type!r}",
                check="pledge.voucher-media-type",
            )
        try:
            artifact = verify_artifact(body, media_type=self.media_type, kind=Voucher)
        except errors.BrskiError as exc:
            raise _voucher_decode_error(exc) from exc
        voucher = artifact.payload
        if not isinstance(voucher, Voucher):
            raise errors.VoucherInvalid(
                "payload is not a voucher", check="pledge.voucher-signature"
            )
        # 5.6.1: verify the signature with the manufacturer-installed trust anchor(s).
        try:
            verify_chain(
                artifact.signer,
                intermediates=[c for c in artifact.certificates if c != artifact.signer],
                anchors=self._anchors,
                now=now,
                role=Role.MASA_SIGNER,
            )
        except errors.ChainInvalid as exc:
            raise errors.ChainInvalid(
                f"voucher signer does not chain to a manufacturer anchor: {exc.detail}",
                check="pledge.voucher-signer-untrusted",
                cause=exc.check,
            ) from exc
        # 5.6.1: "serial-number field of the signed voucher matches the pledge's own".
        if voucher.serial_number != self.serial:
            raise errors.VoucherInvalid(
                f"voucher is for serial {voucher.serial_number!r}",
                check="pledge.voucher-serial-number",
            )
        # RFC 8366 5.3 idevid-issuer: "a pledge MUST ensure that its IDevID
        # Authority Key Identifier matches this value".
        if voucher.idevid_issuer is not None:
            aki = _authority_key_id(self.idevid)
            if aki is None or not hmac.compare_digest(aki, voucher.idevid_issuer):
                raise errors.VoucherInvalid(
                    "idevid-issuer does not match the IDevID authority key identifier",
                    check="pledge.voucher-idevid-issuer",
                )
        # 5.6.1 / 2.6.1: the nonce proves freshness; a voucher carrying any other
        # nonce (an earlier attempt's, i.e. a replay) is refused.
        if voucher.nonce is None:
            if not self.accept_nonceless:
                raise errors.VoucherInvalid("voucher has no nonce", check="pledge.voucher-nonce")
        elif self._nonce is None or not hmac.compare_digest(voucher.nonce, self._nonce):
            raise errors.VoucherInvalid(
                "voucher nonce is not the one this attempt sent", check="pledge.voucher-nonce"
            )
        if str(voucher.assertion) not in self.allowed_assertions:
            raise errors.PolicyRefused(
                f"assertion {voucher.assertion!s} not accepted", check="pledge.voucher-assertion"
            )
        # 2.6.1: a pledge that trusts its clock MUST check created-on and expires-on.
        if voucher.created_on > now + self.clock_skew:
            raise errors.VoucherInvalid(
                "voucher created-on is in the future", check="pledge.voucher-created-on"
            )
        if voucher.expires_on is not None and voucher.expires_on <= now:
            raise errors.VoucherInvalid("voucher has expired", check="pledge.voucher-expired")
        pinned = self._authenticate_registrar(voucher, now)
        return VoucherAccepted(voucher=voucher, artifact=artifact, pinned_domain_cert=pinned)

    def _authenticate_registrar(self, voucher: Voucher, now: datetime) -> x509.Certificate | None:
        """RFC 8995 5.6.2 (the provisional TLS connection) with the pin of RFC 8366."""
        assert self.registrar_cert is not None
        if voucher.pinned_domain_cert is not None:
            pinned = _load_der_cert(voucher.pinned_domain_cert, "pledge.voucher-pinned-domain-cert")
            authenticate_server_cert(
                self.registrar_cert, pinned=pinned, intermediates=self._registrar_chain, now=now
            )
            return pinned
        # rfc8366bis: pinned-domain-pubk is the registrar's raw SubjectPublicKeyInfo
        # (RFC 7250), pinned-domain-pubk-sha256 its SHA-256; either pins the end entity.
        spki = _spki(self.registrar_cert)
        digest = hashes.Hash(hashes.SHA256())
        digest.update(spki)
        for pin, actual in (
            (voucher.pinned_domain_pubk, spki),
            (voucher.pinned_domain_pubk_sha256, digest.finalize()),
        ):
            if pin is not None:
                if not hmac.compare_digest(pin, actual):
                    raise errors.ChainInvalid(
                        "registrar key is not the pinned key",
                        check="pledge.registrar-cert-unpinned",
                    )
                _within_validity(self.registrar_cert, now, "pledge.registrar-cert-unpinned")
                return None
        # 5.6.1: no pinned-domain-cert "indicates a failure to enroll in this domain".
        raise errors.VoucherInvalid(
            "voucher pins no domain certificate", check="pledge.voucher-pinned-domain-cert"
        )

    def _telemetry_guard(self, event: Event, phase: str) -> None:
        self._require(event)
        if self.state is State.FAILED:
            assert self.failure is not None
            if self.failure.phase != phase or event in self._telemetry_sent:
                raise errors.LocalError(
                    f"no {phase} telemetry for a failure in the {self.failure.phase} phase",
                    check="pledge.illegal-transition",
                )
        self._telemetry_sent.add(event)

    def _telemetry(self, what: str, success: dict[str, Any]) -> bytes:
        # CDDL of RFC 8995 5.7 / 5.9.4: "version": uint, "status": bool.
        if self.failure is not None:
            context = {"check": self.failure.check, "serial-number": self.serial}
            report = StatusReport(
                version=1, status=False, reason=f"{what} failed", reason_context=context
            )
        else:
            report = StatusReport(
                version=1, status=True, reason=f"{what} succeeded", reason_context=success
            )
        return report.to_json()

    def voucher_status(self) -> bytes:
        """RFC 8995 5.7 telemetry.  On failure the reason names only the check:
        the registrar may be an attacker and "SHOULD NOT" learn more."""
        self._telemetry_guard(Event.SEND_VOUCHER_STATUS, "voucher")
        assertion = str(self.voucher.assertion) if self.voucher else None
        body = self._telemetry("voucher", {"assertion": assertion})
        self._fire(Event.SEND_VOUCHER_STATUS)
        return body

    # -- enrollment --

    def cacerts_response(
        self, *, status: int, headers: Mapping[str, str], body: bytes
    ) -> tuple[x509.Certificate, ...]:
        """RFC 8995 5.9.1 / RFC 7030 4.1.3.  The certificates only ever serve as
        *intermediates* below the pinned anchor, so accepting them adds no trust;
        an unusable answer is recorded as empty rather than failing enrollment."""
        self._fire(Event.CACERTS)
        certs: tuple[x509.Certificate, ...] = ()
        if status == 200:
            try:
                certs = _cacerts(body)
            except errors.BrskiError:
                certs = ()
        self.cacerts = certs
        return certs

    def build_csr(self, *, key: PrivateKey) -> bytes:
        """DER PKCS#10 for /simpleenroll (RFC 7030 4.2.1, RFC 8995 5.9.3) with the
        device serial as CN and serialNumber; ``key`` is the new LDevID key."""
        self._require(Event.SEND_CSR)
        csr = build_csr_der(key=key, subject=device_subject(self.serial))
        self._csr = csr
        self._csr_spki = _spki(key)
        self._fire(Event.SEND_CSR)
        return csr

    def retry_csr(self) -> bytes:
        """RFC 7030 4.2.3: after a 202 "the client repeats the initial enrollment request"."""
        self._fire(Event.RESEND_CSR)
        assert self._csr is not None
        return self._csr

    def enroll_response(
        self, *, status: int, headers: Mapping[str, str], body: bytes, now: datetime
    ) -> Decision:
        self._require(Event.ENROLL_ACCEPTED)
        if status == 202:
            self._fire(Event.ENROLL_PENDING)
            return Retry(
                after=retry_after_seconds(headers, now), detail=_problem_text(headers, body)
            )
        assert self._csr_spki is not None
        # The pinned-domain-cert is the domain trust anchor (5.6.2).  With only a
        # pinned key, the /cacerts answer received over the connection that key
        # authenticated is the explicit TA database (RFC 7030 4.1.3).
        anchors = [self.pinned_domain_cert] if self.pinned_domain_cert else list(self.cacerts)
        try:
            if not anchors:
                raise errors.ChainInvalid("no domain trust anchor", check="pledge.enroll-chain")
            enrolled = verify_issued_cert(
                status=status,
                headers=headers,
                body=body,
                csr_public_spki=self._csr_spki,
                anchors=anchors,
                intermediates=self.cacerts,
                now=now,
            )
        except errors.BrskiError as exc:
            return self._fail(exc.check, exc.detail, http_status=status if status != 200 else None)
        self.ldevid = enrolled.cert
        self._fire(Event.ENROLL_ACCEPTED)
        return enrolled

    def enroll_status(self) -> bytes:
        """RFC 8995 5.9.4 telemetry (sent over the same connection on failure)."""
        self._telemetry_guard(Event.SEND_ENROLL_STATUS, "enroll")
        ldevid = format(self.ldevid.serial_number, "x") if self.ldevid else None
        body = self._telemetry("enrollment", {"ldevid-serial": ldevid})
        self._fire(Event.SEND_ENROLL_STATUS)
        return body
