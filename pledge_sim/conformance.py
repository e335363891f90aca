"""``brski pledge conformance``: a named suite a lab runs against any BRSKI registrar.

Why crafted requests rather than a mis-configured pledge: the reference pledge
(:mod:`brski.pledge`) refuses to build a wrong request, so each refusal case
builds its bytes from the sans-IO pieces (``sign_artifact``,
``VoucherRequest``, ``build_csr_der``, ``brski.est``) and sends them over
:class:`pledge_sim.http.HttpConnection`, one fresh TLS connection per case so
one case's state never leaks into the next.

Every case names the RFC section it checks and its expected outcome: a
status class or exact statuses for refusals (the problem body's ``check`` is
reported, not required: another registrar names its rules differently), and
a verified result for the happy path and the interop variations real clients
send (chunked uploads, base64 with and without line breaks, with and without
Content-Transfer-Encoding).  Order matters: the happy path runs first and
gives the first device its voucher, which the EST cases need.

Judging (outcomes in :mod:`pledge_sim.conformance_report`): a refusal that
repeats the answer the happy path already failed with is ``inconclusive``,
not a pass; the telemetry answers (RFC 8995 5.7, 5.9.4: 200 or 404, "the
client ignores any response") are ``report``, never judged; and where RFC
8995 5.2 demands a 401 *and* a closed connection, both are required.

Identities: ``--idevid DIR`` is one dev-PKI pledge directory or a ``pledges/``
directory.  The first device is the subject of the suite; a second one, if
present, plays the trusted device that has no voucher yet.  A "stranger" (an
IDevID under a CA generated for the run, which no registrar trusts) plays the
unknown client.
"""

from __future__ import annotations

import base64
import json
import os
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from brski import est, oids
from brski.artifact import sign_artifact, verify_artifact
from brski.errors import BrskiError
from brski.pki import PrivateKey, generate_key, spki_sha256
from brski.pledge import build_csr_der, device_subject
from brski.voucher import Assertion, Voucher, VoucherRequest
from pledge_sim.config import PledgeConfig
from pledge_sim.conformance_report import CaseResult, format_table, junit_xml
from pledge_sim.fleet import FleetPledge, generate_idevids
from pledge_sim.http import HttpConnection, Response
from pledge_sim.service import enroll_one
from pledge_sim.session import connection

__all__ = ["CASES", "CaseResult", "Suite", "format_table", "junit_xml", "make_stranger", "run_suite"]

VR = "/.well-known/brski/requestvoucher"
VSTATUS = "/.well-known/brski/voucher_status"
ESTATUS = "/.well-known/brski/enrollstatus"
CACERTS = "/.well-known/est/cacerts"
ENROLL = "/.well-known/est/simpleenroll"
REENROLL = "/.well-known/est/simplereenroll"
CMS = oids.MT_VOUCHER_CMS_JSON
_VR_HEADERS = {"Content-Type": CMS, "Accept": CMS}
_STATUS_OK = json.dumps({"version": 1, "status": True}).encode()
# How long a registrar may take to close the connection after its answer
# (RFC 8995 5.2); an honest one closes right after the body.
_CLOSE_WAIT_S = 10.0
# An answer as the judging compares them: status and the check it names, if any.
Answer = tuple[int, str | None]


@dataclass(frozen=True, kw_only=True)
class _Case:
    name: str
    section: str
    expected: str
    run: Callable[[Suite], Awaitable[tuple[bool | None, str]]]  # None = skipped
    # "refusal": inconclusive when it repeats the happy path's failure;
    # "telemetry": reported, never judged; "positive": judged as is.
    kind: Literal["positive", "refusal", "telemetry"] = "refusal"


class _Fail(Exception):
    """A case's expectation not met (the message is the observation)."""


