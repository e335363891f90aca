"""brski.cms: fuzzing (only named refusals escape) and RFC 5652 strictness:
the digest binding and the unsigned structure."""

from __future__ import annotations

import functools
from datetime import timedelta
from typing import Any

import pytest
from asn1crypto import cms as asn1_cms
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from brski import cms, oids
from brski.errors import (
    BrskiError,
    MalformedInput,
    SignatureInvalid,
)
from tests import VECTORS
from tests.cms_helpers import NOW, VOUCHER_JSON, _key, _name, _signed
from tests.cms_surgery import (
    _attrs,
    _edit,
    _refused,
    _resign,
    _signer_info,
)

RFC8995 = VECTORS / "rfc8995"


# --- fuzzing ----------------------------------------------------------------------------


@functools.cache
def _fuzz_seed() -> bytes:
    return (RFC8995 / "voucher_00-D0-E5-F2-00-02.der").read_bytes()


def _only_brski_errors(data: bytes) -> None:
    try:
        cms.verify(data)
    except BrskiError:
        pass


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_vouchers_raise_only_brski_errors(data: st.DataObject) -> None:
    blob = bytearray(_fuzz_seed())
    for _ in range(data.draw(st.integers(1, 3))):
        index = data.draw(st.integers(0, len(blob) - 1))
        action = data.draw(st.sampled_from(["set", "insert", "delete"]))
        if action == "set":
            blob[index] = data.draw(st.integers(0, 255))
        elif action == "insert":
            blob.insert(index, data.draw(st.integers(0, 255)))
        else:
            del blob[index]
    _only_brski_errors(bytes(blob))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_random_bytes_raise_only_brski_errors(data: bytes) -> None:
    _only_brski_errors(data)


def _primitive_spans(der: bytes) -> list[tuple[int, int]]:
    """(start, end) of every primitive value in a definite-length DER blob."""
    spans: list[tuple[int, int]] = []
    todo = [(0, len(der))]
    while todo:
        pos, end = todo.pop()
        while pos < end:
            tag = der[pos]
            length = der[pos + 1]
            header = 2
            if length & 0x80:
                count = length & 0x7F
                length = int.from_bytes(der[pos + 2 : pos + 2 + count], "big")
                header += count
            start = pos + header
            if tag & 0x20:
                todo.append((start, start + length))
            elif length:
                spans.append((start, start + length))
            pos = start + length
    return spans


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_random_values_in_valid_framing_raise_only_brski_errors(data: st.DataObject) -> None:
    # Random contents in place of one primitive value keep the framing valid,
    # so the bytes get past check_der and into asn1crypto and cryptography.
    der = bytearray(_fuzz_seed())
    start, end = data.draw(st.sampled_from(_primitive_spans(bytes(der))))
    der[start:end] = data.draw(st.binary(min_size=end - start, max_size=end - start))
    _only_brski_errors(bytes(der))


# --- RFC 5652 strictness: digest binding and the unsigned structure -----------------


def _sha384(data: bytes) -> bytes:
    hasher = hashes.Hash(hashes.SHA384())
    hasher.update(data)
    return hasher.finalize()


def test_signature_must_use_the_signer_info_digest_algorithm() -> None:
    """RFC 5652 5.4 / RFC 5753 2.1.1: a SignerInfo declaring SHA-384, whose
    messageDigest is SHA-384, but whose signature is ECDSA-with-SHA256."""
    der, key, _ = _signed("p256")

    def change(ci: Any) -> None:
        si = _signer_info(ci)
        si["digest_algorithm"] = {"algorithm": "sha384"}
        si["signed_attrs"] = _attrs(oids.ID_CT_ANIMA_JSON_VOUCHER, _sha384(VOUCHER_JSON))
        _resign(si, key)  # ECDSA with SHA-256; signatureAlgorithm stays sha256_ecdsa
        ci["content"]["digest_algorithms"] = [{"algorithm": "sha384"}]

    _refused(_edit(der, change), SignatureInvalid, "cms.digest-mismatch")

    def key_oid(ci: Any) -> None:
        change(ci)
        # ecPublicKey names no hash: the digestAlgorithm's SHA-384 is used, and fails.
        _signer_info(ci)["signature_algorithm"] = {"algorithm": "1.2.840.10045.2.1"}

    _refused(_edit(der, key_oid), SignatureInvalid, "cms.signature")


def test_signed_data_digest_algorithms_must_list_the_signers() -> None:
    der, _, _ = _signed("p256")
    absent = _edit(der, lambda ci: ci["content"].__setitem__("digest_algorithms", [{"algorithm": "sha512"}]))
    _refused(absent, MalformedInput, "cms.digest-algorithms")
    empty = _edit(der, lambda ci: ci["content"].__setitem__("digest_algorithms", []))
    _refused(empty, MalformedInput, "cms.digest-algorithms")
    with_sha1 = _edit(
        der,
        lambda ci: ci["content"].__setitem__(
            "digest_algorithms", [{"algorithm": "sha256"}, {"algorithm": "sha1"}]
        ),
    )
    error = _refused(with_sha1, MalformedInput, "cms.digest-algorithms")
    assert "SHA-1" in error.detail


