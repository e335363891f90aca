"""brski.cms: published CMS vouchers, sign/verify round trips, one named test per refusal."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import cms as asn1_cms
from asn1crypto import core as asn1_core
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from brski import cms, oids
from brski.asn1 import encode_length
from brski.errors import (
    ConfigError,
    MalformedInput,
    PayloadTooLarge,
    SignatureInvalid,
)
from tests import VECTORS
from tests.cms_helpers import VOUCHER_JSON, _cert, _key, _signed
from tests.cms_surgery import (
    _attrs,
    _choice,
    _edit,
    _raw_sign,
    _refused,
    _resign,
    _sha256,
    _signer_info,
)

RFC8995 = VECTORS / "rfc8995"
BIS = VECTORS / "rfc8366bis"
MINERVA = VECTORS / "interop-minerva"


def _read(path: Path) -> bytes:
    return path.read_bytes()


def _cert_file(path: Path) -> x509.Certificate:
    data = path.read_bytes()
    if b"-----BEGIN CERTIFICATE-----" in data:
        return x509.load_pem_x509_certificate(data)
    return x509.load_der_x509_certificate(data)


# --- published vectors ------------------------------------------------------------


def test_rfc8995_voucher_is_signed_by_the_masa() -> None:
    message = cms.verify(_read(RFC8995 / "voucher_00-D0-E5-F2-00-02.der"))
    assert message.signer == _cert_file(RFC8995 / "masa.crt")
    assert message.content == _read(RFC8995 / "voucher.content.json")
    assert json.loads(message.content)["ietf-voucher:voucher"]["serial-number"] == (
        "00-D0-E5-F2-00-02"
    )
    assert message.content_type == oids.ID_DATA  # the quirk every published example has
    assert message.signing_time == datetime(2021, 4, 13, 21, 43, 24, tzinfo=UTC)
    assert message.digest_algorithm == "sha256"
    assert message.certificates == (message.signer,)


def test_rfc8995_pledge_voucher_request_names_the_embedded_idevid() -> None:
    message = cms.verify(_read(RFC8995 / "vr_00-D0-E5-F2-00-02.der"))
    printed = _cert_file(RFC8995 / "idevid_00-D0-E5-F2-00-02.crt")
    # Caveat 1 of the vector README: the embedded IDevID (serial 0x0D83AFD9) is
    # not the printed one (0x2AEC41D4), but they share the key.
    assert message.signer.serial_number == 0x0D83AFD9
    assert message.signer != printed
    assert message.signer.public_key() == printed.public_key()
    assert message.content == _read(RFC8995 / "vr.content.json")
    # Offering the printed certificate too changes nothing: it does not match the sid.
    again = cms.verify(_read(RFC8995 / "vr_00-D0-E5-F2-00-02.der"), extra_certs=[printed])
    assert again.signer == message.signer


def test_rfc8995_registrar_voucher_request_is_signed_by_the_registrar() -> None:
    message = cms.verify(_read(RFC8995 / "parboiled_vr_00-D0-E5-F2-00-02.der"))
    assert message.signer == _cert_file(RFC8995 / "jrc_prime256v1.crt")
    assert message.content == _read(RFC8995 / "parboiled_vr.content.json")
    assert len(message.certificates) == 2
    inner = json.loads(message.content)["ietf-voucher-request:voucher"]
    assert inner["prior-signed-voucher-request"]  # the pledge's request, verified above


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("voucher_00-D0-E5-F2-00-02.pkcs", "voucher.content.json"),
        ("vr_00-D0-E5-F2-00-02.pkcs", "vr.content.json"),
    ],
)
def test_rfc8366bis_examples_verify(name: str, content: str) -> None:
    message = cms.verify(_read(BIS / name))
    assert message.content == _read(BIS / content)
    assert message.signer in message.certificates
    if name.startswith("voucher"):
        assert message.signer == _cert_file(BIS / "masa-00-D0-E5-F2-00-02.crt")


@pytest.mark.parametrize(
    "name",
    [
        "siemens-bt-voucher-request1.pkcs",
        "voucher-request-siemens-bt.der",
        "voucher_00123456789A.der",
        "voucher_081196FFFE0181E0.der",
        "voucher_JADA_f2-00-01.der",
        "voucher_request-00-D0-E5-F2-00-02.der",
        "vr_081196FFFE0181E0.der",
    ],
)
def test_interop_artifacts_verify_with_their_embedded_signer(name: str) -> None:
    message = cms.verify(_read(MINERVA / name))
    assert message.signer in message.certificates
    assert message.signing_time is not None
    assert isinstance(json.loads(message.content), dict)


def test_published_voucher_refused_when_only_the_rfc_content_type_is_allowed() -> None:
    _refused(
        _read(RFC8995 / "voucher_00-D0-E5-F2-00-02.der"),
        MalformedInput,
        "cms.content-type",
        content_types=(oids.ID_CT_ANIMA_JSON_VOUCHER,),
    )


# --- round trips ------------------------------------------------------------------

EXPECTED = {
    # key kind -> (digest, signature algorithm as asn1crypto names it)
    "p256": ("sha256", "sha256_ecdsa"),
    "p384": ("sha384", "sha384_ecdsa"),
    "ed25519": ("sha512", "ed25519"),
    "rsa": ("sha256", "sha256_rsa"),
}


@pytest.mark.parametrize("signer_id", ["issuer-serial", "ski"])
@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_round_trip(kind: str, signer_id: Any) -> None:
    key = _key(kind)
    ca_key = _key("p384", 1)
    ca = _cert(ca_key, cn="ca", serial=1)
    cert = _cert(key, issuer=(ca.subject, ca_key))
    when = datetime(2025, 3, 4, 5, 6, 7, 890000, tzinfo=UTC)
    der = cms.sign(
        VOUCHER_JSON, key=key, cert=cert, chain=[ca], signing_time=when, signer_id=signer_id
    )
    message = cms.verify(der)
    assert message.content == VOUCHER_JSON
    assert message.content_type == oids.ID_CT_ANIMA_JSON_VOUCHER
    assert message.signer == cert
    # CertificateSet is a SET OF: DER sorts it, so only membership is meaningful.
    assert sorted(c.serial_number for c in message.certificates) == [1, 0x1234]
    assert set(message.certificates) == {cert, ca}
    assert message.signing_time == when.replace(microsecond=0)
    assert message.digest_algorithm == EXPECTED[kind][0]

    signed_data = asn1_cms.ContentInfo.load(der)["content"]
    signer_info = signed_data["signer_infos"][0]
    assert signer_info["signature_algorithm"]["algorithm"].native == EXPECTED[kind][1]
    assert signer_info["sid"].name == (
        "subject_key_identifier" if signer_id == "ski" else "issuer_and_serial_number"
    )
    # RFC 5652 sections 5.1 and 5.3: SignedData v3 (eContentType is not id-data);
    # SignerInfo v1 with issuerAndSerialNumber, v3 with subjectKeyIdentifier.
    assert signed_data["version"].native == "v3"
    assert signer_info["version"].native == ("v3" if signer_id == "ski" else "v1")
    # RFC 5754 section 2: SHA-2 AlgorithmIdentifiers are generated without parameters.
    assert isinstance(signer_info["digest_algorithm"]["parameters"], asn1_core.Void)


def test_id_data_signed_data_is_version_1_and_has_no_signing_time() -> None:
    der, _, _ = _signed(content_type=oids.ID_DATA)
    assert asn1_cms.ContentInfo.load(der)["content"]["version"].native == "v1"
    message = cms.verify(der)
    assert message.content_type == oids.ID_DATA
    assert message.signing_time is None


def test_ski_signer_id_for_a_certificate_without_the_extension() -> None:
    key = _key("p256")
    cert = _cert(key, ski=False)
    der = cms.sign(VOUCHER_JSON, key=key, cert=cert, signer_id="ski")
    assert cms.verify(der).signer == cert


def test_signing_time_after_2049_is_generalized_time() -> None:
    der, _, _ = _signed(signing_time=datetime(2051, 1, 1, tzinfo=UTC))
    assert cms.verify(der).signing_time == datetime(2051, 1, 1, tzinfo=UTC)
    assert b"\x18\x0f20510101000000Z" in der


def test_signer_found_through_extra_certs() -> None:
    der, _, cert = _signed()
    bare = _edit(der, lambda ci: ci["content"].__setitem__("certificates", None))
    _refused(bare, MalformedInput, "cms.signer-not-found")
    message = cms.verify(bare, extra_certs=[cert])
    assert message.signer == cert
    assert message.certificates == ()


def test_signature_algorithm_given_as_key_oid_is_accepted() -> None:
    for kind, key_oid in (("p256", "1.2.840.10045.2.1"), ("rsa", "rsassa_pkcs1v15")):
        der, _, cert = _signed(kind)
        # The signature does not cover the algorithm identifier, so this
        # models a producer that writes ecPublicKey / rsaEncryption there.
        def rename(ci: Any, oid: str = key_oid) -> None:
            _signer_info(ci).__setitem__("signature_algorithm", {"algorithm": oid})

        renamed = _edit(der, rename)
        assert cms.verify(renamed).signer == cert


def test_rsassa_pss_signature_verifies_with_its_parameters() -> None:
    der, key, _ = _signed("rsa")
    assert isinstance(key, rsa.RSAPrivateKey)

    def pss(salt_in_params: int) -> bytes:
        def change(ci: Any) -> None:
            signer_info = _signer_info(ci)
            signer_info["signature_algorithm"] = {
                "algorithm": "rsassa_pss",
                "parameters": {
                    "hash_algorithm": {"algorithm": "sha256"},
                    "mask_gen_algorithm": {
                        "algorithm": "mgf1",
                        "parameters": {"algorithm": "sha256"},
                    },
                    "salt_length": salt_in_params,
                },
            }
            _resign(
                signer_info,
                key,
                lambda data: key.sign(
                    data,
                    padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
                    hashes.SHA256(),
                ),
            )

        return _edit(der, change)

    assert cms.verify(pss(32)).digest_algorithm == "sha256"
    _refused(pss(20), SignatureInvalid, "cms.signature")


def test_ber_indefinite_length_message_verifies() -> None:
    der, _, cert = _signed()
    content_info = asn1_cms.ContentInfo.load(der)
    signed_data = content_info["content"]
    encap = signed_data["encap_content_info"]
    eoc = b"\x00\x00"
    # eContent as a constructed OCTET STRING in two chunks, all outer layers
    # indefinite: what streaming producers emit (RFC 5652 section 5.2 allows BER).
    half = len(VOUCHER_JSON) // 2
    chunks = b"".join(
        b"\x04" + encode_length(len(part)) + part
        for part in (VOUCHER_JSON[:half], VOUCHER_JSON[half:])
    )
    encap_ber = b"\x30\x80" + encap["content_type"].dump() + b"\xa0\x80\x24\x80" + chunks + eoc * 3
    signed_data_ber = (
        b"\x30\x80"
        + signed_data["version"].dump()
        + signed_data["digest_algorithms"].dump()
        + encap_ber
        + signed_data["certificates"].dump()
        + signed_data["signer_infos"].dump()
        + eoc
    )
    ber = (
        b"\x30\x80" + content_info["content_type"].dump() + b"\xa0\x80" + signed_data_ber + eoc * 2
    )
    message = cms.verify(ber)
    assert message.content == VOUCHER_JSON
    assert message.signer == cert


# --- named refusals -----------------------------------------------------------------


def test_tampered_econtent_fails_message_digest() -> None:
    der, _, _ = _signed()
    tampered = der.replace(b'"logged"', b'"Logged"')
    assert tampered != der
    _refused(tampered, SignatureInvalid, "cms.message-digest")


def test_tampered_signed_attributes_fail_signature() -> None:
    der = _read(RFC8995 / "voucher_00-D0-E5-F2-00-02.der")
    assert der.count(b"210413214324Z") == 1  # the signingTime attribute
    _refused(der.replace(b"210413214324Z", b"210413214325Z"), SignatureInvalid, "cms.signature")


def test_swapped_content_under_valid_signer_info_fails_message_digest() -> None:
    key = _key("p256")
    cert = _cert(key)
    first = cms.sign(b'{"a":1}', key=key, cert=cert)
    second = cms.sign(b'{"a":2}', key=key, cert=cert)
    # Both are genuine; graft the second's signerInfo onto the first's content.
    other = asn1_cms.ContentInfo.load(second)["content"]["signer_infos"]
    swapped = _edit(first, lambda ci: ci["content"].__setitem__("signer_infos", other))
    _refused(swapped, SignatureInvalid, "cms.message-digest")


@pytest.mark.parametrize("signer_id", ["issuer-serial", "ski"])
def test_signer_id_matching_no_certificate(signer_id: Any) -> None:
    der, _, _ = _signed(signer_id=signer_id)
    stranger = _cert(_key("p256", 7), serial=0x9999)
    _refused(
        _edit(
            der,
            lambda ci: ci["content"].__setitem__("certificates", [_choice(stranger)]),
        ),
        MalformedInput,
        "cms.signer-not-found",
    )


def test_signer_id_matching_certificates_with_different_keys_is_ambiguous() -> None:
    der, _, cert = _signed()
    # Same issuer and serial as the signer, another key: a forged twin.
    twin = _cert(_key("p256", 8))
    assert (twin.issuer, twin.serial_number) == (cert.issuer, cert.serial_number)
    _refused(der, MalformedInput, "cms.signer-ambiguous", extra_certs=[twin])


def test_two_signer_infos_one_bad_is_refused() -> None:
    der, _, _ = _signed()

    def add_bad_twin(ci: Any) -> None:
        good = _signer_info(ci)
        bad = asn1_cms.SignerInfo.load(good.dump())
        bad["signature"] = b"\x30\x06\x02\x01\x01\x02\x01\x01"
        ci["content"]["signer_infos"] = [good, bad]

    _refused(_edit(der, add_bad_twin), MalformedInput, "cms.signer-count")


def test_zero_signer_infos_is_refused() -> None:
    der, _, _ = _signed()
    empty = _edit(der, lambda ci: ci["content"].__setitem__("signer_infos", []))
    _refused(empty, MalformedInput, "cms.signer-count")


def test_content_type_attribute_mismatch() -> None:
    # Correctly signed with contentType id-data; the eContentType (which the
    # signature does not cover) is then relabelled as a voucher.
    der, _, _ = _signed(content_type=oids.ID_DATA)
    relabelled = _edit(
        der,
        lambda ci: ci["content"]["encap_content_info"].__setitem__(
            "content_type", oids.ID_CT_ANIMA_JSON_VOUCHER
        ),
    )
    _refused(relabelled, SignatureInvalid, "cms.content-type-attribute")


def test_wrong_econtent_type_not_allowed() -> None:
    der, _, _ = _signed(content_type="1.2.3.4")
    _refused(der, MalformedInput, "cms.content-type")
    assert cms.verify(der, content_types=("1.2.3.4",)).content == VOUCHER_JSON


def test_detached_content_is_refused() -> None:
    der, _, _ = _signed()
    detached = _edit(
        der, lambda ci: ci["content"]["encap_content_info"].__setitem__("content", None)
    )
    _refused(detached, MalformedInput, "cms.detached")


def test_missing_signed_attributes_are_refused() -> None:
    der, key, _ = _signed(content_type=oids.ID_DATA)

    def strip(ci: Any) -> None:
        signer_info = _signer_info(ci)
        signer_info["signed_attrs"] = None
        signer_info["signature"] = _raw_sign(key, VOUCHER_JSON)  # RFC 5652 5.4, no attributes

    _refused(_edit(der, strip), MalformedInput, "cms.signed-attrs")


def test_missing_and_duplicate_signed_attributes_are_refused() -> None:
    der, key, _ = _signed()
    digest = _sha256(VOUCHER_JSON)
    cases = {
        "cms.message-digest": asn1_cms.CMSAttributes(
            [{"type": "content_type", "values": [oids.ID_CT_ANIMA_JSON_VOUCHER]}]
        ),
        "cms.content-type-attribute": asn1_cms.CMSAttributes(
            [{"type": "message_digest", "values": [digest]}]
        ),
    }
    twice = _attrs(
        oids.ID_CT_ANIMA_JSON_VOUCHER, digest, {"type": "message_digest", "values": [digest]}
    )
    two_values = asn1_cms.CMSAttributes(
        [
            {"type": "content_type", "values": [oids.ID_CT_ANIMA_JSON_VOUCHER]},
            {"type": "message_digest", "values": [digest, b"\x00" * 32]},
        ]
    )
    for check, attrs in [
        *cases.items(),
        ("cms.message-digest", twice),
        ("cms.message-digest", two_values),
    ]:

        def change(ci: Any, attrs: Any = attrs) -> None:
            _signer_info(ci)["signed_attrs"] = attrs
            _resign(_signer_info(ci), key)

        _refused(_edit(der, change), MalformedInput, check)


def test_unknown_signed_attributes_are_ignored() -> None:
    der, key, cert = _signed()
    attrs = _attrs(
        oids.ID_CT_ANIMA_JSON_VOUCHER,
        _sha256(VOUCHER_JSON),
        {"type": "1.2.3.4.5", "values": [asn1_core.UTF8String("x")]},
    )

    def change(ci: Any) -> None:
        _signer_info(ci)["signed_attrs"] = attrs
        _resign(_signer_info(ci), key)

    assert cms.verify(_edit(der, change)).signer == cert


def test_non_der_signed_attributes_are_refused() -> None:
    der, _, _ = _signed()

    def make_indefinite(ci: Any) -> None:
        attrs = _signer_info(ci)["signed_attrs"]
        parts = b"".join(b"\x30\x80" + attr.contents + b"\x00\x00" for attr in attrs)
        _signer_info(ci)["signed_attrs"] = asn1_cms.CMSAttributes.load(
            b"\x31\x80" + parts + b"\x00\x00"
        )

    _refused(_edit(der, make_indefinite), MalformedInput, "asn1.indefinite")


def test_digest_algorithm_outside_the_allowlist() -> None:
    der, _, _ = _signed()
    sha1 = _edit(
        der, lambda ci: _signer_info(ci).__setitem__("digest_algorithm", {"algorithm": "sha1"})
    )
    _refused(sha1, MalformedInput, "cms.digest-algorithm")


def test_unsupported_signature_algorithm() -> None:
    der, _, _ = _signed()
    dsa = _edit(
        der,
        lambda ci: _signer_info(ci).__setitem__("signature_algorithm", {"algorithm": "sha1_dsa"}),
    )
    _refused(dsa, MalformedInput, "cms.signature-algorithm")


def test_signature_algorithm_that_does_not_fit_the_key() -> None:
    der, _, _ = _signed("rsa")
    as_ecdsa = _edit(
        der,
        lambda ci: _signer_info(ci).__setitem__(
            "signature_algorithm", {"algorithm": "sha256_ecdsa"}
        ),
    )
    _refused(as_ecdsa, SignatureInvalid, "cms.signer-key")


def test_not_signed_data() -> None:
    data = asn1_cms.ContentInfo({"content_type": "data", "content": b"x"}).dump()
    _refused(data, MalformedInput, "cms.not-signed-data")


def test_truncated_der() -> None:
    der, _, _ = _signed()
    for cut in (1, 2, 10, len(der) // 2, len(der) - 1):
        with pytest.raises(MalformedInput) as info:
            cms.verify(der[:cut])
        assert info.value.check.startswith("asn1.")


def test_deep_nesting_1000_levels() -> None:
    _refused(b"\x30\x80" * 1000 + b"\x00\x00" * 1000, MalformedInput, "asn1.depth")


def test_oversized_input() -> None:
    der = _read(RFC8995 / "voucher_00-D0-E5-F2-00-02.der")
    _refused(der, PayloadTooLarge, "asn1.size", max_size=len(der) - 1)
    _refused(b"\x04\x83\x01\x00\x00" + b"\x00" * 65536, PayloadTooLarge, "asn1.size")


def test_trailing_garbage() -> None:
    der = _read(RFC8995 / "voucher_00-D0-E5-F2-00-02.der")
    _refused(der + b"\x00", MalformedInput, "asn1.trailing-data")


def test_structure_errors_are_wrapped() -> None:
    # Well framed but not a ContentInfo: asn1crypto's ValueError must not escape.
    _refused(b"\x30\x03\x02\x01\x01", MalformedInput, "cms.structure")


# --- signing refusals -----------------------------------------------------------------


def test_sign_refuses_a_key_that_does_not_match_the_certificate() -> None:
    with pytest.raises(ConfigError) as info:
        cms.sign(VOUCHER_JSON, key=_key("p256"), cert=_cert(_key("p256", 9)))
    assert info.value.check == "cms.key-mismatch"


def test_sign_refuses_a_naive_signing_time() -> None:
    with pytest.raises(ConfigError) as info:
        _signed(signing_time=datetime(2025, 1, 1))
    assert info.value.check == "cms.signing-time"


def test_signed_message_validates_on_construction() -> None:
    _, _, cert = _signed()
    with pytest.raises(MalformedInput):
        cms.SignedMessage(
            content=b"x",
            content_type="not-an-oid",
            signer=cert,
            certificates=(),
            signing_time=None,
            digest_algorithm="sha256",
        )
    with pytest.raises(MalformedInput):
        cms.SignedMessage(
            content=b"x",
            content_type=oids.ID_DATA,
            signer=cert,
            certificates=(),
            signing_time=None,
            digest_algorithm="md5",
        )


# --- interop with OpenSSL (skipped where the binary is absent) -------------------------
