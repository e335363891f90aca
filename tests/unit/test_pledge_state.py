"""The pledge state machine (brski.pledge) on artifacts built in-test.

A throwaway manufacturer CA issues the IDevID and the MASA voucher signer; a
throwaway domain CA issues the registrar's TLS certificate and the LDevID.  A
fake MASA signs vouchers with brski.artifact.sign_artifact.  Every refusal
must end in FAILED with its own check name and negative telemetry.
"""

from __future__ import annotations

import importlib.util
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from brski import oids
from brski.artifact import sign_artifact, verify_artifact
from brski.errors import ConfigError, LocalError
from brski.est import build_certs_only, encode_base64_body
from brski.pledge import (
    MAX_RETRY_AFTER,
    TRANSITIONS,
    Enrolled,
    Event,
    Failed,
    Pledge,
    Retry,
    State,
    VoucherAccepted,
    retry_after_seconds,
)
from brski.voucher import Assertion, Voucher, VoucherRequest

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
SERIAL = "PLEDGE-0001"


def _available(media_type: str) -> bool:
    module = {
        oids.MT_VOUCHER_CMS_JSON: "brski.cms",
        oids.MT_VOUCHER_COSE_CBOR: "brski.cose_voucher",
        oids.MT_VOUCHER_JWS_JSON: "brski.jws_voucher",
    }[media_type]
    return importlib.util.find_spec(module) is not None


# The refusal tests run in the RFC 8366 format when brski.cms exists.
MT = next(m for m in oids.VOUCHER_MEDIA_TYPES if _available(m))


# --- a throwaway PKI ---------------------------------------------------------------


def _name(cn: str, serial: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if serial is not None:
        attrs.append(x509.NameAttribute(NameOID.SERIAL_NUMBER, serial))
    return x509.Name(attrs)


@dataclass
class Cred:
    key: Any
    cert: x509.Certificate


def issue(
    subject: x509.Name,
    *,
    issuer: Cred | None = None,
    ca: bool = False,
    eku: list[x509.ObjectIdentifier] | None = None,
    key: Any = None,
    not_after: datetime = NOW + timedelta(days=365),
) -> Cred:
    key = key or ec.generate_private_key(ec.SECP256R1())
    signer_key = issuer.key if issuer else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer_key.public_key()),
            critical=False,
        )
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    if eku:
        builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    return Cred(key, builder.sign(signer_key, hashes.SHA256()))


@dataclass
class World:
    mfr: Cred
    idevid: Cred
    masa: Cred
    domain: Cred
    registrar: Cred
    evil: Cred


@pytest.fixture(scope="module")
def w() -> World:
    mfr = issue(_name("Test Manufacturer Root"), ca=True)
    domain = issue(_name("Test Domain CA"), ca=True)
    return World(
        mfr=mfr,
        idevid=issue(_name(SERIAL, SERIAL), issuer=mfr),
        masa=issue(_name("Test MASA voucher signer"), issuer=mfr),
        domain=domain,
        registrar=issue(
            _name("registrar.test"), issuer=domain, eku=[ExtendedKeyUsageOID.SERVER_AUTH, oids.ID_KP_CMC_RA]
        ),
        evil=issue(_name("Someone Else CA"), ca=True),
    )


def new_pledge(w: World, **kw: Any) -> Pledge:
    kw.setdefault("media_type", MT)
    return Pledge(idevid=w.idevid.cert, key=w.idevid.key, chain=[], anchors=[w.mfr.cert], **kw)


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def aki(cert: x509.Certificate) -> bytes:
    value = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert value.key_identifier is not None
    return value.key_identifier


def masa_voucher(
    w: World,
    nonce: bytes | None,
    *,
    signer: Cred | None = None,
    media_type: str = MT,
    drop_pin: bool = False,
    **fields: Any,
) -> bytes:
    """What a MASA would answer: a voucher pinning the domain CA, signed by the MASA."""
    base: dict[str, Any] = {
        "created_on": NOW - timedelta(minutes=1),
        "assertion": Assertion.LOGGED,
        "serial_number": SERIAL,
        "nonce": nonce,
        "idevid_issuer": aki(w.idevid.cert),
        "pinned_domain_cert": der(w.domain.cert),
    }
    base.update(fields)
    voucher = Voucher(**base)
    if drop_pin:
        # A voucher the model refuses to build: sneak the pin out after validation,
        # as a broken or hostile MASA would.
        object.__setattr__(voucher, "pinned_domain_cert", None)
    signer = signer or w.masa
    return sign_artifact(voucher, media_type=media_type, key=signer.key, cert=signer.cert)


