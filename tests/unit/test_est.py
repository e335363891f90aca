"""brski.est: EST body codecs, CSRs, certs-only and csrattrs against RFC 7030 / RFC 9908 vectors."""

from __future__ import annotations

import base64
import itertools
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from brski import csrattrs, est, oids
from brski.errors import (
    BrskiError,
    MalformedInput,
    PayloadTooLarge,
    PolicyRefused,
    SignatureInvalid,
)
from tests import VECTORS
from tests.est_helpers import RFC7030, _der

CSRATTRS = VECTORS / "csrattrs-draft"

CSRATTRS_VECTORS = [
    *sorted(CSRATTRS.glob("*.der")),
    RFC7030 / "A.2-csrattrs-response.der",
    RFC7030 / "sec4.5.2-csrattrs.der",
]


def _csr(
    key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey,
    cn: str = "pledge",
) -> bytes:
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .sign(key, algorithm)
    )
    return csr.public_bytes(serialization.Encoding.DER)


# --- base64 bodies ---------------------------------------------------------------

DER = bytes(range(256)) * 3  # not ASN.1; the codec does not care


def test_base64_round_trip_uses_64_column_lf_lines() -> None:
    body = est.encode_base64_body(DER)
    lines = body.split(b"\n")
    assert lines[-1] == b""
    assert all(len(line) == 64 for line in lines[:-2])
    assert b"\r" not in body
    assert est.decode_base64_body(body) == DER


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t,
        lambda t: t.replace(b"\n", b"\r\n"),
        lambda t: t.replace(b"\n", b""),
        lambda t: t + b"\x00",
        lambda t: b"  " + t.replace(b"\n", b" \n ") + b"\r\n\x00",
        lambda t: t.replace(b"\n", b"").rstrip(b"="),
        lambda t: (
            b"-----BEGIN CERTIFICATE REQUEST-----\n" + t + b"-----END CERTIFICATE REQUEST-----\n"
        ),
    ],
    ids=["lf", "crlf", "one-line", "nul", "spaces", "no-padding", "pem"],
)
def test_base64_tolerance(mangle: Callable[[bytes], bytes]) -> None:
    for der in (DER, DER[:-1], DER[:-2]):  # all three padding lengths
        text = est.encode_base64_body(der)
        assert est.decode_base64_body(mangle(text)) == der


def test_base64_vector_bodies_decode() -> None:
    for b64 in [*CSRATTRS.glob("*.b64"), *RFC7030.glob("*.b64")]:
        der = b64.with_suffix(".der").read_bytes()
        assert est.decode_base64_body(b64.read_bytes()) == der, b64.name


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\x00",
        b"MIIB*AAA",
        b"MIIB-_AA",  # base64url is not the EST alphabet
        b"MIIBA",  # a lone sixth character encodes nothing
        b"MI=IBAAA",  # padding in the middle
        b"MIIBAA===",
        b"MIIBAAA==",  # wrong amount of padding
        b"-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE-----\n",
        b"-----BEGIN X-----\nProc-Type: 4,ENCRYPTED\nMIIB\n-----END X-----",
        b"\x30\x82\x01\x00garbage",
    ],
)
def test_malformed_base64_refused(body: bytes) -> None:
    with pytest.raises(MalformedInput) as info:
        est.decode_base64_body(body)
    assert info.value.check == "est.base64"


def test_oversize_refused() -> None:
    body = est.encode_base64_body(b"\x01" * 2000)
    with pytest.raises(PayloadTooLarge):
        est.decode_base64_body(body, max_size=1000)
    with pytest.raises(PayloadTooLarge):
        est.decode_base64_body(b"A" * 10_000, max_size=1000)
    assert est.decode_base64_body(body, max_size=2000) == b"\x01" * 2000


