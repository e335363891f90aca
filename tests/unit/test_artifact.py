"""brski.artifact: CMS sign/verify round trips, RFC 8995 Appendix C, dispatch, detection."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from brski import artifact, oids
from brski.artifact import (
    SignedArtifact,
    detect_media_type,
    register_format,
    sign_artifact,
    verify_artifact,
)
from brski.errors import BrskiError, SignatureInvalid, UnsupportedMediaType, VoucherInvalid
from brski.voucher import Assertion, Voucher, VoucherRequest
from tests import VECTORS

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def _cert(name: str, key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )


@pytest.fixture(scope="module")
def signer() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    return key, _cert("throwaway MASA", key)


def _voucher() -> Voucher:
    return Voucher(
        created_on=NOW,
        assertion=Assertion.LOGGED,
        serial_number="SN-0001",
        pinned_domain_cert=b"\x30\x03\x02\x01\x01",
        nonce=b"0123456789abcdef",
    )


def _request() -> VoucherRequest:
    return VoucherRequest(
        created_on=NOW,
        assertion=Assertion.PROXIMITY,
        serial_number="SN-0001",
        nonce=b"0123456789abcdef",
        proximity_registrar_cert=b"\x30\x03\x02\x01\x02",
    )


# --- CMS round trips ---------------------------------------------------------------------


@pytest.mark.parametrize("make", [_voucher, _request])
def test_cms_round_trip(make: Any, signer: tuple[Any, x509.Certificate]) -> None:
    key, cert = signer
    payload = make()
    raw = sign_artifact(payload, media_type=oids.MT_VOUCHER_CMS_JSON, key=key, cert=cert)
    assert detect_media_type(raw) == oids.MT_VOUCHER_CMS_JSON
    result = verify_artifact(raw, media_type=oids.MT_VOUCHER_CMS_JSON, kind=type(payload))
    assert result.payload == payload
    assert result.signer == cert
    assert result.raw == raw
    assert result.media_type == oids.MT_VOUCHER_CMS_JSON
    assert cert in result.certificates


def test_cms_media_type_is_case_and_parameter_insensitive(
    signer: tuple[Any, x509.Certificate],
) -> None:
    key, cert = signer
    raw = sign_artifact(
        _voucher(), media_type="Application/Voucher-CMS+JSON; q=1", key=key, cert=cert
    )
    assert verify_artifact(raw, media_type=oids.MT_VOUCHER_CMS_JSON, kind=Voucher).payload


def test_cms_request_is_not_accepted_as_a_voucher(signer: tuple[Any, x509.Certificate]) -> None:
    key, cert = signer
    raw = sign_artifact(_request(), media_type=oids.MT_VOUCHER_CMS_JSON, key=key, cert=cert)
    with pytest.raises(VoucherInvalid) as info:
        verify_artifact(raw, media_type=oids.MT_VOUCHER_CMS_JSON, kind=Voucher)
    assert info.value.check == "voucher.container"


def test_cms_tampered_content_fails_the_signature(signer: tuple[Any, x509.Certificate]) -> None:
    key, cert = signer
    raw = bytearray(
        sign_artifact(_voucher(), media_type=oids.MT_VOUCHER_CMS_JSON, key=key, cert=cert)
    )
    at = bytes(raw).index(b"SN-0001")
    raw[at] = ord("X")
    with pytest.raises(SignatureInvalid):
        verify_artifact(bytes(raw), media_type=oids.MT_VOUCHER_CMS_JSON, kind=Voucher)


# --- RFC 8995 Appendix C ------------------------------------------------------------------


def test_appendix_c_voucher_verifies_and_answers_the_request() -> None:
    # Both artifacts carry eContentType id-data (see tests/vectors/README.md).
    voucher = verify_artifact(
        (VECTORS / "rfc8995/voucher_00-D0-E5-F2-00-02.der").read_bytes(),
        media_type=oids.MT_VOUCHER_CMS_JSON,
        kind=Voucher,
    )
    request = verify_artifact(
        (VECTORS / "rfc8995/vr_00-D0-E5-F2-00-02.der").read_bytes(),
        media_type=oids.MT_VOUCHER_CMS_JSON,
        kind=VoucherRequest,
    )
    assert isinstance(voucher.payload, Voucher)
    assert isinstance(request.payload, VoucherRequest)
    assert voucher.payload.nonce == request.payload.nonce
    assert voucher.payload.nonce is not None and len(voucher.payload.nonce) == 16
    assert voucher.payload.serial_number == "00-D0-E5-F2-00-02"
    # The voucher pins the registrar certificate the pledge saw in TLS.
    assert voucher.payload.pinned_domain_cert == request.payload.proximity_registrar_cert
    # The MASA signer (C.1.2) is named by the voucher's SignerIdentifier.
    assert "masa" in voucher.signer.subject.rfc4514_string().lower()
    # The payload model equals the separately published eContent.
    assert voucher.payload == Voucher.from_json(
        (VECTORS / "rfc8995/voucher.content.json").read_bytes()
    )


def test_appendix_c_registrar_request_embeds_the_pledge_request() -> None:
    pledge_raw = (VECTORS / "rfc8995/vr_00-D0-E5-F2-00-02.der").read_bytes()
    registrar = verify_artifact(
        (VECTORS / "rfc8995/parboiled_vr_00-D0-E5-F2-00-02.der").read_bytes(),
        media_type=oids.MT_VOUCHER_CMS_JSON,
        kind=VoucherRequest,
    )
    assert isinstance(registrar.payload, VoucherRequest)
    assert registrar.payload.prior_signed_voucher_request == pledge_raw


# --- dispatch -----------------------------------------------------------------------------


def test_unknown_media_type_is_refused_by_name(signer: tuple[Any, x509.Certificate]) -> None:
    key, cert = signer
    with pytest.raises(UnsupportedMediaType) as info:
        sign_artifact(_voucher(), media_type="application/voucher+xml", key=key, cert=cert)
    assert info.value.check == "artifact.media-type"
    with pytest.raises(UnsupportedMediaType) as info:
        verify_artifact(b"\x30\x00", media_type="application/json", kind=Voucher)
    assert info.value.check == "artifact.media-type"


def test_registered_format_is_dispatched_and_kind_enforced() -> None:
    media_type = "application/x-test-voucher"
    seen: dict[str, Any] = {}

    def fake_sign(
        payload: Voucher | VoucherRequest,
        *,
        key: Any,
        cert: x509.Certificate,
        chain: Sequence[x509.Certificate] = (),
    ) -> bytes:
        seen["chain"] = chain
        return payload.to_json()

    def fake_verify(
        raw: bytes, *, kind: Any, extra_certs: Sequence[x509.Certificate] = ()
    ) -> SignedArtifact:
        # deliberately ignores kind, as a buggy format module might
        return SignedArtifact(
            media_type=media_type,
            raw=raw,
            payload=VoucherRequest.from_json(raw),
            signer=extra_certs[0],
            certificates=(),
        )

    register_format(media_type, fake_sign, fake_verify)
    try:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _cert("fake", key)
        raw = sign_artifact(_request(), media_type=media_type, key=key, cert=cert, chain=[cert])
        assert seen["chain"] == (cert,)
        got = verify_artifact(raw, media_type=media_type, kind=VoucherRequest, extra_certs=[cert])
        assert got.payload == _request()
        with pytest.raises(VoucherInvalid) as info:
            verify_artifact(raw, media_type=media_type, kind=Voucher, extra_certs=[cert])
        assert info.value.check == "artifact.kind"
    finally:
        artifact._REGISTRY.pop(media_type, None)


def test_supported_media_types_lists_cms_first() -> None:
    assert artifact.supported_media_types()[0] == oids.MT_VOUCHER_CMS_JSON


@pytest.mark.parametrize("media_type", [oids.MT_VOUCHER_COSE_CBOR, oids.MT_VOUCHER_JWS_JSON])
def test_other_formats_round_trip_when_present(
    media_type: str, signer: tuple[Any, x509.Certificate]
) -> None:
    if media_type not in artifact.supported_media_types():
        pytest.skip(f"{media_type} module not installed")
    key, cert = signer
    raw = sign_artifact(_voucher(), media_type=media_type, key=key, cert=cert)
    assert detect_media_type(raw) == media_type
    result = verify_artifact(raw, media_type=media_type, kind=Voucher, extra_certs=[cert])
    assert result.payload == _voucher()
    assert result.media_type == media_type


def test_garbage_under_every_media_type_raises_only_brski_errors() -> None:
    for media_type in artifact.supported_media_types():
        for raw in (b"", b"\x30", b"\xd2\x84", b"{}", b'{"payload":"","signatures":[]}'):
            with pytest.raises(BrskiError):
                verify_artifact(raw, media_type=media_type, kind=Voucher)


# --- detection ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"\x30\x82\x01\x00", oids.MT_VOUCHER_CMS_JSON),
        (b"\xd2\x84\x43", oids.MT_VOUCHER_COSE_CBOR),
        (b"\x84\x43\xa1", oids.MT_VOUCHER_COSE_CBOR),
        (
            b'{"payload":"e30","signatures":[{"protected":"e30","signature":""}]}',
            oids.MT_VOUCHER_JWS_JSON,
        ),
        (b' \n{"payload":"e30","protected":"e30","signature":""}', oids.MT_VOUCHER_JWS_JSON),
    ],
)
def test_detect_media_type(raw: bytes, expected: str) -> None:
    assert detect_media_type(raw) == expected


@pytest.mark.parametrize(
    "raw", [b"", b"   ", b"MIIG", b'{"ietf-voucher:voucher":{}}', b"{not json", b"\xa1\x01\x02"]
)
def test_detect_media_type_refuses_the_unrecognisable(raw: bytes) -> None:
    with pytest.raises(UnsupportedMediaType) as info:
        detect_media_type(raw)
    assert info.value.check == "artifact.detect"


def test_detect_recognises_the_appendix_c_voucher() -> None:
    raw = (VECTORS / "rfc8995/voucher_00-D0-E5-F2-00-02.der").read_bytes()
    assert detect_media_type(raw) == oids.MT_VOUCHER_CMS_JSON


# --- every format x every key type (build, sign, parse, verify) ----


def _any_cert(key: Any) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "round-trip signer")])
    from cryptography.hazmat.primitives.asymmetric import ed25519

    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=30))
        .sign(key, algorithm)
    )


@pytest.fixture(scope="module")
def signers() -> dict[str, tuple[Any, x509.Certificate]]:
    from brski.pki import generate_key

    out = {}
    for kind in ("p256", "p384", "ed25519", "rsa2048"):
        key = generate_key(kind)
        out[kind] = (key, _any_cert(key))
    return out


@pytest.mark.parametrize("media_type", list(oids.VOUCHER_MEDIA_TYPES))
@pytest.mark.parametrize("key_kind", ["p256", "p384", "ed25519", "rsa2048"])
@pytest.mark.parametrize("make", [_voucher, _request], ids=["voucher", "request"])
def test_every_format_and_key_type_round_trips_and_detects_tampering(
    signers: dict[str, tuple[Any, x509.Certificate]], media_type: str, key_kind: str, make: Any
) -> None:
    key, cert = signers[key_kind]
    payload = make()
    raw = sign_artifact(payload, media_type=media_type, key=key, cert=cert)
    assert detect_media_type(raw) == media_type
    result = verify_artifact(raw, media_type=media_type, kind=type(payload))
    assert result.payload == payload and result.media_type == media_type
    assert result.signer == cert
    # One changed byte of the signed serial number must not verify.
    at = raw.index(b"SN-0001") if b"SN-0001" in raw else None
    if at is not None:
        tampered = raw[:at] + b"X" + raw[at + 1 :]
        with pytest.raises(BrskiError):
            verify_artifact(tampered, media_type=media_type, kind=type(payload))


# --- send conservatively: whole seconds ----------------------------------------------------


@pytest.mark.parametrize("media_type", sorted(oids.VOUCHER_MEDIA_TYPES))
def test_signed_date_times_are_whole_seconds(media_type: str, signer: tuple[Any, x509.Certificate]) -> None:
    """Fractional seconds are valid yang:date-and-time but break deployed parsers:
    what we sign carries whole seconds (cut, never later); fractions still parse."""
    key, cert = signer
    fraction = NOW.replace(microsecond=589000)
    voucher = Voucher(
        created_on=fraction,
        expires_on=fraction + timedelta(days=1, microseconds=1),
        last_renewal_date=fraction,
        assertion=Assertion.LOGGED,
        serial_number="SN-0001",
        pinned_domain_cert=b"\x30\x03\x02\x01\x01",
    )
    assert b".589" in voucher.to_json()  # the model itself stays faithful
    raw = sign_artifact(voucher, media_type=media_type, key=key, cert=cert)
    payload = verify_artifact(raw, media_type=media_type, kind=Voucher, extra_certs=[cert]).payload
    assert isinstance(payload, Voucher)
    assert payload.created_on == NOW
    assert payload.expires_on == NOW + timedelta(days=1)
    assert payload.last_renewal_date == NOW
    if media_type == oids.MT_VOUCHER_CMS_JSON:  # the JSON is in the clear in CMS
        assert b".589" not in raw and b'"created-on":"2024-05-01T12:00:00Z"' in raw
    request = VoucherRequest(created_on=fraction, serial_number="SN-0001")
    raw = sign_artifact(request, media_type=media_type, key=key, cert=cert)
    assert verify_artifact(raw, media_type=media_type, kind=VoucherRequest, extra_certs=[cert]).payload.created_on == NOW


def test_fractional_seconds_are_still_accepted() -> None:
    text = b'{"ietf-voucher:voucher":{"created-on":"2021-04-13T17:43:24.589-04:00","assertion":"logged","serial-number":"A","pinned-domain-cert":"MAA="}}'
    assert Voucher.from_json(text).created_on.microsecond == 589000
