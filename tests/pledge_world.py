"""The pledge state machine's test world (helpers, not tests): a throwaway
manufacturer CA issues the IDevID and the MASA voucher signer, a throwaway
domain CA the registrar's TLS certificate and the LDevID, and a fake MASA signs
vouchers with brski.artifact.sign_artifact."""

from __future__ import annotations

import importlib.util
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from brski import oids
from brski.artifact import sign_artifact
from brski.ca import issue_ldevid, new_serial
from brski.pki import cert_der
from brski.pledge import (
    Failed,
    Pledge,
    State,
    VoucherAccepted,
)
from brski.voucher import Assertion, Voucher
from tests.pki_helpers import key_usage_for, make_cert

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


@dataclass
class Cred:
    key: Any
    cert: x509.Certificate


def issue(
    cn: str,
    serial: str | None = None,
    *,
    issuer: Cred | None = None,
    ca: bool = False,
    eku: list[x509.ObjectIdentifier] | None = None,
    key: Any = None,
    not_after: datetime = NOW + timedelta(days=365),
) -> Cred:
    """``cn`` (with X520SerialNumber ``serial``) under ``issuer``, or self-signed."""
    cert, key = make_cert(
        cn,
        serial=serial,
        issuer=(issuer.cert, issuer.key) if issuer else None,
        key=key,
        ca=ca,
        eku=eku,
        not_before=NOW - timedelta(days=1),
        not_after=not_after,
        key_usage=key_usage_for(ca=True, digital_signature=True) if ca else None,
    )
    return Cred(key, cert)


@dataclass
class World:
    mfr: Cred
    idevid: Cred
    masa: Cred
    domain: Cred
    registrar: Cred
    evil: Cred


def make_world() -> World:
    mfr = issue("Test Manufacturer Root", ca=True)
    domain = issue("Test Domain CA", ca=True)
    return World(
        mfr=mfr,
        idevid=issue(SERIAL, SERIAL, issuer=mfr),
        masa=issue("Test MASA voucher signer", issuer=mfr),
        domain=domain,
        registrar=issue(
            "registrar.test", issuer=domain, eku=[ExtendedKeyUsageOID.SERVER_AUTH, oids.ID_KP_CMC_RA]
        ),
        evil=issue("Someone Else CA", ca=True),
    )


def new_pledge(w: World, **kw: Any) -> Pledge:
    kw.setdefault("media_type", MT)
    return Pledge(idevid=w.idevid.cert, key=w.idevid.key, chain=[], anchors=[w.mfr.cert], **kw)


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
        "pinned_domain_cert": cert_der(w.domain.cert),
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
    pledge.connected(cert_der(w.registrar.cert))
    nonce = secrets.token_bytes(32)
    raw = pledge.build_voucher_request(now=NOW, nonce=nonce)
    return pledge, nonce, raw


def state_of(pledge: Pledge) -> State:
    """The pledge's state now. A type checker keeps ``pledge.state`` narrowed
    by an earlier ``assert pledge.state is X`` across the method call that moves
    it; a call reads it afresh."""
    return pledge.state


def ok_headers(media_type: str = MT) -> dict[str, str]:
    return {"content-type": media_type}


def telemetry(body: bytes) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads(body)
    assert obj["version"] == 1
    return obj


def to_status_reported(w: World) -> Pledge:
    pledge, nonce, _ = to_voucher_requested(w)
    decision = pledge.voucher_response(
        status=200, headers=ok_headers(), body=masa_voucher(w, nonce), now=NOW
    )
    assert isinstance(decision, VoucherAccepted)
    pledge.voucher_status()
    return pledge


def ca_issue(w: World, csr_der: bytes, *, ca: Cred | None = None) -> x509.Certificate:
    """The LDevID ``ca`` (by default the domain CA) issues for the CSR, as the registrar would."""
    ca = ca or w.domain
    csr = x509.load_der_x509_csr(csr_der)
    assert csr.is_signature_valid
    return issue_ldevid(
        csr,
        ca_cert=ca.cert,
        ca_key=ca.key,
        serial=new_serial(),
        now=NOW,
        validity=timedelta(days=30),
        device_serial=SERIAL,
    )


CERTS_ONLY = {"Content-Type": "application/pkcs7-mime; smime-type=certs-only"}


def _expect_refusal(pledge: Pledge, decision: Any, check: str) -> None:
    assert isinstance(decision, Failed), decision
    assert decision.check == check, decision
    assert pledge.state is State.FAILED
    assert pledge.failure == decision
    report = telemetry(pledge.voucher_status())
    assert report["status"] is False
    assert report["reason-context"]["check"] == check
    assert pledge.state is State.FAILED
