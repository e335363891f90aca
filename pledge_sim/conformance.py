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

Identities: ``--idevid DIR`` is one dev-PKI pledge directory or a ``pledges/``
directory.  The first device is the subject of the suite; a second one, if
present, plays the trusted device that has no voucher yet.  A "stranger" (an
IDevID under a CA generated for the run, which no registrar trusts) plays the
unknown client.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from brski import est, oids
from brski.artifact import sign_artifact, verify_artifact
from brski.errors import BrskiError, ConfigError
from brski.pki import PrivateKey, generate_key, load_certs, spki_sha256
from brski.pledge import build_csr_der, device_subject
from brski.voucher import Assertion, Voucher, VoucherRequest
from pledge_sim.config import PledgeConfig, load_config
from pledge_sim.fleet import FleetPledge, generate_idevids, load_idevid_dir
from pledge_sim.http import HttpConnection, Response
from pledge_sim.service import client_context, enroll_one

__all__ = ["CaseResult", "Suite", "add_parser", "cmd_conformance", "junit_xml", "run_suite"]

VR = "/.well-known/brski/requestvoucher"
VSTATUS = "/.well-known/brski/voucher_status"
ESTATUS = "/.well-known/brski/enrollstatus"
CACERTS = "/.well-known/est/cacerts"
ENROLL = "/.well-known/est/simpleenroll"
REENROLL = "/.well-known/est/simplereenroll"
CMS = oids.MT_VOUCHER_CMS_JSON
_VR_HEADERS = {"Content-Type": CMS, "Accept": CMS}
_STATUS_OK = json.dumps({"version": 1, "status": True}).encode()


@dataclass(frozen=True, kw_only=True)
class CaseResult:
    name: str
    section: str
    expected: str
    outcome: str  # "pass" | "fail" | "skip"
    observed: str
    seconds: float = 0.0


@dataclass(frozen=True, kw_only=True)
class _Case:
    name: str
    section: str
    expected: str
    run: Callable[[Suite], Awaitable[tuple[bool | None, str]]]  # None = skipped


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

    async def connect(self, who: FleetPledge | tuple[x509.Certificate, PrivateKey]) -> HttpConnection:
        if isinstance(who, FleetPledge):
            certs, key = [who.cert, *who.chain], who.key
        else:
            certs, key = [who[0]], who[1]
        conn = HttpConnection(
            host=self.cfg.host,
            port=self.cfg.port,
            credentials=client_context(certs, key),
            server_hostname=self.cfg.server_hostname,
            timeout=self.cfg.timeout,
        )
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
            return await conn.request(method, path, headers=headers or {}, body=body, chunked=chunked)
        finally:
            await conn.close()

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


def _problem_check(resp: Response) -> str:
    try:
        doc = json.loads(resp.body)
        return str(doc.get("check", "")) if isinstance(doc, dict) else ""
    except ValueError:
        # RFC 8995 5.6 plain-text errors: ours end in "(check: NAME)".
        text = resp.body[:500].decode("utf-8", "replace")
        m = re.search(r"\(check: ([^)\s]+)\)", text)
        return m.group(1) if m else text[:60].strip()


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
    if s.registrar_cert is None:
        await (await s.connect(s.device)).close()
    if not res.ok:
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


async def _vr_foreign_proximity(s: Suite) -> tuple[bool, str]:
    other, _ = _self_signed(_name("another registrar"))
    body = s.voucher_request(proximity=other.public_bytes(serialization.Encoding.DER))
    return _refused(await s.send(s.device, "POST", VR, headers=_VR_HEADERS, body=body))


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
    body = s.voucher_request(assertion=Assertion.VERIFIED)
    return _refused(await s.send(s.device, "POST", VR, headers=_VR_HEADERS, body=body))


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
    if s.domain_ca_subject is None:
        resp = await s.send(s.device, "GET", CACERTS, headers={"Accept": oids.MT_PKCS7_MIME})
        certs = est.parse_certs_only(est.decode_est_body(resp.body, content_transfer_encoding="base64"))
        s.domain_ca_subject = certs[0].subject
    forged = _self_signed(device_subject(s.device.serial), issuer=s.domain_ca_subject)
    csr, _ = _csr(s.device.serial)
    return _refused(await s.send(forged, "POST", REENROLL, headers=_enroll_headers(), body=est.encode_base64_body(csr)), (401, 403))


