"""Published vectors, proven end to end in one place.

Nobody on this team wrote these files (provenance: tests/vectors/README.md and
/work/shared/vectors/README.md). Each test states a property the standard or
the vector README claims, and checks it with the code the servers run:
signature and model through ``brski.artifact`` / ``brski.cms``, trust through
``brski.pki.verify_chain`` with the BRSKI role of the signer.

Time matters: the RFC 8995 Appendix C certificates expired in 2022-2023 and
the cbrski-draft31 registrar certificate on 2025-12-08, so each chain is
validated at a date when its certificates were valid, and refused as
``chain.expired`` at TODAY. The README's caveats are asserted as quirks, never
worked around by loosening a check.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from asn1crypto import cms as asn1_cms
from cryptography import x509

from brski import cms, oids
from brski.artifact import SignedArtifact, detect_media_type, verify_artifact
from brski.cose_voucher import verify_cose_sign1
from brski.errors import BrskiError, ChainInvalid, MalformedInput, SignatureInvalid, VoucherInvalid
from brski.pki import Role, cert_der, load_cert, verify_chain
from brski.voucher import Voucher, VoucherRequest
from tests import VECTORS

RFC8995 = VECTORS / "rfc8995"
BIS = VECTORS / "rfc8366bis"
CB = VECTORS / "cbrski-draft31"
MINERVA = VECTORS / "interop-minerva"

# The date this suite calls "today": every RFC 8995 certificate has expired by then.
TODAY = datetime(2026, 11, 28, tzinfo=UTC)
# Appendix C certificates: vendor/masa 2021-04-13..2023-04-13, ownerca/jrc 2020-02-25..2022-02-24.
RFC8995_VALID_AT = datetime(2021, 5, 1, tzinfo=UTC)
# rfc8366bis examples were made on 2022-07-10 (their created-on); vendor/masa still valid.
BIS_VALID_AT = datetime(2022, 7, 10, tzinfo=UTC)
# cbrski-draft31: registrar.crt 2022-12-09..2025-12-08 (caveat), the rest to 2032.
CB_VALID_AT = datetime(2024, 6, 1, tzinfo=UTC)

SERIAL = "00-D0-E5-F2-00-02"
CMS = oids.MT_VOUCHER_CMS_JSON
COSE = oids.MT_VOUCHER_COSE_CBOR


def _bytes(path: Path) -> bytes:
    return path.read_bytes()


def _cert(path: Path) -> x509.Certificate:
    return load_cert(path.read_bytes())


def _cms(path: Path, kind: type[Voucher] | type[VoucherRequest]) -> SignedArtifact:
    return verify_artifact(_bytes(path), media_type=CMS, kind=kind)


def _without_carried_certs(der: bytes) -> bytes:
    """The same SignedData with SignedData.certificates removed.

    The certificate set is not signed (RFC 5652 section 5.1), so the signature
    stays valid; the verifier must then find the signer among the
    certificates the caller supplies, which is how "verifies against
    masa.crt" is proven rather than "verifies against whatever it carries".
    """
    info = asn1_cms.ContentInfo.load(der)
    signed = info["content"]
    signed["certificates"] = None
    out: bytes = info.dump(force=True)
    assert out != der
    return out


def _chain(
    art: SignedArtifact, anchor: x509.Certificate, *, now: datetime, role: Role
) -> list[x509.Certificate]:
    return verify_chain(art.signer, intermediates=art.certificates, anchors=[anchor], now=now, role=role)


def _expired(art: SignedArtifact, anchor: x509.Certificate, *, role: Role) -> None:
    with pytest.raises(ChainInvalid) as info:
        _chain(art, anchor, now=TODAY, role=role)
    assert info.value.check == "chain.expired", info.value.detail


# --- RFC 8995 Appendix C.2 ----------------------------------------------------------------


def test_c23_voucher_verifies_against_masa_crt_and_chains_to_vendor() -> None:
    masa, vendor = _cert(RFC8995 / "masa.crt"), _cert(RFC8995 / "vendor.crt")
    art = _cms(RFC8995 / "voucher_00-D0-E5-F2-00-02.der", Voucher)
    assert cert_der(art.signer) == cert_der(masa)
    # Without the carried copy, the supplied masa.crt alone verifies it.
    stripped = _without_carried_certs(art.raw)
    with pytest.raises(MalformedInput) as info:
        verify_artifact(stripped, media_type=CMS, kind=Voucher)
    assert info.value.check == "cms.signer-not-found"
    again = verify_artifact(stripped, media_type=CMS, kind=Voucher, extra_certs=[masa])
    assert again.payload == art.payload and again.certificates == ()
    # RFC 8995 5.6.1 (the pledge's view): MASA signer chains to the manufacturer.
    chain = _chain(art, vendor, now=RFC8995_VALID_AT, role=Role.MASA_SIGNER)
    assert [cert_der(c) for c in chain] == [cert_der(masa), cert_der(vendor)]
    _expired(art, vendor, role=Role.MASA_SIGNER)


def test_c23_voucher_is_not_trusted_under_another_anchor() -> None:
    art = _cms(RFC8995 / "voucher_00-D0-E5-F2-00-02.der", Voucher)
    with pytest.raises(ChainInvalid) as info:
        _chain(art, _cert(RFC8995 / "ownerca_secp384r1.crt"), now=RFC8995_VALID_AT, role=Role.MASA_SIGNER)
    assert info.value.check == "chain.untrusted"


def test_c23_voucher_payload_and_caveat_2_offset() -> None:
    art = _cms(RFC8995 / "voucher_00-D0-E5-F2-00-02.der", Voucher)
    v = art.payload
    assert isinstance(v, Voucher)
    assert v == Voucher.from_json(_bytes(RFC8995 / "voucher.content.json"))
    assert v.serial_number == SERIAL
    # Caveat 2: created-on carries a -04:00 offset, which RFC 3339 allows.
    assert v.created_on.utcoffset() == timedelta(hours=-4)
    # The voucher pins the registrar's own certificate, not its CA.
    assert v.pinned_domain_cert == cert_der(_cert(RFC8995 / "jrc_prime256v1.crt"))


def test_c22_registrar_request_verifies_and_chains_to_the_owner_ca() -> None:
    jrc, owner = _cert(RFC8995 / "jrc_prime256v1.crt"), _cert(RFC8995 / "ownerca_secp384r1.crt")
    art = _cms(RFC8995 / "parboiled_vr_00-D0-E5-F2-00-02.der", VoucherRequest)
    assert cert_der(art.signer) == cert_der(jrc)
    # RFC 8995 5.5.4: a registrar voucher-request signer has id-kp-cmcRA; the
    # jrc certificate's EKU is cmcRA alone, which is why openssl needs -purpose any.
    chain = _chain(art, owner, now=RFC8995_VALID_AT, role=Role.REGISTRAR_RA)
    assert [cert_der(c) for c in chain] == [cert_der(jrc), cert_der(owner)]
    _expired(art, owner, role=Role.REGISTRAR_RA)


def test_c22_prior_signed_voucher_request_is_the_pledge_request_byte_for_byte() -> None:
    pledge_raw = _bytes(RFC8995 / "vr_00-D0-E5-F2-00-02.der")
    art = _cms(RFC8995 / "parboiled_vr_00-D0-E5-F2-00-02.der", VoucherRequest)
    assert isinstance(art.payload, VoucherRequest)
    assert art.payload.prior_signed_voucher_request == pledge_raw
    # RFC 8995 5.5: the registrar request carries no proximity-registrar-cert.
    assert art.payload.proximity_registrar_cert is None


def test_c21_pledge_request_verifies_and_chains_to_vendor() -> None:
    vendor = _cert(RFC8995 / "vendor.crt")
    art = _cms(RFC8995 / "vr_00-D0-E5-F2-00-02.der", VoucherRequest)
    req = art.payload
    assert isinstance(req, VoucherRequest)
    assert req == VoucherRequest.from_json(_bytes(RFC8995 / "vr.content.json"))
    assert req.serial_number == SERIAL
    assert req.proximity_registrar_cert == cert_der(_cert(RFC8995 / "jrc_prime256v1.crt"))
    assert cert_der(art.signer) == cert_der(_cert(RFC8995 / "vr.embedded-certs.pem"))
    chain = _chain(art, vendor, now=RFC8995_VALID_AT, role=Role.IDEVID)
    assert cert_der(chain[-1]) == cert_der(vendor)
    # The IDevID itself never expires (802.1AR 99991231...), the vendor CA did.
    _expired(art, vendor, role=Role.IDEVID)


def test_caveat_1_the_printed_idevid_is_not_the_signer() -> None:
    """C.1.5 prints serial 0x2AEC41D4; the request was signed under 0x0D83AFD9, same key."""
    printed = _cert(RFC8995 / "idevid_00-D0-E5-F2-00-02.crt")
    raw = _bytes(RFC8995 / "vr_00-D0-E5-F2-00-02.der")
    stripped = _without_carried_certs(raw)
    # Signer matching is by issuerAndSerialNumber, not by key: the printed cert is refused.
    with pytest.raises(MalformedInput) as info:
        verify_artifact(stripped, media_type=CMS, kind=VoucherRequest, extra_certs=[printed])
    assert info.value.check == "cms.signer-not-found"
    art = _cms(RFC8995 / "vr_00-D0-E5-F2-00-02.der", VoucherRequest)
    assert art.signer.serial_number == 0x0D83AFD9 and printed.serial_number == 0x2AEC41D4
    assert art.signer.public_key() == printed.public_key()
    # And the printed cert chains to the RSA CA of the same name, not to vendor.crt.
    with pytest.raises(ChainInvalid):
        verify_chain(printed, anchors=[_cert(RFC8995 / "vendor.crt")], now=RFC8995_VALID_AT, role=Role.IDEVID)
    verify_chain(
        printed, anchors=[_cert(BIS / "vendor-00-D0-E5-F2-00-02.crt")], now=RFC8995_VALID_AT, role=Role.IDEVID
    )


def test_appendix_c_nonce_is_the_same_in_all_three() -> None:
    nonces = {
        _cms(RFC8995 / name, kind).payload.nonce
        for name, kind in [
            ("vr_00-D0-E5-F2-00-02.der", VoucherRequest),
            ("parboiled_vr_00-D0-E5-F2-00-02.der", VoucherRequest),
            ("voucher_00-D0-E5-F2-00-02.der", Voucher),
        ]
    }
    # Written base64url in the RFC ("-_XE9zK9q8Ll1qylMtLKeg"), decoded to 16 bytes.
    assert len(nonces) == 1
    (nonce,) = nonces
    assert nonce is not None and len(nonce) == 16


# --- draft-ietf-anima-rfc8366bis examples ---------------------------------------------------


def test_bis_voucher_verifies_against_masa_and_chains_to_rfc8995_vendor() -> None:
    masa, vendor = _cert(BIS / "masa-00-D0-E5-F2-00-02.crt"), _cert(RFC8995 / "vendor.crt")
    assert cert_der(masa) == cert_der(_cert(RFC8995 / "masa.crt"))  # README: the same cert
    art = _cms(BIS / "voucher_00-D0-E5-F2-00-02.pkcs", Voucher)
    assert cert_der(art.signer) == cert_der(masa)
    again = verify_artifact(_without_carried_certs(art.raw), media_type=CMS, kind=Voucher, extra_certs=[masa])
    assert again.payload == art.payload
    assert art.payload == Voucher.from_json(_bytes(BIS / "voucher.content.json"))
    _chain(art, vendor, now=BIS_VALID_AT, role=Role.MASA_SIGNER)
    _expired(art, vendor, role=Role.MASA_SIGNER)


def test_bis_voucher_request_verifies_and_chains_to_rfc8995_vendor() -> None:
    idevid, vendor = _cert(BIS / "00-D0-E5-F2-00-02.crt"), _cert(RFC8995 / "vendor.crt")
    art = _cms(BIS / "vr_00-D0-E5-F2-00-02.pkcs", VoucherRequest)
    assert cert_der(art.signer) == cert_der(idevid)
    assert art.payload == VoucherRequest.from_json(_bytes(BIS / "vr.content.json"))
    _chain(art, vendor, now=BIS_VALID_AT, role=Role.IDEVID)
    _expired(art, vendor, role=Role.IDEVID)


def test_bis_voucher_answers_the_bis_request() -> None:
    voucher = _cms(BIS / "voucher_00-D0-E5-F2-00-02.pkcs", Voucher).payload
    request = _cms(BIS / "vr_00-D0-E5-F2-00-02.pkcs", VoucherRequest).payload
    assert isinstance(request, VoucherRequest)
    assert voucher.serial_number == request.serial_number == SERIAL
    assert voucher.nonce == request.nonce and voucher.nonce is not None
    assert voucher.pinned_domain_cert == request.proximity_registrar_cert


# --- draft-ietf-anima-constrained-voucher-31 (COSE) ---------------------------------------


@pytest.mark.parametrize(
    ("name", "kind", "signer", "anchor", "role"),
    [
        ("pvr", VoucherRequest, "pledge.crt.der", "masa_ca.crt.der", Role.IDEVID),
        ("rvr", VoucherRequest, "registrar.crt.der", "domain_ca.crt.der", Role.REGISTRAR_RA),
        # README: the voucher verifies with masa_ca.crt (not masa.crt).
        ("voucher", Voucher, "masa_ca.crt.der", "masa_ca.crt.der", Role.MASA_SIGNER),
    ],
)
def test_cbrski_verifies_with_the_named_certificate_and_chains(
    name: str,
    kind: type[Voucher] | type[VoucherRequest],
    signer: str,
    anchor: str,
    role: Role,
) -> None:
    raw = _bytes(CB / f"{name}.cbor")
    assert detect_media_type(raw) == COSE
    cert = _cert(CB / signer)
    art = verify_artifact(raw, media_type=COSE, kind=kind, extra_certs=[cert])
    assert cert_der(art.signer) == cert_der(cert)
    assert isinstance(art.payload, kind)
    # The draft-31 name of the media type is accepted as input too.
    assert verify_artifact(raw, media_type="application/voucher+cose", kind=kind, extra_certs=[cert]).payload == art.payload
    verify_chain(cert, anchors=[_cert(CB / anchor)], now=CB_VALID_AT, role=role)


def test_cbrski_registrar_cert_expired_2025_12_08() -> None:
    registrar = _cert(CB / "registrar.crt.der")
    with pytest.raises(ChainInvalid) as info:
        verify_chain(registrar, anchors=[_cert(CB / "domain_ca.crt.der")], now=TODAY, role=Role.REGISTRAR_RA)
    assert info.value.check == "chain.expired"


def test_cbrski_pvr_refuses_the_wrong_certificate() -> None:
    with pytest.raises(SignatureInvalid) as info:
        verify_artifact(
            _bytes(CB / "pvr.cbor"), media_type=COSE, kind=VoucherRequest, extra_certs=[_cert(CB / "masa_ca.crt.der")]
        )
    assert info.value.check == "cose.signature"


def test_cbrski_rvr_carries_the_pvr_and_the_voucher_nonce_differs() -> None:
    pvr = verify_artifact(
        _bytes(CB / "pvr.cbor"), media_type=COSE, kind=VoucherRequest, extra_certs=[_cert(CB / "pledge.crt.der")]
    ).payload
    rvr = verify_artifact(
        _bytes(CB / "rvr.cbor"), media_type=COSE, kind=VoucherRequest, extra_certs=[_cert(CB / "registrar.crt.der")]
    ).payload
    voucher = verify_artifact(
        _bytes(CB / "voucher.cbor"), media_type=COSE, kind=Voucher, extra_certs=[_cert(CB / "masa_ca.crt.der")]
    ).payload
    assert isinstance(rvr, VoucherRequest)
    assert rvr.prior_signed_voucher_request == _bytes(CB / "pvr.cbor")
    assert rvr.nonce == pvr.nonce and rvr.serial_number == pvr.serial_number == voucher.serial_number
    # Caveat: the voucher was not made in the same run, so its nonce differs.
    assert voucher.nonce is not None and voucher.nonce != pvr.nonce


# --- interop-minerva and Siemens ----------------------------------------------------------

_MINERVA_CMS = {
    "siemens-bt-voucher-request1.pkcs": VoucherRequest,
    "voucher-request-siemens-bt.der": VoucherRequest,
    "voucher_00123456789A.der": Voucher,
    "voucher_081196FFFE0181E0.der": Voucher,
    "voucher_JADA_f2-00-01.der": Voucher,
    "voucher_request-00-D0-E5-F2-00-02.der": VoucherRequest,
}


@pytest.mark.parametrize("name", sorted(_MINERVA_CMS))
def test_minerva_and_siemens_verify_with_their_embedded_signer(name: str) -> None:
    raw = _bytes(MINERVA / name)
    assert detect_media_type(raw) == CMS
    kind = _MINERVA_CMS[name]
    art = verify_artifact(raw, media_type=CMS, kind=kind)
    assert isinstance(art.payload, kind)
    assert any(cert_der(c) == cert_der(art.signer) for c in art.certificates)
    # The other model is refused by name: a request never passes for a voucher.
    other = VoucherRequest if kind is Voucher else Voucher
    with pytest.raises(VoucherInvalid) as info:
        verify_artifact(raw, media_type=CMS, kind=other)
    assert info.value.check.endswith(".container")


def test_minerva_vr_with_a_bare_date_verifies_but_the_model_refuses_it() -> None:
    """vr_081196FFFE0181E0 writes created-on "2017-09-01": not a yang:date-and-time.

    The signature is good (embedded signer), the payload is not: the strict
    model refuses it with a named check instead of guessing a time of day.
    """
    raw = _bytes(MINERVA / "vr_081196FFFE0181E0.der")
    message = cms.verify(raw)
    assert any(cert_der(c) == cert_der(message.signer) for c in message.certificates)
    with pytest.raises(VoucherInvalid) as info:
        verify_artifact(raw, media_type=CMS, kind=VoucherRequest)
    assert info.value.check == "voucher-request.date-and-time"


def test_minerva_vrq_older_cose_verifies_with_the_c15_key_only_at_the_cose_layer() -> None:
    raw = _bytes(MINERVA / "vr_00-D0-E5-F2-00-02.vrq")
    assert detect_media_type(raw) == COSE
    _, signer, _ = verify_cose_sign1(raw, candidates=[_cert(RFC8995 / "idevid_00-D0-E5-F2-00-02.crt")])
    assert signer.serial_number == 0x2AEC41D4
    # Older SID numbering: the model layer refuses it rather than mis-reading leaves.
    with pytest.raises(BrskiError):
        verify_artifact(
            raw, media_type=COSE, kind=VoucherRequest, extra_certs=[_cert(RFC8995 / "idevid_00-D0-E5-F2-00-02.crt")]
        )