def test_decode_est_body_accepts_der_and_base64() -> None:
    der = (RFC7030 / "A.3-simpleenroll-request.p10.der").read_bytes()
    b64 = (RFC7030 / "A.3-simpleenroll-request.p10.b64").read_bytes()
    assert est.decode_est_body(der, content_transfer_encoding=None) == der
    assert est.decode_est_body(der, content_transfer_encoding="base64") == der
    assert est.decode_est_body(b64, content_transfer_encoding="binary") == der
    with pytest.raises(PayloadTooLarge):
        est.decode_est_body(der, content_transfer_encoding=None, max_size=100)
    # A DER prefix whose length does not cover the body is not taken as DER.
    with pytest.raises(MalformedInput):
        est.decode_est_body(der[:-1], content_transfer_encoding=None)


# --- media types -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, ("", {})),
        ("", ("", {})),
        ("application/pkcs10", ("application/pkcs10", {})),
        (
            "Application/PKCS7-MIME; smime-type=certs-only",
            ("application/pkcs7-mime", {"smime-type": "certs-only"}),
        ),
        (
            'application/pkcs7-mime ;SMIME-Type="certs-only"; name="a \\"b\\";c"',
            ("application/pkcs7-mime", {"smime-type": "certs-only", "name": 'a "b";c'}),
        ),
        ("application/csrattrs;", ("application/csrattrs", {})),
    ],
)
def test_parse_media_type(header: str | None, expected: tuple[str, dict[str, str]]) -> None:
    assert est.parse_media_type(header) == expected


def test_parse_media_type_matches_oids_constant() -> None:
    media, params = est.parse_media_type(oids.MT_PKCS7_CERTS_ONLY)
    assert media == oids.MT_PKCS7_MIME
    assert params == {"smime-type": "certs-only"}


@pytest.mark.parametrize(
    "header", ["application", "a/b; x", 'a/b; x="unterminated', "a/b c", "a/b; x=1; x=2"]
)
def test_parse_media_type_refuses_garbage(header: str) -> None:
    with pytest.raises(MalformedInput):
        est.parse_media_type(header)


# --- CSRs -------------------------------------------------------------------------


def test_rfc7030_a3_csr_parses_and_verifies() -> None:
    der = (RFC7030 / "A.3-simpleenroll-request.p10.der").read_bytes()
    # The RFC's example is sha1WithRSAEncryption: refused by default ...
    with pytest.raises(SignatureInvalid):
        est.parse_csr(der)
    # ... and verifies when SHA-1 proof of possession is allowed.
    csr = est.parse_csr(der, allow_sha1=True)
    assert csr.subject.rfc4514_string() == "CN=demostep4 1368141352"
    issued = x509.load_pem_x509_certificate((RFC7030 / "A.3-issued.pem").read_bytes())
    assert issued.public_key() == csr.public_key()


@pytest.mark.parametrize(
    "key",
    [
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP384R1()),
        ed25519.Ed25519PrivateKey.generate(),
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
    ],
    ids=["p256", "p384", "ed25519", "rsa2048"],
)
def test_supported_csr_keys(key: ec.EllipticCurvePrivateKey) -> None:
    csr = est.parse_csr(_csr(key))
    assert csr.public_key() == key.public_key()


def test_bad_csr_signature_refused() -> None:
    der = bytearray(_csr(ec.generate_private_key(ec.SECP256R1())))
    csr = x509.load_der_x509_csr(bytes(der))
    at = bytes(der).rindex(csr.signature) + 10
    der[at] ^= 0x01
    with pytest.raises(SignatureInvalid) as info:
        est.parse_csr(bytes(der))
    assert info.value.check == "est.csr-signature"


