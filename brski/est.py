"""EST wire formats (RFC 7030): bodies, media types, CSRs, certs-only (csrattrs: :mod:`brski.csrattrs`).

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
import warnings
from collections.abc import Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7
from cryptography.x509.oid import SignatureAlgorithmOID

from brski.asn1 import check_der
from brski.errors import (
    ConfigError,
    MalformedInput,
    PayloadTooLarge,
    PolicyRefused,
    SignatureInvalid,
)

__all__ = [
    "DEFAULT_MAX_SIZE",
    "build_certs_only",
    "build_pkcs7_certs_only_response",
    "decode_base64_body",
    "decode_est_body",
    "encode_base64_body",
    "parse_certs_only",
    "parse_csr",
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
    cryptography's encoder produces exactly that (byte-identical to the
    direct-DER encoder it replaced, on every ordering of the RFC 7030 A.1
    certificates: tests/unit/test_est.py).
    """
    if not certs:
        raise ConfigError("a certs-only response needs a certificate", check="est.certs-only-empty")
    return pkcs7.serialize_certificates(list(certs), Encoding.DER)


def build_pkcs7_certs_only_response(certs: Sequence[x509.Certificate]) -> bytes:
    """The HTTP body of a /cacerts or /simpleenroll answer (base64, RFC 7030 4.1.3)."""
    return encode_base64_body(build_certs_only(certs))


def parse_certs_only(der: bytes, *, max_size: int = DEFAULT_MAX_SIZE) -> list[x509.Certificate]:
    """Extract the certificates from a certs-only SignedData.

    Size and nesting are bounded first (``check_der``); cryptography then parses.
    Signers, CRLs and eContent are ignored rather than refused: RFC 5272
    section 4.1 says a Simple PKI Response has none, but nothing in the
    certificates depends on them and some CAs add them anyway. An answer with no
    X.509 certificate at all is useless to an EST client and is refused.
    """
    check_der(der, max_size=max_size)
    try:
        with warnings.catch_warnings():
            # cryptography warns, then parses as BER, when the SET OF certificates
            # is not in DER order; RFC 7030's own A.1 example is such a response.
            warnings.simplefilter("ignore", UserWarning)
            certs = pkcs7.load_der_pkcs7_certificates(der)
    except x509.InvalidVersion as exc:  # InvalidVersion is no ValueError
        raise MalformedInput(f"bad certificate: {exc}", check="est.certs-only-cert") from exc
    except UnsupportedAlgorithm as exc:  # raised for a ContentInfo that is not SignedData
        raise MalformedInput(f"not a certs-only SignedData: {exc}", check="est.certs-only-type") from exc
    except ValueError as exc:
        # cryptography says "has no certificate data" for a SignedData without any.
        check = "est.certs-only-empty" if "no certificate" in str(exc) else "est.certs-only"
        raise MalformedInput(f"malformed certs-only: {exc}", check=check) from exc
    if not certs:
        raise MalformedInput("certs-only carries no certificate", check="est.certs-only-empty")
    return certs