STRUCTURE_REFUSALS = {
    "insert null into ContentInfo at 2": "cms.structure",
    "insert null into ContentInfo/[0] at 1": "cms.structure",
    "insert octets into SignedData at 5": "cms.structure",
    "insert null into SignedData/encapContentInfo at 2": "cms.structure",
    "eContent holds two OCTET STRINGs": "cms.structure",
    "insert null into SignerInfo at 6": "cms.structure",
    "insert int into SignerInfo/IssuerAndSerialNumber at 2": "cms.structure",
    "certificates holds an OCTET STRING": "cms.certificates",
    "certificates holds an attribute certificate tag": "cms.certificates",
    "crls garbage": "cms.crls",
    "crls empty-sequence": "cms.crls",
    "unsignedAttrs garbage": "cms.unsigned-attrs",
    "unsignedAttrs empty": "cms.unsigned-attrs",
    "SignerInfo version 010101010101010101": "cms.version",
    "SignerInfo version 03": "cms.version",
    "SignedData version 02": "cms.version",
}


def test_unsigned_structure_is_validated() -> None:
    """Unsigned bytes added to a genuine voucher are refused by name (RFC 5652 5.1-5.3, 10.2)."""
    from tests.cms_mutations import mutations

    der, _, _ = _signed("p256")
    seen = {name: data for name, data in mutations(der, flips=0) if name in STRUCTURE_REFUSALS}
    assert seen.keys() == STRUCTURE_REFUSALS.keys()
    for name, data in seen.items():
        with pytest.raises(MalformedInput) as info:
            cms.verify(data)
        assert info.value.check == STRUCTURE_REFUSALS[name], (name, info.value)


def test_well_formed_unsigned_additions_are_accepted() -> None:
    """What RFC 5652 allows unsigned stays allowed: an unsigned attribute, a CRL,
    a definite-length constructed eContent (X.690 8.7.3.2)."""
    from tests.cms_mutations import mutations

    der, _, _ = _signed("p256")
    wanted = {"unsignedAttrs well-formed", "eContent as constructed OCTET STRING", "BER indefinite outer layers"}
    for name, data in mutations(der, flips=0):
        if name in wanted:
            wanted.discard(name)
            assert cms.verify(data).content == VOUCHER_JSON, name
    assert not wanted

    ca_key = _key("p256", 3)
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(_name("crl issuer"))
        .last_update(NOW)
        .next_update(NOW + timedelta(days=1))
        .sign(ca_key, hashes.SHA256())
    )
    with_crl = _edit(
        der,
        lambda ci: ci["content"].__setitem__(
            "crls",
            [asn1_cms.RevocationInfoChoice(name="crl", value=asn1_crl_load(crl))],
        ),
    )
    assert cms.verify(with_crl).content == VOUCHER_JSON


def asn1_crl_load(crl: x509.CertificateRevocationList) -> Any:
    from asn1crypto import crl as asn1_crl

    return asn1_crl.CertificateList.load(crl.public_bytes(serialization.Encoding.DER))


def test_ber_inside_certificates_and_signer_identifier_is_refused_by_name() -> None:
    der, _, _ = _signed("p256")
    ci = asn1_cms.ContentInfo.load(der)
    signed_data = ci["content"]

    def indefinite(element: bytes) -> bytes:
        # Re-frame one constructed DER element (short or long length) as indefinite.
        header = 2 + (element[1] & 0x7F if element[1] & 0x80 else 0)
        return element[:1] + b"\x80" + element[header:] + b"\x00\x00"

    def rebuild(certs: bytes, signer_infos: bytes) -> bytes:
        body: bytes = (
            signed_data["version"].dump()
            + signed_data["digest_algorithms"].dump()
            + signed_data["encap_content_info"].dump()
            + certs
            + signer_infos
        )
        sd = b"\x30\x80" + body + b"\x00\x00"
        content_type: bytes = ci["content_type"].dump()
        return b"\x30\x80" + content_type + b"\xa0\x80" + sd + b"\x00\x00" * 2

    cert_der = signed_data["certificates"][0].chosen.dump()
    ber_cert = b"\xa0\x80" + indefinite(cert_der) + b"\x00\x00"
    _refused(rebuild(ber_cert, signed_data["signer_infos"].dump()), MalformedInput, "cms.certificate-not-der")

    si = signed_data["signer_infos"][0]
    fields = [si[name].dump() for name in ("version", "sid", "digest_algorithm", "signed_attrs", "signature_algorithm", "signature")]
    fields[1] = indefinite(fields[1])
    ber_si = b"\x31\x80\x30\x80" + b"".join(fields) + b"\x00\x00" * 2
    _refused(rebuild(signed_data["certificates"].dump(), ber_si), MalformedInput, "cms.ber-unsupported")
    # The same SignerInfo with the sid in DER verifies: BER is accepted around it.
    fields[1] = si["sid"].dump()
    ber_ok = b"\x31\x80\x30\x80" + b"".join(fields) + b"\x00\x00" * 2
    assert cms.verify(rebuild(signed_data["certificates"].dump(), ber_ok)).content == VOUCHER_JSON