def to_voucher_requested(w: World, **kw: Any) -> tuple[Pledge, bytes, bytes]:
    pledge = new_pledge(w, **kw)
    pledge.connected(der(w.registrar.cert))
    nonce = secrets.token_bytes(32)
    raw = pledge.build_voucher_request(now=NOW, nonce=nonce)
    return pledge, nonce, raw


def ok_headers(media_type: str = MT) -> dict[str, str]:
    return {"content-type": media_type}


def telemetry(body: bytes) -> dict[str, Any]:
    obj = json.loads(body)
    assert obj["version"] == 1
    return obj  # type: ignore[no-any-return]


def to_status_reported(w: World) -> Pledge:
    pledge, nonce, _ = to_voucher_requested(w)
    decision = pledge.voucher_response(
        status=200, headers=ok_headers(), body=masa_voucher(w, nonce), now=NOW
    )
    assert isinstance(decision, VoucherAccepted)
    pledge.voucher_status()
    return pledge


def ca_issue(w: World, csr_der: bytes, *, ca: Cred | None = None) -> x509.Certificate:
    ca = ca or w.domain
    csr = x509.load_der_x509_csr(csr_der)
    assert csr.is_signature_valid
    return (
        x509.CertificateBuilder()
        .subject_name(csr.subject)
        .issuer_name(ca.cert.subject)
        .public_key(csr.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(minutes=5))
        .not_valid_after(NOW + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca.key, hashes.SHA256())
    )


CERTS_ONLY = {"Content-Type": "application/pkcs7-mime; smime-type=certs-only"}


# --- happy path ----------------------------------------------------------------------


@pytest.mark.parametrize("media_type", [m for m in oids.VOUCHER_MEDIA_TYPES if _available(m)])
def test_happy_path(w: World, media_type: str) -> None:
    pledge = new_pledge(w, media_type=media_type)
    assert pledge.state is State.START
    pledge.connected(der(w.registrar.cert))
    nonce = secrets.token_bytes(32)
    raw = pledge.build_voucher_request(now=NOW, nonce=nonce)
    assert pledge.state is State.VOUCHER_REQUESTED

    # What the registrar sees (RFC 8995 5.2).
    vr = verify_artifact(raw, media_type=media_type, kind=VoucherRequest)
    assert isinstance(vr.payload, VoucherRequest)
    assert vr.payload.assertion == Assertion.PROXIMITY
    assert vr.payload.serial_number == SERIAL
    assert vr.payload.nonce == nonce
    assert vr.payload.created_on == NOW
    assert vr.payload.proximity_registrar_cert == der(w.registrar.cert)
    assert vr.signer == w.idevid.cert

    body = masa_voucher(w, nonce, media_type=media_type)
    decision = pledge.voucher_response(
        status=200, headers={"Content-Type": media_type}, body=body, now=NOW
    )
    assert isinstance(decision, VoucherAccepted), decision
    assert pledge.state is State.VOUCHER_ACCEPTED
    assert pledge.pinned_domain_cert == w.domain.cert
    status = telemetry(pledge.voucher_status())
    assert status["status"] is True
    assert pledge.state is State.STATUS_REPORTED

    certs = pledge.cacerts_response(
        status=200, headers=CERTS_ONLY, body=encode_base64_body(build_certs_only([w.domain.cert]))
    )
    assert certs == (w.domain.cert,)

    new_key = ec.generate_private_key(ec.SECP256R1())
    csr_der = pledge.build_csr(key=new_key)
    csr = x509.load_der_x509_csr(csr_der)
    assert csr.is_signature_valid
    assert csr.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)[0].value == SERIAL
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == SERIAL
    assert pledge.state is State.ENROLLING

    ldevid = ca_issue(w, csr_der)
    decision = pledge.enroll_response(
        status=200,
        headers=CERTS_ONLY,
        body=encode_base64_body(build_certs_only([ldevid])),
        now=NOW,
    )
    assert isinstance(decision, Enrolled), decision
    assert decision.cert == ldevid
    assert decision.path[-1] == w.domain.cert
    assert pledge.state is State.ENROLLED
    assert telemetry(pledge.enroll_status())["status"] is True
    assert pledge.state is State.DONE
    assert pledge.failure is None