async def _vstatus_unknown(s: Suite) -> tuple[bool, str]:
    return _refused(await s.send(s.stranger, "POST", VSTATUS, headers={"Content-Type": oids.MT_JSON}, body=_STATUS_OK), (401, 403))


async def _estatus_unknown(s: Suite) -> tuple[bool, str]:
    return _refused(await s.send(s.stranger, "POST", ESTATUS, headers={"Content-Type": oids.MT_JSON}, body=_STATUS_OK), (401, 403))


async def _vstatus_other_device(s: Suite) -> tuple[bool | None, str]:
    if s.second is None:
        return None, "needs a second pledge directory under --idevid"
    return _refused(await s.send(s.second, "POST", VSTATUS, headers={"Content-Type": oids.MT_JSON}, body=_STATUS_OK), (401, 403))


async def _status_content_type(s: Suite) -> tuple[bool, str]:
    return _refused(await s.send(s.device, "POST", VSTATUS, headers={"Content-Type": "text/plain"}, body=_STATUS_OK), (415,))


async def _interop_enroll(s: Suite, *, cte: bool = True, encode: Callable[[bytes], bytes] = est.encode_base64_body, chunked: bool = False) -> tuple[bool, str]:
    csr, key = _csr(s.device.serial)
    resp = await s.send(s.device, "POST", ENROLL, headers=_enroll_headers(cte), body=encode(csr), chunked=chunked)
    return _issued_for(resp, key)


def _one_line(der: bytes) -> bytes:
    return base64.b64encode(der)


def _crlf76(der: bytes) -> bytes:
    text = base64.b64encode(der)
    return b"".join(text[i : i + 76] + b"\r\n" for i in range(0, len(text), 76))


CASES: tuple[_Case, ...] = (
    _Case(name="happy-path", section="RFC 8995 5.1-5.9.4", expected="voucher verified, LDevID issued", run=_happy),
    _Case(name="vr-signed-by-other-key", section="RFC 8995 5.2, 5.3", expected="4xx refused", run=_vr_other_key),
    _Case(name="vr-wrong-serial-number", section="RFC 8995 5.5", expected="4xx refused", run=_vr_wrong_serial),
    _Case(name="vr-foreign-proximity-cert", section="RFC 8995 5.2", expected="4xx refused", run=_vr_foreign_proximity),
    _Case(name="vr-replayed-by-another-client", section="RFC 8995 5.3", expected="4xx refused", run=_vr_replayed_by_other),
    _Case(name="vr-replayed-by-same-device", section="RFC 8995 5.2, 11.4", expected="4xx, or voucher for the replayed nonce", run=_vr_replayed_same),
    _Case(name="vr-nonce-missing", section="RFC 8995 5.2", expected="4xx refused", run=_vr_no_nonce),
    _Case(name="vr-assertion-not-proximity", section="RFC 8995 5.2", expected="4xx refused", run=_vr_not_proximity),
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
    _Case(name="voucher-status-unknown-device", section="RFC 8995 5.7", expected="401/403", run=_vstatus_unknown),
    _Case(name="voucher-status-other-device", section="RFC 8995 5.7", expected="401/403", run=_vstatus_other_device),
    _Case(name="enroll-status-unknown-device", section="RFC 8995 5.9.4", expected="401/403", run=_estatus_unknown),
    _Case(name="telemetry-wrong-content-type", section="RFC 8995 5.7", expected="415", run=_status_content_type),
    _Case(name="interop-chunked-bootstrap", section="RFC 9112 7.1, RFC 8995 5.2", expected="full bootstrap succeeds", run=lambda s: _happy(s, chunked=True)),
    _Case(name="interop-csr-with-cte", section="RFC 7030 4.2.1", expected="200, LDevID for the key", run=_interop_enroll),
    _Case(name="interop-csr-without-cte", section="RFC 8951 3", expected="200, LDevID for the key", run=lambda s: _interop_enroll(s, cte=False)),
    _Case(name="interop-csr-base64-one-line", section="RFC 8951 3, RFC 4648 4", expected="200, LDevID for the key", run=lambda s: _interop_enroll(s, encode=_one_line)),
    _Case(name="interop-csr-base64-crlf-76", section="RFC 8951 3, RFC 2045 6.8", expected="200, LDevID for the key", run=lambda s: _interop_enroll(s, encode=_crlf76)),
    _Case(name="interop-csr-chunked", section="RFC 9112 7.1, RFC 7030 4.2.1", expected="200, LDevID for the key", run=lambda s: _interop_enroll(s, chunked=True)),
)