@dataclass
class Suite:
    """The run's identities and the registrar; every case is a method-free coroutine on it."""

    cfg: PledgeConfig
    anchors: list[x509.Certificate]
    device: FleetPledge
    second: FleetPledge | None
    stranger: FleetPledge
    registrar_cert: bytes | None = None
    domain_ca_subject: x509.Name | None = None
    captured_vr: bytes | None = None
    notes: list[str] = field(default_factory=list)
    # The answer the happy path failed with, and the last answer of a case.
    happy_failure: Answer | None = None
    last_answer: Answer | None = None

    async def connect(self, who: FleetPledge | tuple[x509.Certificate, PrivateKey]) -> HttpConnection:
        if isinstance(who, FleetPledge):
            certs, key = [who.cert, *who.chain], who.key
        else:
            certs, key = [who[0]], who[1]
        conn = connection(self.cfg, certs, key)
        der = await conn.connect()
        if self.registrar_cert is None:
            self.registrar_cert = der
        return conn

    async def send(
        self,
        who: FleetPledge | tuple[x509.Certificate, PrivateKey],
        method: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
        chunked: bool = False,
    ) -> Response:
        conn = await self.connect(who)
        try:
            resp = await conn.request(method, path, headers=headers or {}, body=body, chunked=chunked)
        finally:
            await conn.close()
        self.last_answer = _answer(resp)
        return resp

    async def learn_registrar_cert(self) -> bytes:
        """The registrar's TLS certificate (RFC 8995 5.1), connecting once if not yet seen."""
        if self.registrar_cert is None:
            await (await self.connect(self.device)).close()
        assert self.registrar_cert is not None
        return self.registrar_cert

    async def send_then_watch(
        self, who: FleetPledge, method: str, path: str, *, headers: dict[str, str], body: bytes
    ) -> tuple[Response, bool]:
        """The response, and whether the registrar then closed the connection."""
        conn = await self.connect(who)
        try:
            resp = await conn.request(method, path, headers=headers, body=body, hold_open=True)
            closed = await conn.peer_closed(timeout=min(self.cfg.timeout, _CLOSE_WAIT_S))
        finally:
            await conn.close()
        self.last_answer = _answer(resp)
        return resp, closed

    def voucher_request(
        self,
        *,
        serial: str | None = None,
        proximity: bytes | None = None,
        nonce: bytes | bool | None = True,
        assertion: Assertion = Assertion.PROXIMITY,
        signer: tuple[x509.Certificate, PrivateKey] | None = None,
    ) -> bytes:
        """A pledge voucher-request (RFC 8995 5.2) with any one field wrong."""
        assert self.registrar_cert is not None
        vr = VoucherRequest(
            created_on=datetime.now(UTC),
            assertion=assertion,
            serial_number=serial if serial is not None else self.device.serial,
            nonce=os.urandom(32) if nonce is True else (nonce or None),
            proximity_registrar_cert=proximity if proximity is not None else self.registrar_cert,
        )
        cert, key = signer if signer else (self.device.cert, self.device.key)
        chain = () if signer else self.device.chain
        return sign_artifact(vr, media_type=CMS, key=key, cert=cert, chain=chain)


# --- helpers ------------------------------------------------------------------------


_CHECK_IN_TEXT = re.compile(r"\(check: ([^)\s]+)\)|\[([^\]\s]+)\]\s*$")


def _check_name(text: str) -> str | None:
    """The check an error text names: our plain form "(check: NAME)", or a pledge's "detail [NAME]"."""
    m = _CHECK_IN_TEXT.search(text)
    return (m.group(1) or m.group(2)) if m else None


def _problem_check(resp: Response) -> str:
    try:
        doc = json.loads(resp.body)
        return str(doc.get("check", "")) if isinstance(doc, dict) else ""
    except ValueError:
        # RFC 8995 5.6 plain-text errors: ours end in "(check: NAME)".
        text = resp.body[:500].decode("utf-8", "replace")
        return _check_name(text) or text[:60].strip()


def _answer(resp: Response) -> Answer:
    if resp.status < 300:
        return resp.status, None
    try:
        doc = json.loads(resp.body)
        check = doc.get("check") if isinstance(doc, dict) else None
        return resp.status, str(check) if check else None
    except ValueError:
        return resp.status, _check_name(resp.body[:500].decode("utf-8", "replace"))