def test_pinned_registrar_end_entity_is_accepted(w: World) -> None:
    """RFC 8995 5.6.2: the pin may be the registrar's own certificate."""
    pledge, nonce, _ = to_voucher_requested(w)
    body = masa_voucher(w, nonce, pinned_domain_cert=der(w.registrar.cert))
    decision = pledge.voucher_response(status=200, headers=ok_headers(), body=body, now=NOW)
    assert isinstance(decision, VoucherAccepted), decision


# --- refusals --------------------------------------------------------------------------


def _expect_refusal(pledge: Pledge, decision: Any, check: str) -> None:
    assert isinstance(decision, Failed), decision
    assert decision.check == check, decision
    assert pledge.state is State.FAILED
    assert pledge.failure == decision
    report = telemetry(pledge.voucher_status())
    assert report["status"] is False
    assert report["reason-context"]["check"] == check
    assert pledge.state is State.FAILED


REFUSALS: dict[str, tuple[str, dict[str, Any]]] = {
    "wrong serial": ("pledge.voucher-serial-number", {"serial_number": "SOMEONE-ELSE"}),
    "wrong nonce": ("pledge.voucher-nonce", {"nonce": b"\x01" * 32}),
    "nonceless": ("pledge.voucher-nonce", {"nonce": None, "expires_on": NOW + timedelta(days=1)}),
    "idevid-issuer mismatch": ("pledge.voucher-idevid-issuer", {"idevid_issuer": b"\x02" * 20}),
    "created in the future": (
        "pledge.voucher-created-on",
        {"created_on": NOW + timedelta(hours=1)},
    ),
    "disallowed assertion": ("pledge.voucher-assertion", {"assertion": Assertion.AGENT_PROXIMITY}),
    "no pinned-domain-cert": ("pledge.voucher-pinned-domain-cert", {"drop_pin": True}),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_voucher_refusals(w: World, case: str) -> None:
    check, fields = REFUSALS[case]
    pledge, nonce, _ = to_voucher_requested(w)
    fields = dict(fields)
    voucher_nonce = fields.pop("nonce", nonce)
    body = masa_voucher(w, voucher_nonce, **fields)
    decision = pledge.voucher_response(status=200, headers=ok_headers(), body=body, now=NOW)
    _expect_refusal(pledge, decision, check)


def test_expired_voucher_is_refused(w: World) -> None:
    """A nonceless voucher (accepted by policy) past its expires-on (RFC 8995 2.6.1)."""
    pledge, _, _ = to_voucher_requested(w, accept_nonceless=True)
    body = masa_voucher(
        w, None, created_on=NOW - timedelta(hours=2), expires_on=NOW - timedelta(hours=1)
    )
    decision = pledge.voucher_response(status=200, headers=ok_headers(), body=body, now=NOW)
    _expect_refusal(pledge, decision, "pledge.voucher-expired")


def test_replayed_voucher_is_refused(w: World) -> None:
    """A voucher for an earlier attempt (its nonce) must not satisfy a new one."""
    first, nonce1, _ = to_voucher_requested(w)
    old = masa_voucher(w, nonce1)
    assert isinstance(
        first.voucher_response(status=200, headers=ok_headers(), body=old, now=NOW),
        VoucherAccepted,
    )
    second, nonce2, _ = to_voucher_requested(w)
    assert nonce2 != nonce1
    decision = second.voucher_response(status=200, headers=ok_headers(), body=old, now=NOW)
    _expect_refusal(second, decision, "pledge.voucher-nonce")


def test_restricted_assertions(w: World) -> None:
    pledge, nonce, _ = to_voucher_requested(w, allowed_assertions=frozenset({"verified"}))
    body = masa_voucher(w, nonce, assertion=Assertion.LOGGED)
    decision = pledge.voucher_response(status=200, headers=ok_headers(), body=body, now=NOW)
    _expect_refusal(pledge, decision, "pledge.voucher-assertion")


def test_nonceless_voucher_accepted_by_policy(w: World) -> None:
    pledge, _, _ = to_voucher_requested(w, accept_nonceless=True)
    body = masa_voucher(w, None, expires_on=NOW + timedelta(minutes=20))
    decision = pledge.voucher_response(status=200, headers=ok_headers(), body=body, now=NOW)
    assert isinstance(decision, VoucherAccepted), decision


def test_registrar_not_chaining_to_pin(w: World) -> None:
    pledge, nonce, _ = to_voucher_requested(w)
    body = masa_voucher(w, nonce, pinned_domain_cert=der(w.evil.cert))
    decision = pledge.voucher_response(status=200, headers=ok_headers(), body=body, now=NOW)
    _expect_refusal(pledge, decision, "pledge.registrar-cert-unpinned")


@pytest.mark.parametrize("eku", [None, [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]])
def test_domain_certificate_without_cmc_ra_is_not_a_registrar(w: World, eku: list[x509.ObjectIdentifier] | None) -> None:
    """RFC 7030 3.6.1 / RFC 8995 5.6.2: chaining to the pin is not enough for a
    discovered registrar; e.g. another device's LDevID also chains to it."""
    device = issue(_name("some device", "PLG-999"), issuer=w.domain, eku=eku)
    pledge = new_pledge(w)
    pledge.connected(der(device.cert))
    nonce = secrets.token_bytes(32)
    pledge.build_voucher_request(now=NOW, nonce=nonce)
    body = masa_voucher(w, nonce)
    decision = pledge.voucher_response(status=200, headers=ok_headers(), body=body, now=NOW)
    _expect_refusal(pledge, decision, "pledge.registrar-not-ra")


def test_registrar_pinned_itself_needs_no_cmc_ra(w: World) -> None:
    """5.6.2: the pinned-domain-cert may be the registrar's own certificate."""
    own = issue(_name("registrar.self-pinned"), issuer=w.domain, eku=[ExtendedKeyUsageOID.SERVER_AUTH])
    pledge = new_pledge(w)
    pledge.connected(der(own.cert))
    nonce = secrets.token_bytes(32)
    pledge.build_voucher_request(now=NOW, nonce=nonce)
    body = masa_voucher(w, nonce, pinned_domain_cert=der(own.cert))
    decision = pledge.voucher_response(status=200, headers=ok_headers(), body=body, now=NOW)
    assert isinstance(decision, VoucherAccepted), decision


def test_voucher_signer_not_chaining_to_manufacturer(w: World) -> None:
    rogue = issue(_name("Rogue MASA"), issuer=w.evil)
    pledge, nonce, _ = to_voucher_requested(w)
    body = masa_voucher(w, nonce, signer=rogue)
    decision = pledge.voucher_response(status=200, headers=ok_headers(), body=body, now=NOW)
    _expect_refusal(pledge, decision, "pledge.voucher-signer-untrusted")


def test_tampered_voucher(w: World) -> None:
    pledge, nonce, _ = to_voucher_requested(w)
    body = bytearray(masa_voucher(w, nonce))
    body[len(body) // 2] ^= 0x01
    decision = pledge.voucher_response(status=200, headers=ok_headers(), body=bytes(body), now=NOW)
    assert isinstance(decision, Failed)
    assert decision.check.startswith("pledge.voucher-")
    assert pledge.state is State.FAILED


def test_wrong_media_type(w: World) -> None:
    pledge, nonce, _ = to_voucher_requested(w)
    decision = pledge.voucher_response(
        status=200, headers={"Content-Type": "text/plain"}, body=masa_voucher(w, nonce), now=NOW
    )
    _expect_refusal(pledge, decision, "pledge.voucher-media-type")


def test_http_error_keeps_problem_detail(w: World) -> None:
    pledge, _, _ = to_voucher_requested(w)
    problem = {"title": "Forbidden", "detail": "unknown device", "check": "policy.unknown"}
    decision = pledge.voucher_response(
        status=403,
        headers={"Content-Type": oids.MT_PROBLEM_JSON},
        body=json.dumps(problem).encode(),
        now=NOW,
    )
    assert isinstance(decision, Failed)
    assert decision.check == "pledge.voucher-http-status"
    assert decision.http_status == 403
    assert "unknown device" in decision.detail and "policy.unknown" in decision.detail
    assert pledge.state is State.FAILED


# --- 202 / Retry-After ---------------------------------------------------------------


def test_retry_after_is_clamped_and_request_resent_unchanged(w: World) -> None:
    pledge, nonce, raw = to_voucher_requested(w)
    decision = pledge.voucher_response(
        status=202, headers={"Retry-After": "3600"}, body=b"", now=NOW
    )
    assert decision == Retry(after=MAX_RETRY_AFTER, detail="")
    assert pledge.state is State.PENDING
    # RFC 8995 5.6: the same voucher-request, same nonce, no new signature.
    assert pledge.retry_voucher_request() == raw
    assert pledge.state is State.VOUCHER_REQUESTED
    decision = pledge.voucher_response(
        status=200, headers=ok_headers(), body=masa_voucher(w, nonce), now=NOW
    )
    assert isinstance(decision, VoucherAccepted)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("3600", 60),
        ("0", 1),
        ("7", 7),
        (None, 5),
        ("soon", 5),
        ("Sun, 01 Jun 2025 12:00:30 GMT", 30),
        ("Sun, 01 Jun 2025 13:00:00 GMT", 60),
    ],
)
def test_retry_after_parsing(value: str | None, expected: int) -> None:
    headers = {} if value is None else {"retry-after": value}
    assert retry_after_seconds(headers, NOW) == expected