async def run_suite(suite: Suite, *, on_result: Callable[[CaseResult], None] | None = None) -> list[CaseResult]:
    results = []
    for case in CASES:
        t0 = time.perf_counter()
        try:
            passed, observed = await case.run(suite)
        except BrskiError as exc:
            passed, observed = False, f"error [{exc.check}] {exc.detail}"
        except Exception as exc:
            passed, observed = False, f"exception {type(exc).__name__}: {exc}"
        outcome = "skip" if passed is None else ("pass" if passed else "fail")
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


def format_table(results: Sequence[CaseResult]) -> str:
    w = max(len(r.name) for r in results)
    sw = max(len(r.section) for r in results)
    lines = [f"{'RESULT':<6}  {'CASE':<{w}}  {'SECTION':<{sw}}  EXPECTED -> OBSERVED"]
    for r in results:
        lines.append(f"{r.outcome.upper():<6}  {r.name:<{w}}  {r.section:<{sw}}  {r.expected} -> {r.observed}")
    counts = {k: sum(1 for r in results if r.outcome == k) for k in ("pass", "fail", "skip")}
    lines.append(f"{len(results)} cases: {counts['pass']} passed, {counts['fail']} failed, {counts['skip']} skipped")
    return "\n".join(lines)


def junit_xml(results: Sequence[CaseResult], *, registrar: str) -> bytes:
    suite = ET.Element(
        "testsuite", name="brski-conformance", tests=str(len(results)),
        failures=str(sum(r.outcome == "fail" for r in results)),
        skipped=str(sum(r.outcome == "skip" for r in results)),
        time=f"{sum(r.seconds for r in results):.3f}",
    )
    ET.SubElement(ET.SubElement(suite, "properties"), "property", name="registrar", value=registrar)
    for r in results:
        tc = ET.SubElement(suite, "testcase", classname=r.section, name=r.name, time=f"{r.seconds:.3f}")
        if r.outcome == "fail":
            ET.SubElement(tc, "failure", message=f"expected {r.expected}, observed {r.observed}")
        elif r.outcome == "skip":
            ET.SubElement(tc, "skipped", message=r.observed)
    ET.indent(suite)
    out: bytes = ET.tostring(suite, encoding="utf-8", xml_declaration=True)
    return out + b"\n"


# --- command line -------------------------------------------------------------------


def add_parser(sub: Any) -> None:
    p = sub.add_parser("conformance", help="run the registrar conformance suite (pass/fail table)")
    p.add_argument("--registrar", metavar="URL", required=True, help="registrar base URL")
    p.add_argument("--idevid", metavar="DIR", required=True, help="pledge dir, or a pledges/ dir (2+ devices)")
    p.add_argument("--anchor", metavar="PEM", action="append", required=True, help="manufacturer trust anchor")
    p.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS", help="per-request timeout")
    p.add_argument("--server-hostname", metavar="NAME", help="TLS SNI (default: URL host)")
    p.add_argument("--junit", metavar="FILE", help="write JUnit XML")
    p.add_argument("--json", metavar="FILE", help="write the results as JSON")
    p.set_defaults(func=cmd_conformance)


def cmd_conformance(args: Any) -> int:
    try:
        cfg = load_config(
            None,
            {"registrar": args.registrar, "anchor": args.anchor, "timeout": args.timeout, "server_hostname": args.server_hostname},
            purpose="reenroll",
        )
        anchors = [c for a in cfg.anchors for c in load_certs(a.read_bytes())]
        pledges = load_idevid_dir(Path(args.idevid))
    except (ConfigError, OSError) as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    suite = Suite(
        cfg=cfg, anchors=anchors, device=pledges[0],
        second=pledges[1] if len(pledges) > 1 else None, stranger=make_stranger(),
    )
    print(f"conformance against {cfg.registrar_url} with device {suite.device.serial}", file=sys.stderr)
    results = asyncio.run(run_suite(suite))
    print(format_table(results))
    if args.junit:
        Path(args.junit).write_bytes(junit_xml(results, registrar=cfg.registrar_url))
    if args.json:
        doc = {"registrar": cfg.registrar_url, "results": [r.__dict__ for r in results]}
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
    return 1 if any(r.outcome == "fail" for r in results) else 0
