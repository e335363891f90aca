"""The checks a registrar and a MASA apply to voucher-requests, as pure functions.

Both servers call these with bytes, certificates and ``now``; nothing here
does I/O. Each rule raises a :mod:`brski.errors` exception naming the rule
(``check=``), so the refusal a pledge or registrar sees, the log line and the
stored event all say which RFC rule failed.

Registrar side (RFC 8995 sections 5.2, 5.3, 5.5): the pledge voucher-request
must be signed by the key of the IDevID that authenticated the TLS
connection, the IDevID must chain to a configured manufacturer anchor, the
serial-number must be the one the IDevID certifies, the assertion must be
proximity, and proximity-registrar-cert must be this registrar's own.

MASA side (RFC 8995 sections 5.5.2-5.5.6): the registrar voucher-request
must be signed by a certificate with id-kp-cmcRA, internally consistent with
the domain CA it carries, must not carry proximity-registrar-cert, and its
prior-signed-voucher-request must be the pledge's, signed by an IDevID this
manufacturer made, with the same serial-number and nonce.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509

from brski.artifact import SignedArtifact, verify_artifact
from brski.errors import (
    ChainInvalid,
    Forbidden,
    MalformedInput,
    ProximityRefused,
    Unauthenticated,
    VoucherInvalid,
)
from brski.issuer_path import verify_chain_via_issuer
from brski.oids import MT_VOUCHER_CMS_JSON
from brski.pki import (
    Role,
    cert_der,
    device_serial,
    issuer_name_der,
    load_der_cert,
    spki_sha256,
    subject_name_der,
    verify_chain,
)
from brski.voucher import Assertion, VoucherRequest

__all__ = [
    "NONCE_MAX_BYTES",
    "NONCE_MIN_BYTES",
    "MasaRequestCheck",
    "PledgeRequestCheck",
    "aki_key_id",
    "base64_voucher_request",
    "check_nonce",
    "check_pledge_request",
    "check_registrar_request",
    "domain_id",
    "ski",
]

# A nonce must be unpredictable (RFC 8366 section 5.3: "a value that is
# non-repeating"); 8 bytes is the least that stays unguessable, and a bound on
# the top keeps a hostile pledge from making the registrar and MASA store
# large values. RFC 8995 Appendix C uses 16 bytes.
NONCE_MIN_BYTES = 8
NONCE_MAX_BYTES = 64

# How far in the future a created-on may be before we call it a clock error.
_CREATED_ON_SKEW = timedelta(minutes=10)


# Base64 text (RFC 4648 sections 4 and 5, padded or not), possibly wrapped.
_BASE64_TEXT = re.compile(rb"[A-Za-z0-9+/_\-]+={0,2}")


def base64_voucher_request(raw: bytes, *, media_type: str) -> bytes | None:
    """The DER inside a CMS voucher-request sent as base64 text, else None.

    RFC 8366 section 8.3: "CMS-signed JSON vouchers are ASN.1/DER encoded";
    some pledges (NIST SP 1800-36 Build 5's) send the base64 of that DER.
    DER cannot be mistaken for it: a SEQUENCE's length octets of a
    voucher-request's size are not base64 characters.
    """
    if media_type != MT_VOUCHER_CMS_JSON:
        return None
    text = b"".join(raw.split())
    if len(text) < 16 or not _BASE64_TEXT.fullmatch(text):
        return None
    text = text.rstrip(b"=")
    padded = text + b"=" * (-len(text) % 4)
    try:
        der = base64.b64decode(padded.replace(b"-", b"+").replace(b"_", b"/"), validate=True)
    except (binascii.Error, ValueError):
        return None
    return der if der[:1] == b"\x30" else None


def ski(cert: x509.Certificate) -> bytes:
    """The SubjectKeyIdentifier, or the RFC 7469 SPKI fingerprint without one."""
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        return spki_sha256(cert)


def domain_id(pinned: x509.Certificate) -> bytes:
    """RFC 8995 section 5.8.2: the pinned-domain-cert's SKI, else its SPKI hash."""
    return ski(pinned)


def aki_key_id(cert: x509.Certificate) -> bytes | None:
    """The AKI keyIdentifier: what idevid-issuer carries (RFC 8366 section 5.3)."""
    try:
        value = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    except x509.ExtensionNotFound:
        return None
    return value.key_identifier


def check_nonce(nonce: bytes | None, *, required: bool, who: str) -> None:
    if nonce is None:
        if required:
            raise VoucherInvalid(f"{who} voucher-request has no nonce", check=f"{who}-request.nonce-missing")
        return
    if not NONCE_MIN_BYTES <= len(nonce) <= NONCE_MAX_BYTES:
        raise VoucherInvalid(
            f"{who} voucher-request nonce is {len(nonce)} bytes; allowed "
            f"{NONCE_MIN_BYTES}..{NONCE_MAX_BYTES}",
            check=f"{who}-request.nonce-length",
        )


def _check_created_on(req: VoucherRequest, *, now: datetime, who: str) -> None:
    if req.created_on is not None and req.created_on > now + _CREATED_ON_SKEW:
        raise VoucherInvalid(
            f"{who} voucher-request created-on {req.created_on.isoformat()} is in the future",
            check=f"{who}-request.created-on",
        )


def _distinct(certs: Sequence[x509.Certificate]) -> list[x509.Certificate]:
    """``certs`` in order, each DER encoding once."""
    seen: set[bytes] = set()
    out: list[x509.Certificate] = []
    for cert in certs:
        der = cert_der(cert)
        if der not in seen:
            seen.add(der)
            out.append(cert)
    return out


@dataclass(frozen=True, kw_only=True)
class PledgeRequestCheck:
    """What the registrar learned from a pledge voucher-request that passed."""

    artifact: SignedArtifact
    request: VoucherRequest
    idevid: x509.Certificate
    idevid_chain: tuple[x509.Certificate, ...]
    serial: str


def check_pledge_request(
    raw: bytes,
    *,
    media_type: str,
    tls_client_cert: x509.Certificate | None,
    tls_client_chain: Sequence[x509.Certificate] = (),
    manufacturer_anchors: Sequence[x509.Certificate],
    extra_intermediates: Sequence[x509.Certificate] = (),
    own_certs: Sequence[x509.Certificate],
    now: datetime,
) -> PledgeRequestCheck:
    """The registrar's checks on a pledge voucher-request (RFC 8995 5.2, 5.3)."""
    if tls_client_cert is None:
        # RFC 8995 section 5.3: the pledge authenticates with its IDevID.
        raise Unauthenticated("no TLS client certificate (IDevID) presented", check="tls.client-cert")
    serial = device_serial(tls_client_cert)
    if not serial:
        # RFC 8995 section 2.3.1: the IDevID subject carries serialNumber.
        raise Forbidden("IDevID has no subject serialNumber attribute", check="idevid.serial-number")
    artifact = verify_artifact(
        raw,
        media_type=media_type,
        kind=VoucherRequest,
        extra_certs=[tls_client_cert, *tls_client_chain],
    )
    # RFC 8995 section 5.2/5.3: signed by the key that authenticated TLS.
    # The signer is normally the IDevID itself: the same bytes, the same key,
    # without encoding and hashing each copy's key.
    if cert_der(artifact.signer) != cert_der(tls_client_cert) and (
        spki_sha256(artifact.signer) != spki_sha256(tls_client_cert)
    ):
        raise Forbidden(
            "voucher-request is not signed by the TLS client certificate's key",
            check="pledge-request.signer-not-tls-client",
        )
    # The CMS certificate set and the TLS chain usually carry the same CA
    # (and the IDevID itself): each certificate is offered once, by its DER,
    # so that the IDevID's issuer is one certificate and its path the one
    # already validated for the manufacturer (RFC 5280 section 6.1: a path
    # depends on the certificates, not on how many copies were offered).
    intermediates = _distinct([*artifact.certificates, *tls_client_chain, *extra_intermediates])
    # Every pledge brings a new IDevID; its CA's part of the path is the same
    # for a production run and is remembered (brski.issuer_path).
    chain = verify_chain_via_issuer(
        tls_client_cert,
        intermediates=intermediates,
        anchors=manufacturer_anchors,
        now=now,
        role=Role.IDEVID,
    )
    req = artifact.payload
    assert isinstance(req, VoucherRequest)
    # RFC 8995 section 5.5: the serial-number claimed must be the certified one.
    if req.serial_number != serial:
        raise Forbidden(
            f"serial-number {req.serial_number!r} differs from the IDevID's {serial!r}",
            check="pledge-request.serial-number",
        )
    # RFC 8995 section 5.2: the pledge asserts proximity; if not, "there is
    # an on-path attacker": 401, then the connection is closed.
    if req.assertion != Assertion.PROXIMITY:
        raise ProximityRefused(
            f"assertion must be proximity, got {req.assertion}",
            check="pledge-request.assertion",
        )
    check_nonce(req.nonce, required=True, who="pledge")
    _check_created_on(req, now=now, who="pledge")
    # RFC 8995 section 5.2: proximity-registrar-cert is the certificate this
    # registrar presented in TLS; anything else means the pledge talked to
    # someone else (or a relay is replaying another registrar's request).
    # A missing one fails the same confirmation: 401 and close, as above.
    if req.proximity_registrar_cert is None:
        raise ProximityRefused(
            "voucher-request has no proximity-registrar-cert",
            check="pledge-request.proximity-registrar-cert-missing",
        )
    own = {cert_der(c) for c in own_certs}
    if req.proximity_registrar_cert not in own:
        raise ProximityRefused(
            "proximity-registrar-cert is not this registrar's certificate",
            check="pledge-request.proximity-registrar-cert",
        )
    return PledgeRequestCheck(
        artifact=artifact,
        request=req,
        idevid=tls_client_cert,
        idevid_chain=tuple(chain[1:]),
        serial=serial,
    )


@dataclass(frozen=True, kw_only=True)
class MasaRequestCheck:
    """What the MASA learned from a registrar voucher-request that passed."""

    artifact: SignedArtifact
    request: VoucherRequest
    registrar_signer: x509.Certificate
    # The certificate to pin (RFC 8995 5.5.2): the farthest one in the chain
    # the registrar sent, i.e. its domain CA when it sent the whole chain.
    domain_cert: x509.Certificate
    pledge_request: VoucherRequest | None
    idevid: x509.Certificate | None
    serial: str
    nonce: bytes | None
    proximity: bool


def _farthest_in_chain(signer: x509.Certificate, carried: Sequence[x509.Certificate]) -> list[x509.Certificate]:
    """Walk issuer links from the signer through the carried certificates."""
    by_subject: dict[bytes, list[x509.Certificate]] = {}
    for c in carried:
        by_subject.setdefault(subject_name_der(c), []).append(c)
    path = [signer]
    seen = {cert_der(signer)}
    current = signer
    while issuer_name_der(current) != subject_name_der(current) and len(path) < 8:
        candidates = [c for c in by_subject.get(issuer_name_der(current), []) if cert_der(c) not in seen]
        if not candidates:
            break
        current = candidates[0]
        seen.add(cert_der(current))
        path.append(current)
    return path


def check_registrar_request(
    raw: bytes,
    *,
    media_type: str,
    manufacturer_anchors: Sequence[x509.Certificate],
    now: datetime,
) -> MasaRequestCheck:
    """The MASA's checks on a registrar voucher-request (RFC 8995 5.5.2-5.5.6)."""
    artifact = verify_artifact(raw, media_type=media_type, kind=VoucherRequest)
    req = artifact.payload
    assert isinstance(req, VoucherRequest)
    signer = artifact.signer
    # RFC 8995 5.5.2: the chain comes from the CMS; its far end is a temporary
    # trust anchor used to check the domain PKI's consistency.
    path = _farthest_in_chain(signer, artifact.certificates)
    domain_cert = path[-1]
    # RFC 8995 5.5.3/5.5.4: the signature chains to that domain CA, and the
    # signer carries id-kp-cmcRA.
    verify_chain(
        signer,
        intermediates=path[1:-1],
        anchors=[domain_cert],
        now=now,
        role=Role.REGISTRAR_RA,
    )
    # RFC 8995 section 5.5: MUST NOT be present in a registrar voucher-request.
    if req.proximity_registrar_cert is not None:
        raise VoucherInvalid(
            "registrar voucher-request carries proximity-registrar-cert",
            check="registrar-request.proximity-registrar-cert-present",
        )
    if not req.serial_number:
        raise VoucherInvalid("registrar voucher-request has no serial-number", check="registrar-request.serial-number")
    check_nonce(req.nonce, required=False, who="registrar")
    _check_created_on(req, now=now, who="registrar")

    pledge_req: VoucherRequest | None = None
    idevid: x509.Certificate | None = None
    proximity = False
    if req.prior_signed_voucher_request is not None:
        prior = verify_artifact(req.prior_signed_voucher_request, media_type=media_type, kind=VoucherRequest)
        assert isinstance(prior.payload, VoucherRequest)
        pledge_req = prior.payload
        idevid = prior.signer
        # RFC 8995 5.5.5: the IDevID that signed it chains to this
        # manufacturer; its CA's part of the path is remembered (issuer_path).
        verify_chain_via_issuer(
            idevid,
            intermediates=prior.certificates,
            anchors=manufacturer_anchors,
            now=now,
            role=Role.IDEVID,
        )
        # RFC 8995 5.5.5: serial-number must match the prior request signer's.
        idevid_serial = device_serial(idevid)
        if idevid_serial != req.serial_number:
            raise Forbidden(
                f"serial-number {req.serial_number!r} differs from the pledge IDevID's {idevid_serial!r}",
                check="registrar-request.serial-number-mismatch",
            )
        if pledge_req.serial_number is not None and pledge_req.serial_number != req.serial_number:
            raise Forbidden(
                "registrar and pledge voucher-requests name different serial-numbers",
                check="registrar-request.serial-number-mismatch",
            )
        # RFC 8995 5.5.6: nonces must agree when both are present.
        if req.nonce is not None and pledge_req.nonce != req.nonce:
            raise Forbidden(
                "registrar nonce differs from the pledge's nonce",
                check="registrar-request.nonce-mismatch",
            )
        if req.nonce is None and pledge_req.nonce is not None:
            raise Forbidden(
                "registrar dropped the pledge's nonce", check="registrar-request.nonce-mismatch"
            )
        # RFC 8995 5.5.5: the proximity-registrar-cert's SPKI must be within
        # the registrar voucher-request's CMS chain, and chain to the domain.
        if pledge_req.assertion == Assertion.PROXIMITY:
            prox = pledge_req.proximity_registrar_cert
            if prox is None:
                raise Forbidden(
                    "pledge asserted proximity without proximity-registrar-cert",
                    check="registrar-request.proximity",
                )
            try:
                prox_cert = load_der_cert(prox)
            except (ValueError, x509.InvalidVersion) as exc:  # InvalidVersion is no ValueError
                raise MalformedInput(
                    "proximity-registrar-cert is not a certificate", check="registrar-request.proximity"
                ) from exc
            carried = {spki_sha256(c) for c in (signer, *artifact.certificates)}
            if spki_sha256(prox_cert) not in carried:
                raise Forbidden(
                    "the pledge's proximity-registrar-cert is not in the registrar's signing chain",
                    check="registrar-request.proximity",
                )
            try:
                verify_chain(prox_cert, intermediates=path[1:-1], anchors=[domain_cert], now=now, role=Role.TLS_SERVER)
            except ChainInvalid as exc:
                raise Forbidden(
                    f"the pledge's proximity-registrar-cert does not chain to the registrar's domain: {exc.detail}",
                    check="registrar-request.proximity",
                ) from exc
            proximity = True
        idevid_issuer = aki_key_id(idevid)
        if req.idevid_issuer is not None and idevid_issuer is not None and req.idevid_issuer != idevid_issuer:
            raise Forbidden(
                "idevid-issuer does not match the pledge IDevID's issuer",
                check="registrar-request.idevid-issuer",
            )
    return MasaRequestCheck(
        artifact=artifact,
        request=req,
        registrar_signer=signer,
        domain_cert=domain_cert,
        pledge_request=pledge_req,
        idevid=idevid,
        serial=req.serial_number,
        nonce=req.nonce,
        proximity=proximity,
    )