def test_pending_for_more_than_four_days_fails(w: World) -> None:
    pledge, _, _ = to_voucher_requested(w)
    pledge.voucher_response(status=202, headers={}, body=b"", now=NOW)
    pledge.retry_voucher_request()
    decision = pledge.voucher_response(
        status=202, headers={}, body=b"", now=NOW + timedelta(days=4, seconds=1)
    )
    assert isinstance(decision, Failed)
    assert decision.check == "pledge.voucher-pending-too-long"


# --- enrollment refusals ---------------------------------------------------------------


def _enroll_refusal(pledge: Pledge, decision: Any, check: str) -> None:
    assert isinstance(decision, Failed), decision
    assert decision.check == check
    assert pledge.state is State.FAILED
    report = telemetry(pledge.enroll_status())
    assert report["status"] is False and report["reason-context"]["check"] == check
    with pytest.raises(LocalError) as info:
        pledge.voucher_status()  # the voucher phase succeeded: nothing to report there
    assert info.value.check == "pledge.illegal-transition"


def test_ldevid_for_another_key(w: World) -> None:
    pledge = to_status_reported(w)
    pledge.build_csr(key=ec.generate_private_key(ec.SECP256R1()))
    other = x509.CertificateSigningRequestBuilder().subject_name(_name("x"))
    pledge_csr = other.sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())
    foreign = ca_issue(w, pledge_csr.public_bytes(serialization.Encoding.DER))
    decision = pledge.enroll_response(
        status=200,
        headers=CERTS_ONLY,
        body=encode_base64_body(build_certs_only([foreign])),
        now=NOW,
    )
    _enroll_refusal(pledge, decision, "pledge.enroll-key-mismatch")