def test_certificate_posted_as_csr_is_named() -> None:
    """A client posting its certificate instead of a PKCS#10 request is told so."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ldevid-7")])
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(7).not_valid_before(datetime(2025, 1, 1)).not_valid_after(datetime(2026, 1, 1))
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    with pytest.raises(MalformedInput) as info:
        est.parse_csr(_der(cert))
    assert info.value.check == "est.csr-is-certificate"
    assert "X.509 certificate" in info.value.detail and "CN=ldevid-7" in info.value.detail
    # Anything else that is not a request keeps the generic name.
    with pytest.raises(MalformedInput) as info:
        est.parse_csr(b"\x30\x03\x02\x01\x01")
    assert info.value.check == "est.csr-der"


def test_tampered_csr_subject_refused() -> None:
    der = _csr(ec.generate_private_key(ec.SECP256R1()), cn="pledge-A")
    tampered = der.replace(b"pledge-A", b"pledge-B")
    assert tampered != der
    with pytest.raises(SignatureInvalid):
        est.parse_csr(tampered)


@pytest.mark.parametrize(
    "key",
    [
        ec.generate_private_key(ec.SECP521R1()),
        rsa.generate_private_key(public_exponent=65537, key_size=1024),
    ],
    ids=["p521", "rsa1024"],
)
def test_unsupported_csr_keys_refused(key: ec.EllipticCurvePrivateKey) -> None:
    with pytest.raises(PolicyRefused) as info:
        est.parse_csr(_csr(key))
    assert info.value.check == "est.csr-key-type"


def test_csr_garbage_and_size() -> None:
    with pytest.raises(MalformedInput):
        est.parse_csr(b"\x30\x03\x02\x01\x00")
    with pytest.raises(MalformedInput):
        est.parse_csr(b"not der")
    with pytest.raises(PayloadTooLarge):
        est.parse_csr(_csr(ec.generate_private_key(ec.SECP256R1())), max_size=50)


# --- certs-only ---------------------------------------------------------------------


def test_rfc7030_a1_cacerts() -> None:
    certs = est.parse_certs_only((RFC7030 / "A.1-cacerts-response.p7.der").read_bytes())
    expected = [
        x509.load_pem_x509_certificate((RFC7030 / f"A.1-cacert-{i}.pem").read_bytes())
        for i in range(4)
    ]
    assert certs == expected
    assert [c.subject.rfc4514_string() for c in certs] == [
        "CN=estExampleCA OwO",
        "CN=estExampleCA NwO",
        "CN=estExampleCA OwN",
        "CN=estExampleCA NwN",
    ]


def test_rfc7030_a3_simpleenroll_response() -> None:
    certs = est.parse_certs_only((RFC7030 / "A.3-simpleenroll-response.p7.der").read_bytes())
    issued = x509.load_pem_x509_certificate((RFC7030 / "A.3-issued.pem").read_bytes())
    assert certs == [issued]


def test_certs_only_is_der_whatever_the_order_given() -> None:
    """X.690 11.6: the SET OF certificates is sorted, so every ordering encodes alike."""
    certs = est.parse_certs_only((RFC7030 / "A.1-cacerts-response.p7.der").read_bytes())
    outputs = {est.build_certs_only(list(p)) for p in itertools.permutations(certs)}
    assert len(outputs) == 1
    der = outputs.pop()
    ders = [_der(c) for c in certs]
    positions = sorted((der.index(d), d) for d in ders)
    assert [d for _, d in positions] == sorted(ders)


def test_certs_only_refusals() -> None:
    with pytest.raises(BrskiError):
        est.build_certs_only([])
    csrattrs = (RFC7030 / "A.2-csrattrs-response.der").read_bytes()
    with pytest.raises(MalformedInput):
        est.parse_certs_only(csrattrs)
    # A ContentInfo of type id-data is not SignedData.
    with pytest.raises(MalformedInput) as info:
        est.parse_certs_only(bytes.fromhex("300f06092a864886f70d010701a0020400"))
    assert info.value.check == "est.certs-only-type"
    # Degenerate SignedData with no certificates at all.
    no_certs = bytes.fromhex(
        "302306092a864886f70d010702a01630140201013100300b06092a864886f70d0107013100"
    )
    with pytest.raises(MalformedInput) as info:
        est.parse_certs_only(no_certs)
    assert info.value.check == "est.certs-only-empty"
    with pytest.raises(PayloadTooLarge):
        est.parse_certs_only((RFC7030 / "A.1-cacerts-response.p7.der").read_bytes(), max_size=1000)


# --- csrattrs -----------------------------------------------------------------------


@pytest.mark.parametrize("path", CSRATTRS_VECTORS, ids=lambda p: p.name)
def test_csrattrs_vectors_parse_and_rebuild(path: Path) -> None:
    der = path.read_bytes()
    attrs = csrattrs.parse_csrattrs(der)
    assert attrs.items
    assert csrattrs.build_csrattrs(attrs) == der


def test_csrattrs_vector_contents() -> None:
    sec = csrattrs.parse_csrattrs((RFC7030 / "sec4.5.2-csrattrs.der").read_bytes())
    assert sec.oids == ("1.2.840.113549.1.9.7", "1.2.840.10045.4.3.3")
    ec_attr = sec.attribute("1.2.840.10045.2.1")
    assert ec_attr is not None and ec_attr.value_oids() == ("1.3.132.0.34",)
    ext = sec.attribute(oids.ID_EXTENSION_REQUEST)
    assert ext is not None and ext.value_oids() == ("1.3.6.1.1.1.1.22",)
    assert sec.template() is None

    a2 = csrattrs.parse_csrattrs((RFC7030 / "A.2-csrattrs-response.der").read_bytes())
    unknown = a2.attribute("2.999.2")
    assert unknown is not None and len(unknown.values) == 3
    assert unknown.value_oids() == ("2.999.3", "2.999.4")

    h02 = csrattrs.parse_csrattrs((CSRATTRS / "harkins02.csrattr.der").read_bytes())
    assert "2.5.4.5" in h02.oids  # "include your serial number"

    acp = csrattrs.parse_csrattrs((CSRATTRS / "realistic-acp.csrattr.der").read_bytes())
    ext = acp.attribute(oids.ID_EXTENSION_REQUEST)
    assert ext is not None
    assert b"rfc8994+fd739fc23c34401122334455" in ext.values[0]


def test_empty_csrattrs() -> None:
    attrs = csrattrs.parse_csrattrs(b"\x30\x00")
    assert attrs.items == ()
    assert csrattrs.build_csrattrs(csrattrs.CsrAttrs()) == b"\x30\x00"


@pytest.mark.parametrize(
    "der",
    [
        b"\x31\x00",  # SET, not SEQUENCE
        b"\x30\x03\x02\x01\x05",  # INTEGER is neither OID nor Attribute
        b"\x30\x07\x30\x05\x06\x01\x2a\x31\x00",  # attribute with an empty value SET
        b"\x30\x02\x06\x00",  # empty OID
    ],
)
def test_malformed_csrattrs_refused(der: bytes) -> None:
    with pytest.raises(MalformedInput):
        csrattrs.parse_csrattrs(der)


def test_duplicate_extension_request_refused() -> None:
    ext = csrattrs.CsrAttribute(type=oids.ID_EXTENSION_REQUEST, values=(b"\x30\x00",))
    with pytest.raises(MalformedInput) as info:
        csrattrs.CsrAttrs(items=(ext, ext))
    assert info.value.check == "est.csrattrs-duplicate"
    der = csrattrs.build_csrattrs(csrattrs.CsrAttrs(items=(ext,)))
    doubled = b"\x30" + bytes([2 * (len(der) - 2)]) + der[2:] * 2
    with pytest.raises(MalformedInput):
        csrattrs.parse_csrattrs(doubled)


def test_csrattrs_for_device_variants() -> None:
    bare = csrattrs.parse_csrattrs(csrattrs.csrattrs_for_device(legacy=False))
    assert [i if isinstance(i, str) else i.type for i in bare.items] == [
        oids.ID_AA_CERT_REQ_INFO_TEMPLATE,
        "1.2.840.10045.4.3.2",
    ]
    template = bare.template()
    assert template is not None and template.subject == (("2.5.4.5", None),)
    p384 = csrattrs.parse_csrattrs(csrattrs.csrattrs_for_device(key_type="p384")).template()
    assert p384 is not None and p384.key_parameters == "1.3.132.0.34"
    ed = csrattrs.parse_csrattrs(csrattrs.csrattrs_for_device(key_type="ed25519"))
    assert "1.3.101.112" in ed.oids
    edt = ed.template()
    assert edt is not None and edt.key_algorithm == "1.3.101.112" and edt.key_parameters is None
    with pytest.raises(BrskiError):
        csrattrs.csrattrs_for_device(key_type="dsa")


def test_template_round_trip_with_attributes() -> None:
    ext = csrattrs.CsrAttribute(type=oids.ID_EXTENSION_REQUEST, values=(b"\x30\x00",))
    template = csrattrs.CsrTemplate(
        subject=(("2.5.4.3", None), ("2.5.4.11", "myDept"), ("2.5.4.11", "Größe")),
        attributes=(ext,),
    )
    attrs = csrattrs.parse_csrattrs(csrattrs.build_csrattrs(csrattrs.CsrAttrs(items=(template.to_attribute(),))))
    assert attrs.template() == template


def test_template_refuses_bad_version() -> None:
    good = csrattrs.CsrTemplate(subject=(("2.5.4.3", None),)).to_attribute()
    assert good.values[0][2:5] == b"\x02\x01\x00"
    bad_value = good.values[0][:4] + b"\x01" + good.values[0][5:]
    bad = csrattrs.CsrAttribute(type=good.type, values=(bad_value,))
    with pytest.raises(MalformedInput) as info:
        csrattrs.CsrTemplate.from_attribute(bad)
    assert info.value.check == "est.csr-template"


# --- hostile input: only BrskiError may escape ----------------------------------------

SEEDS = [
    (RFC7030 / "A.3-simpleenroll-response.p7.der").read_bytes(),
    (RFC7030 / "A.2-csrattrs-response.der").read_bytes(),
    (CSRATTRS / "realistic-acp.csrattr.der").read_bytes(),
    csrattrs.csrattrs_for_device(serial_number="X1"),
]


def _mutate(data: bytes, edits: list[tuple[int, int]]) -> bytes:
    out = bytearray(data)
    for pos, value in edits:
        out[pos % len(out)] = value
    return bytes(out)


mutated = st.builds(
    _mutate,
    st.sampled_from(SEEDS),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=4),
)
ders = st.one_of(st.binary(max_size=300), mutated, st.sampled_from(SEEDS).map(lambda d: d[:-3]))


@settings(max_examples=300, deadline=None)
@given(ders)
def test_parsers_raise_only_brski_errors(data: bytes) -> None:
    for parse in (est.parse_certs_only, csrattrs.parse_csrattrs, est.parse_csr):
        try:
            parse(data)
        except BrskiError:
            pass
    try:
        attrs = csrattrs.parse_csrattrs(data)
        attrs.template()
        for attr in attrs.attributes:
            attr.value_oids()
    except BrskiError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode)))
def test_base64_decoders_raise_only_brski_errors(data: bytes) -> None:
    for decode in (est.decode_base64_body, lambda d: est.decode_est_body(d)):
        try:
            decode(data)
        except BrskiError:
            pass


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_base64_agrees_with_stdlib(data: bytes) -> None:
    assert est.decode_base64_body(base64.b64encode(data) or b"AA==") == (data or b"\x00")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=100))
def test_parse_media_type_raises_only_brski_errors(header: str) -> None:
    try:
        est.parse_media_type(header)
    except BrskiError:
        pass
