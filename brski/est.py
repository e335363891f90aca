"""EST wire formats (RFC 7030): bodies, media types, CSRs, certs-only, csrattrs.

Sans-IO: the registrar's handlers and the pledge simulator both call these
with bytes they got from HTTP and hand back bytes to send. Everything that
reads peer bytes is bounded (size first, then :func:`brski.asn1.check_der`)
and turns every decoder complaint into :class:`~brski.errors.MalformedInput`,
because an EST endpoint is reachable before the client is authorised.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from asn1crypto import cms as a_cms
from asn1crypto import core
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID, PublicKeyAlgorithmOID, SignatureAlgorithmOID

from brski import oids
from brski.asn1 import check_der, encode_oid, encode_tlv, encode_unsigned
from brski.errors import (
    BrskiError,
    ConfigError,
    MalformedInput,
    PayloadTooLarge,
    PolicyRefused,
    SignatureInvalid,
)

__all__ = [
    "DEFAULT_MAX_SIZE",
    "CsrAttribute",
    "CsrAttrs",
    "CsrTemplate",
    "build_certs_only",
    "build_csrattrs",
    "build_pkcs7_certs_only_response",
    "csrattrs_for_device",
    "decode_base64_body",
    "decode_est_body",
    "encode_base64_body",
    "parse_certs_only",
    "parse_csr",
    "parse_csrattrs",
    "parse_media_type",
]

DEFAULT_MAX_SIZE = 65536
# RSA moduli above this cost the server noticeable CPU per verification and
# buy no security an IoT device needs; refusing them bounds the work a
# pre-authorisation POST can cause.
_MAX_RSA_BITS = 8192
_MIN_RSA_BITS = 2048
_ALLOWED_CURVES = (ec.SECP256R1, ec.SECP384R1)


# --- transfer encoding (RFC 7030 section 3.2.x, RFC 8951) -----------------------

_B64_ALPHABET = re.compile(rb"[A-Za-z0-9+/]*={0,2}")
_WHITESPACE = b" \t\r\n"
_PEM = re.compile(
    rb"-----BEGIN ([A-Z0-9 ]{1,40})-----(.*?)-----END ([A-Z0-9 ]{1,40})-----", re.DOTALL
)


def _strip_pem(text: bytes) -> bytes:
    """Accept exactly one PEM block (RFC 7468) and return what is inside it.

    Some EST clients (and curl one-liners) post `openssl req` output as is;
    the armour carries no information we need, so strip it rather than refuse.
    Encapsulated headers (RFC 1421 "Proc-Type:") mean encryption: refused.
    """
    match = _PEM.fullmatch(text)
    if match is None or match.group(1) != match.group(3):
        raise MalformedInput("PEM armour is not one well-formed block", check="est.base64")
    inner = match.group(2)
    if b":" in inner:
        raise MalformedInput("PEM headers are not accepted", check="est.base64")
    return inner


def decode_base64_body(body: bytes, *, max_size: int = DEFAULT_MAX_SIZE) -> bytes:
    """Decode an EST base64 body as deployed clients really send it.

    RFC 7030 sections 4.2.1/4.5.2 say "base64" (RFC 4648 section 4), and RFC
    8951 section 3 confirms base64 is used regardless of any
    Content-Transfer-Encoding header. In practice bodies arrive with CRLF or
    LF line breaks, spaces, a C string's trailing NUL, or without the final
    padding; all of those are unambiguous, so they are accepted. Anything else
    outside the standard alphabet (base64url included) is refused, so two
    parsers can never disagree about what a body contained.
    """
    # The text is at most 4/3 of the DER plus line breaks; anything far
    # larger is refused before any copy is made.
    if len(body) > 2 * max_size + 1024:
        raise PayloadTooLarge(
            f"EST body of {len(body)} bytes is too large", check="est.size", limit=max_size
        )
    text = body.rstrip(b"\x00").strip(_WHITESPACE)
    if text.startswith(b"-----BEGIN "):
        text = _strip_pem(text)
    compact = text.translate(None, _WHITESPACE)
    if not compact:
        raise MalformedInput("empty EST body", check="est.base64")
    if _B64_ALPHABET.fullmatch(compact) is None:
        raise MalformedInput("EST body is not base64", check="est.base64")
    data = compact.rstrip(b"=")
    padding_chars = len(compact) - len(data)
    remainder = len(data) % 4
    # One leftover character cannot encode a byte; explicit padding must
    # complete the last quantum exactly (RFC 4648 section 4).
    if remainder == 1 or (padding_chars and (remainder + padding_chars) % 4 != 0):
        raise MalformedInput("base64 length or padding is inconsistent", check="est.base64")
    try:
        der = base64.b64decode(data + b"=" * (-len(data) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedInput(f"EST body is not base64: {exc}", check="est.base64") from exc
    if len(der) > max_size:
        raise PayloadTooLarge(
            f"decoded EST body of {len(der)} bytes exceeds {max_size}",
            check="est.size",
            limit=max_size,
        )
    return der


def _looks_like_der(body: bytes) -> bool:
    """True when the bytes are one SEQUENCE whose length field spans them exactly.

    Base64 text can start with "0" (0x30), but its second character would
    have to be a length that matches the body to the byte, so a coincidence
    needs a body that is also valid DER framing; the full check_der follows.
    """
    if len(body) < 2 or body[0] != 0x30:
        return False
    first = body[1]
    if first < 0x80:
        return 2 + first == len(body)
    count = first & 0x7F
    if count == 0 or count > 4 or len(body) < 2 + count:
        return False
    length = int.from_bytes(body[2 : 2 + count], "big")
    return 2 + count + length == len(body)


def decode_est_body(
    body: bytes,
    *,
    content_transfer_encoding: str | None = None,
    max_size: int = DEFAULT_MAX_SIZE,
) -> bytes:
    """Decode a request or response body, binary DER or base64.

    RFC 8951 section 3 deprecates the Content-Transfer-Encoding header and
    makes base64 the rule, so the header is deliberately not trusted either
    way (it is accepted only so call sites can pass what they saw). Some
    clients nonetheless post raw DER; a body whose outer SEQUENCE length
    accounts for every byte cannot be base64 text, so it is taken as DER.
    """
    del content_transfer_encoding  # RFC 8951 section 3: ignored on receipt
    if _looks_like_der(body):
        if len(body) > max_size:
            raise PayloadTooLarge(
                f"EST body of {len(body)} bytes exceeds {max_size}",
                check="est.size",
                limit=max_size,
            )
        return body
    return decode_base64_body(body, max_size=max_size)


def encode_base64_body(der: bytes) -> bytes:
    """Base64 in 64-column lines, each ending in LF.

    RFC 8951 section 3 keeps base64 as the EST body encoding; RFC 2045
    section 6.8 caps encoded lines at 76 characters, and 64 columns is the
    PEM width every EST client's decoder already handles. LF rather than CRLF
    because receivers strip both and it keeps the body byte-stable in logs.
    """
    text = base64.b64encode(der)
    return b"".join(text[i : i + 64] + b"\n" for i in range(0, len(text), 64))


# --- media types (RFC 9110 section 8.3.1) -----------------------------------------

_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_MEDIA_TYPE = re.compile(rf"\s*({_TOKEN})/({_TOKEN})\s*")
_PARAM = re.compile(rf"\s*;\s*({_TOKEN})\s*=\s*(?:({_TOKEN})|\"((?:[^\"\\]|\\.)*)\")\s*")
_MAX_HEADER = 1024


def parse_media_type(header: str | None) -> tuple[str, dict[str, str]]:
    """Split a Content-Type into (lowercased type/subtype, parameters).

    Type, subtype and parameter names are case-insensitive (RFC 9110 section
    8.3.1) and are lowercased; values keep their case (quotes and
    backslash escapes removed) because only the caller knows whether a
    given parameter's value is case-sensitive. An absent header gives
    ``("", {})`` so callers can answer 415 with one comparison.
    """
    if header is None or not header.strip():
        return "", {}
    if len(header) > _MAX_HEADER:
        raise MalformedInput("Content-Type header too long", check="est.media-type")
    match = _MEDIA_TYPE.match(header)
    if match is None:
        raise MalformedInput(f"malformed media type {header!r}", check="est.media-type")
    media = f"{match.group(1)}/{match.group(2)}".lower()
    params: dict[str, str] = {}
    pos = match.end()
    while pos < len(header):
        pm = _PARAM.match(header, pos)
        if pm is None:
            # A bare trailing ";" is common and harmless.
            if header[pos:].strip() == ";":
                break
            raise MalformedInput(f"malformed media type {header!r}", check="est.media-type")
        name = pm.group(1).lower()
        value = pm.group(2) if pm.group(2) is not None else re.sub(r"\\(.)", r"\1", pm.group(3))
        if name in params:
            raise MalformedInput(f"parameter {name!r} repeated", check="est.media-type")
        params[name] = value
        pos = pm.end()
    return media, params


# --- PKCS#10 (RFC 7030 section 4.2.1, RFC 2986) -----------------------------------


def _check_csr_key(csr: x509.CertificateSigningRequest) -> None:
    """Refuse keys an LDevID should not carry (and that would cost us to verify)."""
    try:
        key = csr.public_key()
    except (UnsupportedAlgorithm, ValueError) as exc:
        raise PolicyRefused(f"unsupported CSR key: {exc}", check="est.csr-key-type") from exc
    if isinstance(key, ec.EllipticCurvePublicKey):
        if isinstance(key.curve, _ALLOWED_CURVES):
            return
        detail = f"EC curve {key.curve.name}"
    elif isinstance(key, ed25519.Ed25519PublicKey):
        return
    elif isinstance(key, rsa.RSAPublicKey):
        if _MIN_RSA_BITS <= key.key_size <= _MAX_RSA_BITS:
            return
        detail = f"RSA-{key.key_size}"
    else:
        detail = type(key).__name__
    raise PolicyRefused(
        f"CSR key type {detail} not accepted (P-256, P-384, Ed25519, RSA 2048..8192)",
        check="est.csr-key-type",
    )


def _verify_sha1_rsa(csr: x509.CertificateSigningRequest) -> bool:
    """Verify an RSA/SHA-1 self-signature, which cryptography's policy refuses.

    RFC 7030's own Appendix A.3 request is signed sha1WithRSAEncryption. For
    a CSR the signature only proves possession of the key, and the signer is
    the only party who could craft a colliding request, so SHA-1 is harmless
    here; still, it is an explicit opt-in.
    """
    key = csr.public_key()
    if csr.signature_algorithm_oid != SignatureAlgorithmOID.RSA_WITH_SHA1:
        return False
    if not isinstance(key, rsa.RSAPublicKey):
        return False
    try:
        key.verify(csr.signature, csr.tbs_certrequest_bytes, padding.PKCS1v15(), hashes.SHA1())
    except InvalidSignature:
        return False
    return True


def parse_csr(
    der: bytes, *, max_size: int = DEFAULT_MAX_SIZE, allow_sha1: bool = False
) -> x509.CertificateSigningRequest:
    """Load a PKCS#10 request and check its proof of possession.

    RFC 7030 section 4.2.1: the CSR signature is the proof of possession of
    the private key, so a request whose self-signature fails is refused
    before any policy looks at its contents. The key type is checked first
    so that no verification is attempted with a key we would refuse anyway.
    """
    check_der(der, max_size=max_size)
    try:
        csr = x509.load_der_x509_csr(der)
    except (ValueError, x509.InvalidVersion) as exc:  # InvalidVersion is no ValueError
        raise MalformedInput(f"not a PKCS#10 request: {exc}", check="est.csr-der") from exc
    _check_csr_key(csr)
    try:
        valid = csr.is_signature_valid
    except (UnsupportedAlgorithm, ValueError) as exc:
        raise SignatureInvalid(
            f"CSR signature algorithm unsupported: {exc}", check="est.csr-signature"
        ) from exc
    if not valid and allow_sha1:
        valid = _verify_sha1_rsa(csr)
    if not valid:
        raise SignatureInvalid("CSR self-signature does not verify", check="est.csr-signature")
    return csr


# --- certs-only (RFC 7030 sections 4.1.3, 4.2.3; RFC 5272 section 4.1) ------------


def build_certs_only(certs: Sequence[x509.Certificate]) -> bytes:
    """A degenerate SignedData carrying only certificates, as DER ContentInfo.

    RFC 5272 section 4.1 (Simple PKI Response) and RFC 5652 section 5.1: no
    signers, no digest algorithms, eContentType id-data with eContent absent,
    hence version 1. The SET OF certificates is sorted as DER requires
    (X.690 section 11.6), so the order given here is not preserved: a client
    must build paths by name, which RFC 7030 section 4.1.3 expects anyway.
    """
    if not certs:
        raise ConfigError("a certs-only response needs a certificate", check="est.certs-only-empty")
    # Encoded directly (about ten times cheaper than an asn1crypto object tree,
    # and this answers every /cacerts and /simpleenroll).
    signed = encode_tlv(
        0x30,
        encode_unsigned(1)
        + encode_tlv(0x31, b"")  # digestAlgorithms: none
        + encode_tlv(0x30, encode_oid(oids.ID_DATA))  # encapContentInfo, eContent absent
        + encode_tlv(0xA0, b"".join(sorted(_cert_der(c) for c in certs)))
        + encode_tlv(0x31, b""),  # signerInfos: none
    )
    return encode_tlv(0x30, encode_oid(oids.ID_SIGNED_DATA) + encode_tlv(0xA0, signed))


def build_pkcs7_certs_only_response(certs: Sequence[x509.Certificate]) -> bytes:
    """The HTTP body of a /cacerts or /simpleenroll answer (base64, RFC 7030 4.1.3)."""
    return encode_base64_body(build_certs_only(certs))


def _cert_der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.DER)


def parse_certs_only(der: bytes, *, max_size: int = DEFAULT_MAX_SIZE) -> list[x509.Certificate]:
    """Extract the certificates from a certs-only SignedData.

    Signers, CRLs and eContent are ignored rather than refused: RFC 5272
    section 4.1 says a Simple PKI Response has none, but nothing in the
    certificates depends on them and some CAs add them anyway. Attribute and
    "other" certificate choices are skipped. An answer with no X.509
    certificate at all is useless to an EST client and is refused.
    """
    check_der(der, max_size=max_size)
    try:
        info = a_cms.ContentInfo.load(der, strict=True)
        if info["content_type"].dotted != oids.ID_SIGNED_DATA:
            raise MalformedInput("ContentInfo is not SignedData", check="est.certs-only-type")
        signed = info["content"]
        cert_set = signed["certificates"]
        ders: list[bytes] = []
        if not isinstance(cert_set, core.Void):
            for choice in cert_set:
                if choice.name == "certificate":
                    ders.append(choice.chosen.dump())
    except BrskiError:
        raise
    except Exception as exc:  # asn1crypto raises many types on hostile input
        raise MalformedInput(f"malformed certs-only: {exc}", check="est.certs-only") from exc
    if not ders:
        raise MalformedInput("certs-only carries no certificate", check="est.certs-only-empty")
    certs: list[x509.Certificate] = []
    for item in ders:
        try:
            certs.append(x509.load_der_x509_certificate(item))
        except (ValueError, x509.InvalidVersion) as exc:  # InvalidVersion is no ValueError
            raise MalformedInput(f"bad certificate: {exc}", check="est.certs-only-cert") from exc
    return certs


# --- csrattrs (RFC 7030 section 4.5.2, RFC 9908) ----------------------------------


class _AnyValues(core.SetOf):  # type: ignore[misc]
    _child_spec = core.Any


class _Attribute(core.Sequence):  # type: ignore[misc]
    _fields: ClassVar[list[Any]] = [("type", core.ObjectIdentifier), ("values", _AnyValues)]


class _AttrOrOid(core.Choice):  # type: ignore[misc]
    _alternatives: ClassVar[list[Any]] = [("oid", core.ObjectIdentifier), ("attribute", _Attribute)]


class _CsrAttrsAsn(core.SequenceOf):  # type: ignore[misc]
    _child_spec = _AttrOrOid


class _SingleAttributeTemplate(core.Sequence):  # type: ignore[misc]
    _fields: ClassVar[list[Any]] = [
        ("type", core.ObjectIdentifier),
        ("value", core.Any, {"optional": True}),
    ]


class _RdnTemplate(core.SetOf):  # type: ignore[misc]
    _child_spec = _SingleAttributeTemplate


class _NameTemplate(core.SequenceOf):  # type: ignore[misc]
    _child_spec = _RdnTemplate


class _AlgorithmIdentifier(core.Sequence):  # type: ignore[misc]
    _fields: ClassVar[list[Any]] = [
        ("algorithm", core.ObjectIdentifier),
        ("parameters", core.Any, {"optional": True}),
    ]


class _SpkiTemplate(core.Sequence):  # type: ignore[misc]
    _fields: ClassVar[list[Any]] = [
        ("algorithm", _AlgorithmIdentifier),
        ("subject_public_key", core.BitString, {"optional": True}),
    ]


class _Attributes(core.SetOf):  # type: ignore[misc]
    _child_spec = _Attribute


class _CriTemplate(core.Sequence):  # type: ignore[misc]
    # RFC 9908 Appendix A (module uses IMPLICIT TAGS)
    _fields: ClassVar[list[Any]] = [
        ("version", core.Integer),
        ("subject", _NameTemplate, {"optional": True}),
        ("subject_pk_info", _SpkiTemplate, {"implicit": 0, "optional": True}),
        ("attributes", _Attributes, {"implicit": 1}),
    ]


_DOTTED = re.compile(r"[0-2](\.(0|[1-9][0-9]{0,30})){1,63}")
_PRINTABLE = re.compile(r"[A-Za-z0-9 '()+,\-./:=?]+")


def _check_oid(value: str, what: str) -> None:
    if not isinstance(value, str) or _DOTTED.fullmatch(value) is None:
        raise MalformedInput(f"{what} {value!r} is not a dotted OID", check="est.csrattrs-oid")


def _oid_der(dotted: str) -> bytes:
    return bytes(core.ObjectIdentifier(dotted).dump())


def _string_der(text: str) -> bytes:
    """PrintableString when the text allows it (X.520 serialNumber), else UTF8String."""
    if _PRINTABLE.fullmatch(text):
        return bytes(core.PrintableString(text).dump())
    return bytes(core.UTF8String(text).dump())


def _decode_value(der: bytes, check: str) -> core.Asn1Value:
    try:
        return core.Asn1Value.load(der, strict=True)
    except Exception as exc:  # asn1crypto raises many types on hostile input
        raise MalformedInput(f"malformed value: {exc}", check=check) from exc


@dataclass(frozen=True, kw_only=True)
class CsrAttribute:
    """One ``Attribute`` of a CsrAttrs: a type OID and each value's DER.

    Values stay encoded because RFC 7030 section 4.5.2 lets a server send
    attributes a client does not know (it MUST ignore them), and re-encoding
    what we cannot interpret would risk changing it.
    """

    type: str
    values: tuple[bytes, ...]

    def __post_init__(self) -> None:
        _check_oid(self.type, "attribute type")
        object.__setattr__(self, "values", tuple(self.values))
        # RFC 7030 section 4.5.2: values SET SIZE(1..MAX)
        if not self.values:
            raise MalformedInput(
                f"attribute {self.type} has no value", check="est.csrattrs-attribute-values"
            )
        for value in self.values:
            check_der(value, max_size=DEFAULT_MAX_SIZE)

    def value_oids(self) -> tuple[str, ...]:
        """The values that are OBJECT IDENTIFIERs, e.g. the curve of ecPublicKey."""
        found: list[str] = []
        for value in self.values:
            decoded = _decode_value(value, "est.csrattrs-value")
            if isinstance(decoded, core.ObjectIdentifier):
                found.append(decoded.dotted)
        return tuple(found)


@dataclass(frozen=True, kw_only=True)
class CsrTemplate:
    """An RFC 9908 CertificationRequestInfoTemplate (section 3.4), flattened.

    ``subject`` lists (attribute type, value) in RDN order, one attribute per
    RDN (multi-valued RDNs are flattened when parsed); a ``None`` value means
    "the client fills this in". An empty ``subject`` means the field is
    absent: RFC 9908 says it MUST be absent when the server has no
    requirement on the subject. ``key_algorithm``/``key_parameters`` are the
    SubjectPublicKeyInfoTemplate's algorithm (parameters only as an OID,
    e.g. the named curve); the RSA "dummy key" form is not represented.
    """

    subject: tuple[tuple[str, str | None], ...] = ()
    key_algorithm: str | None = None
    key_parameters: str | None = None
    attributes: tuple[CsrAttribute, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "subject", tuple(self.subject))
        object.__setattr__(self, "attributes", tuple(self.attributes))
        for attr_type, _ in self.subject:
            _check_oid(attr_type, "subject attribute type")
        if self.key_algorithm is not None:
            _check_oid(self.key_algorithm, "key algorithm")
        if self.key_parameters is not None:
            if self.key_algorithm is None:
                raise MalformedInput("key parameters without algorithm", check="est.csr-template")
            _check_oid(self.key_parameters, "key parameters")
        types = [a.type for a in self.attributes]
        # RFC 9908 section 3.4: not both extension request forms, and at most one of each
        ext = {oids.ID_EXTENSION_REQUEST, oids.ID_AA_EXTENSION_REQ_TEMPLATE}
        if len([t for t in types if t in ext]) > 1:
            raise MalformedInput(
                "template carries more than one extension request attribute",
                check="est.csr-template-extensions",
            )

    def to_attribute(self) -> CsrAttribute:
        subject = None
        if self.subject:
            rdns = []
            for attr_type, value in self.subject:
                single: dict[str, Any] = {"type": attr_type}
                if value is not None:
                    single["value"] = core.Any.load(_string_der(value))
                rdns.append(_RdnTemplate([_SingleAttributeTemplate(single)]))
            subject = _NameTemplate(rdns)
        fields: dict[str, Any] = {"version": 0}
        if subject is not None:
            fields["subject"] = subject
        if self.key_algorithm is not None:
            alg: dict[str, Any] = {"algorithm": self.key_algorithm}
            if self.key_parameters is not None:
                alg["parameters"] = core.Any.load(_oid_der(self.key_parameters))
            fields["subject_pk_info"] = _SpkiTemplate({"algorithm": _AlgorithmIdentifier(alg)})
        fields["attributes"] = _Attributes([_attribute_asn(a) for a in self.attributes])
        der = bytes(_CriTemplate(fields).dump(force=True))
        return CsrAttribute(type=oids.ID_AA_CERT_REQ_INFO_TEMPLATE, values=(der,))

    @classmethod
    def from_attribute(cls, attr: CsrAttribute) -> CsrTemplate:
        """Decode a template attribute; RFC 9908 says exactly one value, version v1(0)."""
        check = "est.csr-template"
        if attr.type != oids.ID_AA_CERT_REQ_INFO_TEMPLATE or len(attr.values) != 1:
            raise MalformedInput("not a single-valued CSR template attribute", check=check)
        try:
            tmpl = _CriTemplate.load(attr.values[0], strict=True)
            if tmpl["version"].native != 0:
                raise MalformedInput("CSR template version is not v1(0)", check=check)
            subject: list[tuple[str, str | None]] = []
            if not isinstance(tmpl["subject"], core.Void):
                for rdn in tmpl["subject"]:
                    for single in rdn:
                        subject.append((single["type"].dotted, _template_value(single)))
            key_alg = key_params = None
            spki = tmpl["subject_pk_info"]
            if not isinstance(spki, core.Void):
                key_alg = spki["algorithm"]["algorithm"].dotted
                params = spki["algorithm"]["parameters"]
                if not isinstance(params, core.Void):
                    decoded = _decode_value(params.dump(), check)
                    if isinstance(decoded, core.ObjectIdentifier):
                        key_params = decoded.dotted
                    elif not isinstance(decoded, core.Null):
                        raise MalformedInput("key parameters are not an OID", check=check)
            attributes = tuple(
                CsrAttribute(type=a["type"].dotted, values=tuple(v.dump() for v in a["values"]))
                for a in tmpl["attributes"]
            )
        except BrskiError:
            raise
        except Exception as exc:  # asn1crypto raises many types on hostile input
            raise MalformedInput(f"malformed CSR template: {exc}", check=check) from exc
        return cls(
            subject=tuple(subject),
            key_algorithm=key_alg,
            key_parameters=key_params,
            attributes=attributes,
        )


def _template_value(single: _SingleAttributeTemplate) -> str | None:
    value = single["value"]
    if isinstance(value, core.Void):
        return None
    decoded = _decode_value(value.dump(), "est.csr-template")
    if not isinstance(decoded, core.AbstractString):
        raise MalformedInput("template subject value is not a string", check="est.csr-template")
    text: str = decoded.native
    return text


def _attribute_asn(attr: CsrAttribute) -> _Attribute:
    return _Attribute(
        {"type": attr.type, "values": _AnyValues([core.Any.load(v) for v in attr.values])}
    )


@dataclass(frozen=True, kw_only=True)
class CsrAttrs:
    """A /csrattrs body: bare OIDs (``str``) and attributes, in wire order.

    Validation is what RFC 9908 adds to RFC 7030 section 4.5.2 that can be
    checked without understanding the attribute: at most one extension
    request attribute (section 3.2) and at most one template (section 3.4).
    The shape of extensionRequest values is not enforced because RFC 7030's
    own example (section 4.5.2) puts a bare OID there, and clients must
    ignore what they do not understand.
    """

    items: tuple[str | CsrAttribute, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "items", tuple(self.items))
        for item in self.items:
            if isinstance(item, str):
                _check_oid(item, "csrattrs OID")
            elif not isinstance(item, CsrAttribute):
                raise MalformedInput(
                    "csrattrs item is neither OID nor attribute", check="est.csrattrs"
                )
        for unique in (oids.ID_EXTENSION_REQUEST, oids.ID_AA_CERT_REQ_INFO_TEMPLATE):
            if len([a for a in self.attributes if a.type == unique]) > 1:
                raise MalformedInput(
                    f"more than one {unique} attribute", check="est.csrattrs-duplicate"
                )

    @property
    def oids(self) -> tuple[str, ...]:
        return tuple(i for i in self.items if isinstance(i, str))

    @property
    def attributes(self) -> tuple[CsrAttribute, ...]:
        return tuple(i for i in self.items if isinstance(i, CsrAttribute))

    def attribute(self, attr_type: str) -> CsrAttribute | None:
        return next((a for a in self.attributes if a.type == attr_type), None)

    def template(self) -> CsrTemplate | None:
        """The RFC 9908 template, which a client that understands it uses alone (section 4)."""
        attr = self.attribute(oids.ID_AA_CERT_REQ_INFO_TEMPLATE)
        return None if attr is None else CsrTemplate.from_attribute(attr)


def build_csrattrs(attrs: CsrAttrs) -> bytes:
    """DER CsrAttrs (RFC 7030 section 4.5.2); base64 it with :func:`encode_base64_body`."""
    items = [
        _AttrOrOid(name="oid", value=core.ObjectIdentifier(i))
        if isinstance(i, str)
        else _AttrOrOid(name="attribute", value=_attribute_asn(i))
        for i in attrs.items
    ]
    return bytes(_CsrAttrsAsn(items).dump(force=True))


def parse_csrattrs(der: bytes, *, max_size: int = DEFAULT_MAX_SIZE) -> CsrAttrs:
    """Parse a /csrattrs body (DER); an empty SEQUENCE means "nothing requested"."""
    check_der(der, max_size=max_size)
    try:
        seq = _CsrAttrsAsn.load(der, strict=True)
        items: list[str | CsrAttribute] = []
        for choice in seq:
            if choice.name == "oid":
                items.append(choice.chosen.dotted)
            else:
                attr = choice.chosen
                values = tuple(v.dump() for v in attr["values"])
                items.append(CsrAttribute(type=attr["type"].dotted, values=values))
    except BrskiError:
        raise
    except Exception as exc:  # asn1crypto raises many types on hostile input
        raise MalformedInput(f"malformed csrattrs: {exc}", check="est.csrattrs") from exc
    return CsrAttrs(items=tuple(items))


_KEY_PROFILES: dict[str, tuple[str, str | None, str]] = {
    "p256": (
        PublicKeyAlgorithmOID.EC_PUBLIC_KEY.dotted_string,
        ec.EllipticCurveOID.SECP256R1.dotted_string,
        SignatureAlgorithmOID.ECDSA_WITH_SHA256.dotted_string,
    ),
    "p384": (
        PublicKeyAlgorithmOID.EC_PUBLIC_KEY.dotted_string,
        ec.EllipticCurveOID.SECP384R1.dotted_string,
        SignatureAlgorithmOID.ECDSA_WITH_SHA384.dotted_string,
    ),
    "ed25519": (
        PublicKeyAlgorithmOID.ED25519.dotted_string,
        None,
        SignatureAlgorithmOID.ED25519.dotted_string,
    ),
}


def csrattrs_for_device(
    *,
    serial_number: str | None = None,
    key_type: Literal["p256", "p384", "ed25519"] | str = "p256",
    legacy: bool = True,
) -> bytes:
    """What the registrar asks a pledge to put in its CSR, as DER CsrAttrs.

    The primary form is the RFC 9908 template (section 3.4), because it is
    the only form that can say "subject serialNumber, with this value" and
    "this key algorithm on this curve" without the ambiguities RFC 9908
    lists for the RFC 7030 form. BRSKI pledges predate RFC 9908, so with
    ``legacy`` (the default) the RFC 7030 section 4.5.2 items follow as well:
    the ecPublicKey attribute with the curve, a bare serialNumber OID (as in
    RFC 9908's examples), which RFC 9908 section 4 allows; a client that
    understands the template uses it alone. The signature algorithm is always
    a bare OID (RFC 7030 section 4.5.2): the template has no field for it.
    """
    profile = _KEY_PROFILES.get(key_type)
    if profile is None:
        raise ConfigError(f"unknown key type {key_type!r}", check="est.csrattrs-key-type")
    key_alg, curve, sig_alg = profile
    serial_oid = NameOID.SERIAL_NUMBER.dotted_string
    template = CsrTemplate(
        subject=((serial_oid, serial_number),), key_algorithm=key_alg, key_parameters=curve
    )
    items: list[str | CsrAttribute] = [template.to_attribute()]
    if legacy:
        if curve is not None:
            items.append(CsrAttribute(type=key_alg, values=(_oid_der(curve),)))
        else:
            items.append(key_alg)
        items.append(serial_oid)
    items.append(sig_alg)
    return build_csrattrs(CsrAttrs(items=tuple(items)))