def test_ldevid_not_chaining_to_pinned_domain(w: World) -> None:
    pledge = to_status_reported(w)
    csr = pledge.build_csr(key=ec.generate_private_key(ec.SECP256R1()))
    rogue = ca_issue(w, csr, ca=w.evil)
    decision = pledge.enroll_response(
        status=200, headers=CERTS_ONLY, body=encode_base64_body(build_certs_only([rogue])), now=NOW
    )
    _enroll_refusal(pledge, decision, "pledge.enroll-chain")


def test_enroll_202_then_same_csr(w: World) -> None:
    pledge = to_status_reported(w)
    csr = pledge.build_csr(key=ec.generate_private_key(ec.SECP256R1()))
    decision = pledge.enroll_response(status=202, headers={"Retry-After": "99"}, body=b"", now=NOW)
    assert decision == Retry(after=60, detail="")
    assert pledge.retry_csr() == csr
    decision = pledge.enroll_response(
        status=200,
        headers=CERTS_ONLY,
        body=encode_base64_body(build_certs_only([ca_issue(w, csr)])),
        now=NOW,
    )
    assert isinstance(decision, Enrolled)


def test_enroll_http_error(w: World) -> None:
    pledge = to_status_reported(w)
    pledge.build_csr(key=ec.generate_private_key(ec.SECP256R1()))
    decision = pledge.enroll_response(
        status=400, headers={"Content-Type": "text/plain"}, body=b"bad csr", now=NOW
    )
    _enroll_refusal(pledge, decision, "pledge.enroll-http-status")