def _happy_failure(detail: str | None) -> Answer | None:
    """The HTTP answer a failed enrolment reports ("... answered HTTP 403: text [check]")."""
    m = re.search(r"answered HTTP (\d{3})", detail or "")
    return (int(m.group(1)), _check_name(detail or "")) if m else None


def _observed(resp: Response) -> str:
    check = _problem_check(resp) if resp.status >= 300 else ""
    return f"{resp.status} {check}".strip()


def _refused(resp: Response, allowed: Sequence[int] = ()) -> tuple[bool, str]:
    """4xx (or exactly one of ``allowed``) and no certificate or voucher in the answer."""
    ok = resp.status in allowed if allowed else 400 <= resp.status < 500
    return ok, _observed(resp)


def _self_signed(subject: x509.Name, *, issuer: x509.Name | None = None, ca: bool = False) -> tuple[x509.Certificate, PrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    b = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer or subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), True)
    )
    return b.sign(key, hashes.SHA256()), key


def _name(cn: str, serial: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if serial:
        attrs.append(x509.NameAttribute(NameOID.SERIAL_NUMBER, serial))
    return x509.Name(attrs)


def _csr(serial: str, key: PrivateKey | None = None) -> tuple[bytes, PrivateKey]:
    key = key or generate_key("p256")
    return build_csr_der(key=key, subject=device_subject(serial)), key


def _enroll_headers(cte: bool = True) -> dict[str, str]:
    h = {"Content-Type": oids.MT_PKCS10, "Accept": oids.MT_PKCS7_MIME}
    if cte:
        h["Content-Transfer-Encoding"] = "base64"
    return h


def _issued_for(resp: Response, key: PrivateKey) -> tuple[bool, str]:
    """2xx with a certs-only answer certifying exactly the CSR's key."""
    if resp.status != 200:
        return False, _observed(resp)
    try:
        certs = est.parse_certs_only(est.decode_est_body(resp.body, content_transfer_encoding=resp.headers.get("Content-Transfer-Encoding")))
    except BrskiError as exc:
        return False, f"200 but the body does not parse: {exc.check}"
    if not certs or spki_sha256(certs[0]) != spki_sha256(key.public_key()):
        return False, "200 but the certificate is not for the CSR's key"
    return True, "200 LDevID issued"


# --- the cases ----------------------------------------------------------------------


async def _happy(s: Suite, *, chunked: bool = False) -> tuple[bool, str]:
    cfg = replace(s.cfg, chunked=chunked)
    res = await enroll_one(cfg, identity=(s.device.cert, s.device.key, list(s.device.chain), s.anchors))
    await s.learn_registrar_cert()
    if not res.ok:
        s.happy_failure = s.happy_failure or _happy_failure(res.detail)
        return False, f"failed [{res.failed_check}] {res.detail}"
    if res.ldevid is not None:
        s.domain_ca_subject = res.ldevid.issuer
    return True, f"voucher {res.voucher.assertion if res.voucher else '?'}, LDevID issued"


async def _vr_other_key(s: Suite) -> tuple[bool, str]:
    signer = _self_signed(_name("impostor", s.device.serial))
    return _refused(await s.send(s.device, "POST", VR, headers=_VR_HEADERS, body=s.voucher_request(signer=signer)))


async def _vr_wrong_serial(s: Suite) -> tuple[bool, str]:
    body = s.voucher_request(serial=s.device.serial + "-X")
    return _refused(await s.send(s.device, "POST", VR, headers=_VR_HEADERS, body=body))


async def _unauthorized_and_closed(s: Suite, body: bytes) -> tuple[bool, str]:
    """RFC 8995 5.2: "the connection MUST be closed after the returning of an HTTP 401"."""
    resp, closed = await s.send_then_watch(s.device, "POST", VR, headers=_VR_HEADERS, body=body)
    return resp.status == 401 and closed, f"{_observed(resp)}, connection {'closed' if closed else 'left open'}"


async def _vr_foreign_proximity(s: Suite) -> tuple[bool, str]:
    await s.learn_registrar_cert()
    other, _ = _self_signed(_name("another registrar"))
    return await _unauthorized_and_closed(s, s.voucher_request(proximity=other.public_bytes(serialization.Encoding.DER)))


async def _vr_replayed_by_other(s: Suite) -> tuple[bool, str]:
    # A voucher-request captured from the device, replayed by another TLS client.
    captured = s.captured_vr or s.voucher_request()
    thief = s.second or s.stranger
    return _refused(await s.send(thief, "POST", VR, headers=_VR_HEADERS, body=captured))


async def _vr_replayed_same(s: Suite) -> tuple[bool, str]:
    # The same signed request sent again on a new connection: a registrar may
    # refuse it; if it answers, the voucher must be bound to that request's
    # nonce (never to another one), and it must not fail with a 5xx.
    body = s.captured_vr or s.voucher_request()
    s.captured_vr = body
    first = await s.send(s.device, "POST", VR, headers=_VR_HEADERS, body=body)
    again = await s.send(s.device, "POST", VR, headers=_VR_HEADERS, body=body)
    if 400 <= again.status < 500:
        return True, f"first {first.status}, replay refused: {_observed(again)}"
    if again.status != 200:
        return False, f"first {first.status}, replay {_observed(again)}"
    sent = verify_artifact(body, media_type=CMS, kind=VoucherRequest).payload
    got = verify_artifact(again.body, media_type=again.headers.get("Content-Type", CMS).split(";")[0], kind=Voucher).payload
    same = isinstance(sent, VoucherRequest) and isinstance(got, Voucher) and got.nonce == sent.nonce
    return same, "replay answered with a voucher bound to the replayed nonce" if same else "voucher nonce differs"


async def _vr_no_nonce(s: Suite) -> tuple[bool, str]:
    return _refused(await s.send(s.device, "POST", VR, headers=_VR_HEADERS, body=s.voucher_request(nonce=None)))


async def _vr_not_proximity(s: Suite) -> tuple[bool, str]:
    await s.learn_registrar_cert()
    return await _unauthorized_and_closed(s, s.voucher_request(assertion=Assertion.VERIFIED))


async def _vr_bad_signature(s: Suite) -> tuple[bool, str]:
    raw = bytearray(s.voucher_request())
    raw[-8] ^= 0x01  # inside the ECDSA signature value, the last field of SignerInfo
    return _refused(await s.send(s.device, "POST", VR, headers=_VR_HEADERS, body=bytes(raw)), (400, 403))


async def _vr_content_type(s: Suite) -> tuple[bool, str]:
    headers = {"Content-Type": "text/plain", "Accept": CMS}
    return _refused(await s.send(s.device, "POST", VR, headers=headers, body=s.voucher_request()), (415,))


async def _vr_accept(s: Suite) -> tuple[bool, str]:
    headers = {"Content-Type": CMS, "Accept": "text/html"}
    return _refused(await s.send(s.device, "POST", VR, headers=headers, body=s.voucher_request()), (406,))


async def _vr_oversized(s: Suite) -> tuple[bool, str]:
    body = b"\x30\x84\x00\x10\x00\x00" + bytes(1 << 20)
    try:
        resp = await s.send(s.device, "POST", VR, headers=_VR_HEADERS, body=body)
    except BrskiError as exc:  # closing mid-upload is a refusal too
        return exc.check == "http.connection-closed", f"connection closed ({exc.check})"
    return _refused(resp, (413,))


async def _vr_malformed(s: Suite) -> tuple[bool, str]:
    return _refused(await s.send(s.device, "POST", VR, headers=_VR_HEADERS, body=b"\x30\x03garbage"), (400,))


async def _vr_empty(s: Suite) -> tuple[bool, str]:
    return _refused(await s.send(s.device, "POST", VR, headers=_VR_HEADERS, body=b""), (400,))


async def _enroll_before_voucher(s: Suite) -> tuple[bool, str]:
    who = s.second or s.stranger
    csr, _ = _csr(who.serial)
    return _refused(await s.send(who, "POST", ENROLL, headers=_enroll_headers(), body=est.encode_base64_body(csr)), (401, 403))


async def _csr_other_device(s: Suite) -> tuple[bool, str]:
    csr, _ = _csr(s.second.serial if s.second else s.device.serial + "-OTHER")
    return _refused(await s.send(s.device, "POST", ENROLL, headers=_enroll_headers(), body=est.encode_base64_body(csr)), (403,))


async def _csr_idevid_key(s: Suite) -> tuple[bool, str]:
    csr, _ = _csr(s.device.serial, s.device.key)
    return _refused(await s.send(s.device, "POST", ENROLL, headers=_enroll_headers(), body=est.encode_base64_body(csr)), (400, 403))


async def _csr_bad_signature(s: Suite) -> tuple[bool, str]:
    csr, _ = _csr(s.device.serial)
    raw = bytearray(csr)
    raw[-6] ^= 0x01  # inside the signature BIT STRING
    return _refused(await s.send(s.device, "POST", ENROLL, headers=_enroll_headers(), body=est.encode_base64_body(bytes(raw))), (400,))


async def _csr_bad_base64(s: Suite) -> tuple[bool, str]:
    return _refused(await s.send(s.device, "POST", ENROLL, headers=_enroll_headers(), body=b"MIIB!!not*base64$$\n"), (400,))


async def _csr_content_type(s: Suite) -> tuple[bool, str]:
    csr, _ = _csr(s.device.serial)
    headers = {**_enroll_headers(), "Content-Type": "application/octet-stream"}
    return _refused(await s.send(s.device, "POST", ENROLL, headers=headers, body=est.encode_base64_body(csr)), (415,))


async def _reenroll_with_idevid(s: Suite) -> tuple[bool, str]:
    csr, _ = _csr(s.device.serial)
    return _refused(await s.send(s.device, "POST", REENROLL, headers=_enroll_headers(), body=est.encode_base64_body(csr)), (401, 403))


async def _reenroll_forged_ldevid(s: Suite) -> tuple[bool, str]:
    # Issuer name copied from the domain CA, signature from a key nobody trusts.
    note = ""
    if s.domain_ca_subject is None:
        resp = await s.send(s.device, "GET", CACERTS, headers={"Accept": oids.MT_PKCS7_MIME})
        certs: list[x509.Certificate] = []
        if resp.status == 200:  # RFC 7030 4.1.3: only a 200 carries certificates
            try:
                certs = est.parse_certs_only(est.decode_est_body(resp.body, content_transfer_encoding="base64"))
            except BrskiError:
                certs = []
        if certs:
            s.domain_ca_subject = certs[0].subject
        else:
            # No CA certificates to copy: the issuer of the registrar's TLS
            # certificate is the next best guess at the domain CA's name.
            s.domain_ca_subject = x509.load_der_x509_certificate(await s.learn_registrar_cert()).issuer
            note = f" (/cacerts answered {_observed(resp)}: forged under the TLS certificate's issuer)"
    forged = _self_signed(device_subject(s.device.serial), issuer=s.domain_ca_subject)
    csr, _ = _csr(s.device.serial)
    ok, observed = _refused(
        await s.send(forged, "POST", REENROLL, headers=_enroll_headers(), body=est.encode_base64_body(csr)), (401, 403)
    )
    return ok, observed + note


# Telemetry (RFC 8995 5.7, 5.9.4): "The server SHOULD respond with an HTTP 200
# but MAY simply fail with an HTTP 404 error. The client ignores any
# response."  What a registrar answers is reported, not judged.


async def _telemetry(s: Suite, who: FleetPledge, path: str, content_type: str = oids.MT_JSON) -> tuple[bool, str]:
    resp = await s.send(who, "POST", path, headers={"Content-Type": content_type}, body=_STATUS_OK)
    return True, _observed(resp)


async def _vstatus_unknown(s: Suite) -> tuple[bool, str]:
    return await _telemetry(s, s.stranger, VSTATUS)


async def _estatus_unknown(s: Suite) -> tuple[bool, str]:
    return await _telemetry(s, s.stranger, ESTATUS)


async def _vstatus_other_device(s: Suite) -> tuple[bool | None, str]:
    if s.second is None:
        return None, "needs a second pledge directory under --idevid"
    return await _telemetry(s, s.second, VSTATUS)


async def _status_content_type(s: Suite) -> tuple[bool, str]:
    return await _telemetry(s, s.device, VSTATUS, "text/plain")


async def _interop_enroll(s: Suite, *, cte: bool = True, encode: Callable[[bytes], bytes] = est.encode_base64_body, chunked: bool = False) -> tuple[bool, str]:
    csr, key = _csr(s.device.serial)
    resp = await s.send(s.device, "POST", ENROLL, headers=_enroll_headers(cte), body=encode(csr), chunked=chunked)
    return _issued_for(resp, key)


def _one_line(der: bytes) -> bytes:
    return base64.b64encode(der)


def _crlf76(der: bytes) -> bytes:
    text = base64.b64encode(der)
    return b"".join(text[i : i + 76] + b"\r\n" for i in range(0, len(text), 76))


_ANY = "any answer (200 or 404 per RFC); reported"

CASES: tuple[_Case, ...] = (
    _Case(name="happy-path", section="RFC 8995 5.1-5.9.4", expected="voucher verified, LDevID issued", run=_happy, kind="positive"),
    _Case(name="vr-signed-by-other-key", section="RFC 8995 5.2, 5.3", expected="4xx refused", run=_vr_other_key),
    _Case(name="vr-wrong-serial-number", section="RFC 8995 5.5", expected="4xx refused", run=_vr_wrong_serial),
    _Case(name="vr-foreign-proximity-cert", section="RFC 8995 5.2", expected="401, connection closed", run=_vr_foreign_proximity),
    _Case(name="vr-replayed-by-another-client", section="RFC 8995 5.3", expected="4xx refused", run=_vr_replayed_by_other),
    _Case(name="vr-replayed-by-same-device", section="RFC 8995 5.2, 11.4", expected="4xx, or voucher for the replayed nonce", run=_vr_replayed_same),
    _Case(name="vr-nonce-missing", section="RFC 8995 5.2", expected="4xx refused", run=_vr_no_nonce),
    _Case(name="vr-assertion-not-proximity", section="RFC 8995 5.2", expected="401, connection closed", run=_vr_not_proximity),
    _Case(name="vr-bad-signature", section="RFC 5652 5.4, RFC 8995 5.3", expected="400/403", run=_vr_bad_signature),
    _Case(name="vr-wrong-content-type", section="RFC 8995 5.2, RFC 9110 15.5.16", expected="415", run=_vr_content_type),
    _Case(name="vr-unacceptable-accept", section="RFC 8995 5.3, RFC 9110 12.5.1", expected="406", run=_vr_accept),
    _Case(name="vr-oversized-body", section="RFC 8995 5.1, RFC 9110 15.5.14", expected="413 (or closed)", run=_vr_oversized),
    _Case(name="vr-malformed-body", section="RFC 8995 5.3, RFC 5652", expected="400", run=_vr_malformed),
    _Case(name="vr-empty-body", section="RFC 8995 5.3", expected="400", run=_vr_empty),
    _Case(name="enroll-before-voucher", section="RFC 7030 3.7, RFC 8995 5.9", expected="401/403", run=_enroll_before_voucher),
    _Case(name="csr-for-another-device", section="RFC 8995 5.9.2, RFC 7030 3.5", expected="403", run=_csr_other_device),
    _Case(name="csr-reuses-idevid-key", section="RFC 8995 5.9.3, RFC 7030 4.2.1", expected="400/403", run=_csr_idevid_key),
    _Case(name="csr-bad-signature", section="RFC 7030 3.4, RFC 2986", expected="400", run=_csr_bad_signature),
    _Case(name="csr-malformed-base64", section="RFC 7030 4.2.1, RFC 8951 3", expected="400", run=_csr_bad_base64),
    _Case(name="csr-wrong-content-type", section="RFC 7030 4.2.1", expected="415", run=_csr_content_type),
    _Case(name="reenroll-with-idevid", section="RFC 7030 4.2.2, 3.3.2", expected="401/403", run=_reenroll_with_idevid),
    _Case(name="reenroll-forged-ldevid", section="RFC 7030 3.3.2", expected="401/403", run=_reenroll_forged_ldevid),
    _Case(name="voucher-status-unknown-device", section="RFC 8995 5.7", expected=_ANY, run=_vstatus_unknown, kind="telemetry"),
    _Case(name="voucher-status-other-device", section="RFC 8995 5.7", expected=_ANY, run=_vstatus_other_device, kind="telemetry"),
    _Case(name="enroll-status-unknown-device", section="RFC 8995 5.9.4", expected=_ANY, run=_estatus_unknown, kind="telemetry"),
    _Case(name="telemetry-wrong-content-type", section="RFC 8995 5.7", expected=_ANY, run=_status_content_type, kind="telemetry"),
    _Case(name="interop-chunked-bootstrap", section="RFC 9112 7.1, RFC 8995 5.2", expected="full bootstrap succeeds", run=lambda s: _happy(s, chunked=True), kind="positive"),
    _Case(name="interop-csr-with-cte", section="RFC 7030 4.2.1", expected="200, LDevID for the key", run=_interop_enroll, kind="positive"),
    _Case(name="interop-csr-without-cte", section="RFC 8951 3", expected="200, LDevID for the key", run=lambda s: _interop_enroll(s, cte=False), kind="positive"),
    _Case(name="interop-csr-base64-one-line", section="RFC 8951 3, RFC 4648 4", expected="200, LDevID for the key", run=lambda s: _interop_enroll(s, encode=_one_line), kind="positive"),
    _Case(name="interop-csr-base64-crlf-76", section="RFC 8951 3, RFC 2045 6.8", expected="200, LDevID for the key", run=lambda s: _interop_enroll(s, encode=_crlf76), kind="positive"),
    _Case(name="interop-csr-chunked", section="RFC 9112 7.1, RFC 7030 4.2.1", expected="200, LDevID for the key", run=lambda s: _interop_enroll(s, chunked=True), kind="positive"),
)


def _judge(case: _Case, suite: Suite, passed: bool | None, observed: str) -> tuple[str, str]:
    if passed is None:
        return "skip", observed
    if case.kind == "telemetry":  # even an error or a lost connection: the client ignores the answer
        return "report", observed
    if (
        passed
        and case.kind == "refusal"
        and suite.happy_failure is not None
        and suite.last_answer == suite.happy_failure
    ):
        # The happy path was refused with this very answer: this refusal
        # cannot be told apart from the registrar refusing everything.
        return "inconclusive", f"{observed} (the happy path failed with the same answer)"
    return ("pass" if passed else "fail"), observed


async def run_suite(
    suite: Suite,
    *,
    on_result: Callable[[CaseResult], None] | None = None,
    cases: Sequence[_Case] = CASES,
) -> list[CaseResult]:
    results = []
    for case in cases:
        t0 = time.perf_counter()
        suite.last_answer = None
        try:
            passed, observed = await case.run(suite)
        except BrskiError as exc:
            passed, observed = False, f"error [{exc.check}] {exc.detail}"
        except Exception as exc:
            passed, observed = False, f"exception {type(exc).__name__}: {exc}"
        outcome, observed = _judge(case, suite, passed, observed)
        r = CaseResult(
            name=case.name, section=case.section, expected=case.expected, outcome=outcome,
            observed=observed, seconds=round(time.perf_counter() - t0, 3),
        )
        results.append(r)
        if on_result is not None:
            on_result(r)
    return results


def make_stranger() -> FleetPledge:
    """An IDevID under a CA created for this run only: no registrar trusts it."""
    ca_cert, ca_key = _self_signed(_name("conformance stranger CA"), ca=True)
    return generate_idevids(
        ca_cert=ca_cert, ca_key=ca_key, masa_url="https://masa.invalid", count=1,
        now=datetime.now(UTC), prefix=f"STRANGER-{os.urandom(3).hex()}",
    )[0]
