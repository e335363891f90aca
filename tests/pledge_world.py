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
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from brski import oids
from brski.artifact import sign_artifact
from brski.pledge import (
    Failed,
    Pledge,
    State,
    VoucherAccepted,
)
from brski.voucher import Assertion, Voucher

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


def make_world() -> World:
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


def _expect_refusal(pledge: Pledge, decision: Any, check: str) -> None:
    assert isinstance(decision, Failed), decision
    assert decision.check == check, decision
    assert pledge.state is State.FAILED
    assert pledge.failure == decision
    report = telemetry(pledge.voucher_status())
    assert report["status"] is False
    assert report["reason-context"]["check"] == check
    assert pledge.state is State.FAILED