# --- the table ------------------------------------------------------------------------


def test_illegal_transitions_raise(w: World) -> None:
    pledge = new_pledge(w)
    with pytest.raises(LocalError) as info:
        pledge.build_voucher_request(now=NOW, nonce=secrets.token_bytes(32))
    assert info.value.check == "pledge.illegal-transition"
    assert pledge.state is State.START  # an illegal event changes nothing
    pledge.connected(der(w.registrar.cert))
    with pytest.raises(LocalError, match="not allowed"):
        pledge.voucher_response(status=200, headers={}, body=b"", now=NOW)
    with pytest.raises(LocalError):
        pledge.build_csr(key=ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(LocalError):
        pledge.retry_voucher_request()


def test_telemetry_only_once_and_not_after_abort_in_other_phase(w: World) -> None:
    pledge, _, _ = to_voucher_requested(w)
    pledge.abort(check="http.timeout", detail="registrar went away")
    assert pledge.state is State.FAILED
    assert telemetry(pledge.voucher_status())["status"] is False
    with pytest.raises(LocalError):
        pledge.voucher_status()
    with pytest.raises(LocalError):
        pledge.enroll_status()
    with pytest.raises(LocalError):
        pledge.abort(check="x", detail="already failed")


def test_nonce_length_enforced(w: World) -> None:
    pledge = new_pledge(w)
    pledge.connected(der(w.registrar.cert))
    with pytest.raises(LocalError) as info:
        pledge.build_voucher_request(now=NOW, nonce=b"short")
    assert info.value.check == "pledge.nonce-length"


def test_idevid_without_serial_is_a_config_error(w: World) -> None:
    anon = issue(_name("no serial"), issuer=w.mfr)
    with pytest.raises(ConfigError):
        Pledge(idevid=anon.cert, key=anon.key, chain=[], anchors=[w.mfr.cert])
    with pytest.raises(ConfigError):  # key of another certificate
        Pledge(idevid=w.idevid.cert, key=anon.key, chain=[], anchors=[w.mfr.cert])


def test_table_shape() -> None:
    terminal = {State.DONE, State.FAILED}
    for state in State:
        has_abort = (state, Event.ABORT) in TRANSITIONS
        assert has_abort == (state not in terminal)
    assert not [k for k in TRANSITIONS if k[0] is State.DONE]
    # Every state can be reached from START.
    reached, frontier = {State.START}, [State.START]
    while frontier:
        current = frontier.pop()
        for (src, _), dst in TRANSITIONS.items():
            if src is current and dst not in reached:
                reached.add(dst)
                frontier.append(dst)
    assert reached == set(State)


@pytest.mark.parametrize("right_key", [True, False])
def test_pinned_domain_pubk(w: World, right_key: bool) -> None:
    """rfc8366bis: a raw-public-key pin of the registrar instead of a certificate."""
    pinned = w.registrar.cert if right_key else w.evil.cert
    spki = pinned.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    pledge, nonce, _ = to_voucher_requested(w)
    body = masa_voucher(w, nonce, pinned_domain_cert=None, pinned_domain_pubk=spki)
    decision = pledge.voucher_response(status=200, headers=ok_headers(), body=body, now=NOW)
    if right_key:
        assert isinstance(decision, VoucherAccepted), decision
        assert pledge.pinned_domain_cert is None
    else:
        _expect_refusal(pledge, decision, "pledge.registrar-cert-unpinned")
