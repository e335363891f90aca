"""CMS SignedData for vouchers and voucher-requests (RFC 5652, RFC 8366 section 5.4).

Why not cryptography's ``pkcs7`` module: it cannot verify, and it always
writes eContentType id-data, while RFC 8366 section 5.4 asks for
id-ct-animaJSONVoucher. The structure is therefore built and taken apart with
asn1crypto and the arithmetic done by cryptography.

The verifier is deliberately narrow. BRSKI artifacts (RFC 8995 sections 3 and
5.5, RFC 8366 section 5.4) carry exactly one signer, attached content and
signed attributes, so anything else is refused with a named check rather than
handled: fewer code paths an attacker can reach. It answers "who signed these
bytes", never "should we trust the signer"; chain validation is
``brski.pki.verify_chain``'s job, on the certificate returned here.

The unsigned structure is held to RFC 5652 as strictly as OpenSSL's template
decoder holds it (:mod:`brski.cms_parts` walks the whole grammar; the
differential test in tests/e2e compares both on hundreds of mutations), since
bytes nobody signed must not ride along unexamined.

The algorithms both directions use are declared in :mod:`brski.cms_algorithms`,
the SignerIdentifier (written and matched) in :mod:`brski.cms_signer`.

Interop notes the tests pin down:

* every published example (RFC 8995 Appendix C, rfc8366bis, Minerva, Siemens)
  carries eContentType id-data, so both types are accepted by default;
* the signature is checked over the *received* signed-attribute octets with
  the [0] tag replaced by SET (RFC 5652 section 5.4), not over a re-encoding
  that could silently differ from what the signer hashed;
* some producers name the signature algorithm by the key OID (ecPublicKey,
  rsaEncryption); the digest algorithm then supplies the hash. Where the
  signature algorithm names a hash, it must be the digest algorithm's;
* BER indefinite lengths are accepted on the CMS layers, not inside
  certificates, the SignerIdentifier or the signed attributes (named checks).
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes

from brski import oids
from brski.asn1 import (
    NotPlainDer,
    check_der,
    decode_oid,
    der_children,
    der_element,
    encode_length,
    encode_oid,
    encode_tlv,
    encode_unsigned,
    remember_well_framed,
)
from brski.cms_algorithms import (
    DIGEST_ALGORITHMS,
    DIGEST_NAMES,
    DIGEST_OIDS,
    HASHES,
    SIGNATURE_ALGORITHM_IDS,
    check_signature,
    digest_label,
    raw_sign,
    signature_scheme,
)
from brski.cms_parts import (
    CERT_NOT_DER,
    Parts,
    extract_asn1crypto,
    extract_plain_der,
    require_der,
)
from brski.cms_signer import find_signer, issuer_der, key_identifier
from brski.errors import BrskiError, ConfigError, MalformedInput, SignatureInvalid
from brski.pki import cert_der, load_der_cert

if TYPE_CHECKING:
    from brski.pki import PrivateKey

__all__ = ["DIGEST_ALGORITHMS", "SignedMessage", "sign", "verify", "verify_detached"]


# RFC 5652 section 11 attribute types, by dotted value.
_ATTR_CONTENT_TYPE = "1.2.840.113549.1.9.3"
_ATTR_MESSAGE_DIGEST = "1.2.840.113549.1.9.4"
_ATTR_SIGNING_TIME = "1.2.840.113549.1.9.5"


# plus what cryptography raises on a certificate it cannot load.
_PARSE_ERRORS = (
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    OverflowError,
    UnicodeError,
    UnsupportedAlgorithm,
    x509.InvalidVersion,
)

_DOTTED_OID = re.compile(r"^[0-2](\.(0|[1-9][0-9]*))+$")


def _is_oid(value: object) -> bool:
    return isinstance(value, str) and _DOTTED_OID.match(value) is not None


@dataclass(frozen=True, kw_only=True)
class SignedMessage:
    """What a verified SignedData says, and who (by certificate) said it.

    ``signer`` is only the certificate the SignerIdentifier names and whose key
    verified the signature; whether it may speak for a MASA, pledge or
    registrar is decided by chain validation later.
    """

    content: bytes
    content_type: str
    signer: x509.Certificate
    certificates: tuple[x509.Certificate, ...]
    signing_time: datetime | None
    digest_algorithm: str

    def __post_init__(self) -> None:
        if not isinstance(self.content, bytes):
            raise MalformedInput("content must be bytes", check="cms.signed-message")
        if not _is_oid(self.content_type):
            raise MalformedInput("content_type must be a dotted OID", check="cms.signed-message")
        if not isinstance(self.signer, x509.Certificate):
            raise MalformedInput("signer must be a certificate", check="cms.signed-message")
        if not isinstance(self.certificates, tuple) or not all(
            isinstance(c, x509.Certificate) for c in self.certificates
        ):
            raise MalformedInput(
                "certificates must be a tuple of certificates", check="cms.signed-message"
            )
        if self.signing_time is not None and (
            not isinstance(self.signing_time, datetime) or self.signing_time.tzinfo is None
        ):
            raise MalformedInput("signing_time must be timezone-aware", check="cms.signed-message")
        if self.digest_algorithm not in DIGEST_ALGORITHMS:
            raise MalformedInput(
                f"digest algorithm {self.digest_algorithm!r} not allowed",
                check="cms.signed-message",
            )


# --- signing --------------------------------------------------------------------


def _signing_time_value(when: datetime) -> bytes:
    if when.tzinfo is None:
        raise ConfigError("signing_time must be timezone-aware", check="cms.signing-time")
    when = when.astimezone(UTC)
    # RFC 5652 section 11.3: UTCTime for 1950..2049, GeneralizedTime otherwise.
    if 1950 <= when.year <= 2049:
        return encode_tlv(0x17, when.strftime("%y%m%d%H%M%SZ").encode())
    return encode_tlv(0x18, when.strftime("%Y%m%d%H%M%SZ").encode())


def sign(
    content: bytes,
    *,
    key: PrivateKey,
    cert: x509.Certificate,
    chain: Sequence[x509.Certificate] = (),
    content_type: str = oids.ID_CT_ANIMA_JSON_VOUCHER,
    signing_time: datetime | None = None,
    signer_id: Literal["issuer-serial", "ski"] = "issuer-serial",
) -> bytes:
    """Sign ``content`` as an attached SignedData and return the DER ContentInfo.

    The certificate set is ``[cert, *chain]``: RFC 8366 section 5.4 asks for
    the chain up to the recipient's trust anchor so that the recipient (and an
    auditor) can validate without fetching anything.
    """
    if not isinstance(content, bytes):
        raise ConfigError("content must be bytes", check="cms.content")
    if not _is_oid(content_type):
        raise ConfigError(f"content type {content_type!r} is not an OID", check="cms.content-type")
    if signer_id not in ("issuer-serial", "ski"):
        raise ConfigError(f"unknown signer id kind {signer_id!r}", check="cms.signer-id")
    digest, sig_alg = signature_scheme(key)
    # Key equality (EVP_PKEY_eq) is the SPKI comparison without encoding both.
    if key.public_key() != cert.public_key():
        raise ConfigError("private key does not match the certificate", check="cms.key-mismatch")

    hasher = hashes.Hash(HASHES[digest]())
    hasher.update(content)
    # RFC 5652 section 5.3: contentType and messageDigest are mandatory once
    # there are signed attributes; rfc8366bis requires signed attributes.
    attributes = [
        _attribute(_ATTR_CONTENT_TYPE, encode_oid(content_type)),
        _attribute(_ATTR_MESSAGE_DIGEST, encode_tlv(0x04, hasher.finalize())),
    ]
    if signing_time is not None:
        attributes.append(_attribute(_ATTR_SIGNING_TIME, _signing_time_value(signing_time)))
    # RFC 5652 section 5.4: the signature covers the DER SET OF signed
    # attributes; DER sorts SET OF members by their encodings (X.690 11.6).
    signed_attrs = b"".join(sorted(attributes))
    signature = raw_sign(key, encode_tlv(0x31, signed_attrs), digest)

    if signer_id == "ski":
        sid = encode_tlv(0x80, key_identifier(cert))
    else:
        sid = encode_tlv(0x30, issuer_der(cert) + encode_unsigned(cert.serial_number))
    digest_algorithm = encode_tlv(0x30, encode_oid(DIGEST_NAMES[digest]))  # RFC 5754 2: no parameters
    signer_info = encode_tlv(
        0x30,
        # RFC 5652 section 5.3: v1 with issuerAndSerialNumber, v3 with SKI.
        encode_unsigned(3 if signer_id == "ski" else 1)
        + sid
        + digest_algorithm
        + encode_tlv(0xA0, signed_attrs)
        + SIGNATURE_ALGORITHM_IDS[sig_alg]
        + encode_tlv(0x04, signature),
    )
    # RFC 5652 section 5.1: version 3 once a SignerInfo is v3 or the
    # eContentType is not id-data (as for id-ct-animaJSONVoucher), else 1.
    version = 3 if signer_id == "ski" or content_type != oids.ID_DATA else 1
    certificates = sorted(cert_der(c) for c in (cert, *chain))
    signed_data = encode_tlv(
        0x30,
        encode_unsigned(version)
        + encode_tlv(0x31, digest_algorithm)
        + encode_tlv(0x30, encode_oid(content_type) + encode_tlv(0xA0, encode_tlv(0x04, content)))
        + encode_tlv(0xA0, b"".join(certificates))
        + encode_tlv(0x31, signer_info),
    )
    return encode_tlv(0x30, encode_oid(oids.ID_SIGNED_DATA) + encode_tlv(0xA0, signed_data))


def _attribute(oid: str, value: bytes) -> bytes:
    return encode_tlv(0x30, encode_oid(oid) + encode_tlv(0x31, value))


# --- verification ---------------------------------------------------------------


def verify(
    der: bytes,
    *,
    extra_certs: Sequence[x509.Certificate] = (),
    content_types: Collection[str] = (oids.ID_CT_ANIMA_JSON_VOUCHER, oids.ID_DATA),
    max_size: int = 65536,
) -> SignedMessage:
    """Check that ``der`` is an attached SignedData whose one signer signed it.

    Refuses (``MalformedInput``) anything structurally off and raises
    ``SignatureInvalid`` when the bytes are well formed but the cryptography
    or the signed attributes do not bind the content. Trust in the signer is
    not decided here.
    """
    if not isinstance(der, bytes | bytearray | memoryview):
        raise MalformedInput("CMS input must be bytes", check="cms.type")
    der = bytes(der)
    check_der(der, max_size=max_size)
    return _decoding(lambda: _verify(der, extra_certs=extra_certs, content_types=content_types))


def _decoding(run: Callable[[], SignedMessage]) -> SignedMessage:
    """``run()``, with a decoder's own exceptions refused as cms.structure."""
    try:
        return run()
    except BrskiError:
        raise
    except _PARSE_ERRORS as exc:
        raise MalformedInput(
            f"CMS structure does not decode: {type(exc).__name__}", check="cms.structure"
        ) from exc


def verify_detached(
    der: bytes,
    content: bytes,
    *,
    extra_certs: Sequence[x509.Certificate] = (),
    content_types: Collection[str] = (oids.ID_DATA,),
    max_size: int = 65536,
) -> SignedMessage:
    """Check a detached SignedData (RFC 5652 5.2: eContent absent) over
    ``content``, e.g. a MUD file signature (RFC 8520 13.2). Same checks as
    :func:`verify`; a SignedData that carries its own content is refused."""
    if not isinstance(der, bytes | bytearray | memoryview) or not isinstance(content, bytes):
        raise MalformedInput("CMS input and content must be bytes", check="cms.type")
    der = bytes(der)
    check_der(der, max_size=max_size)

    def run() -> SignedMessage:
        parts = extract_asn1crypto(der)
        if parts.content is not None:
            raise MalformedInput("expected a detached signature (no eContent)", check="cms.not-detached")
        return _check_parts(replace(parts, content=content), extra_certs=extra_certs, content_types=content_types)

    return _decoding(run)


def _verify(
    der: bytes, *, extra_certs: Sequence[x509.Certificate], content_types: Collection[str]
) -> SignedMessage:
    try:
        parts = extract_plain_der(der)
    except NotPlainDer:
        parts = extract_asn1crypto(der)
    return _check_parts(parts, extra_certs=extra_certs, content_types=content_types)


def _check_parts(
    parts: Parts, *, extra_certs: Sequence[x509.Certificate], content_types: Collection[str]
) -> SignedMessage:
    # RFC 5652 section 3 / RFC 8366 section 5.4: a ContentInfo holding SignedData.
    if parts.content_type != oids.ID_SIGNED_DATA:
        raise MalformedInput("CMS content is not SignedData", check="cms.not-signed-data")
    e_content_type = parts.e_content_type
    if e_content_type not in content_types:
        raise MalformedInput(
            f"eContentType {e_content_type} not accepted here", check="cms.content-type"
        )
    if parts.content is None:
        # Detached signatures have no place in BRSKI: the voucher is the content.
        raise MalformedInput("eContent is absent (detached signature)", check="cms.detached")
    # RFC 8366 section 5.4 / rfc8366bis: one signerInfo. Accepting several
    # would let one good signature vouch for a message another party altered.
    if parts.signer_count != 1:
        raise MalformedInput(
            f"{parts.signer_count} SignerInfos, exactly one required", check="cms.signer-count"
        )
    digest_name = DIGEST_OIDS.get(parts.digest_oid)
    if digest_name is None:
        raise MalformedInput(
            f"digest algorithm {digest_label(parts.digest_oid)} not allowed (SHA-256, -384, -512)",
            check="cms.digest-algorithm",
        )
    # RFC 5652 section 5.1: digestAlgorithms lists the signers' algorithms
    # (for one-pass processing); a weak one listed is refused by the same policy.
    for listed in parts.digest_algorithms:
        if listed not in DIGEST_OIDS:
            raise MalformedInput(
                f"digestAlgorithms lists {digest_label(listed)}, not allowed",
                check="cms.digest-algorithms",
            )
    if parts.digest_oid not in parts.digest_algorithms:
        raise MalformedInput(
            f"digestAlgorithms does not list the signer's {digest_name}",
            check="cms.digest-algorithms",
        )
    _load_crls(parts.crls)
    # rfc8366bis "CMS Format Voucher Artifact": decoders MUST verify that
    # SignedAttributes is present (RFC 5652 section 5.3 requires it for any
    # eContentType other than id-data; vouchers need it for all).
    if parts.signed_attrs is None:
        raise MalformedInput("signed attributes are absent", check="cms.signed-attrs")
    # RFC 5652 section 5.4: the signature covers the DER of the SET OF signed
    # attributes, i.e. the received [0] IMPLICIT octets re-tagged as SET;
    # section 5.3: signed attributes are DER, so no indefinite lengths.
    signed_bytes = b"\x31" + encode_length(len(parts.signed_attrs)) + parts.signed_attrs
    check_der(signed_bytes, max_size=len(signed_bytes), allow_indefinite=False)
    attr_type, attr_digest, signing_time = _read_signed_attributes(signed_bytes)

    # RFC 5652 section 11.1: the content-type attribute equals eContentType.
    if attr_type != e_content_type:
        raise SignatureInvalid(
            f"contentType attribute {attr_type} differs from eContentType {e_content_type}",
            check="cms.content-type-attribute",
        )
    # RFC 5652 sections 5.4 and 11.2: the digest of the eContent octets.
    hasher = hashes.Hash(HASHES[digest_name]())
    hasher.update(parts.content)
    if not hmac.compare_digest(hasher.finalize(), attr_digest):
        raise SignatureInvalid(
            "messageDigest attribute does not match the content", check="cms.message-digest"
        )

    carried = _load_certificates(parts.certificates)
    signer = find_signer(parts.sid, (*carried, *extra_certs))
    check_signature(
        signer,
        algorithm=parts.signature_algorithm,
        digest_name=digest_name,
        signature=parts.signature,
        data=signed_bytes,
    )
    return SignedMessage(
        content=parts.content,
        content_type=e_content_type,
        signer=signer,
        certificates=carried,
        signing_time=signing_time,
        digest_algorithm=digest_name,
    )


def _load_crls(ders: Sequence[bytes]) -> None:
    """RFC 5652 section 10.2.1: each CertificateList must be one (RFC 5280
    section 5.1). Vouchers carry none; a carried one is parsed, not trusted."""
    for der in ders:
        try:
            x509.load_der_x509_crl(der)
        except ValueError as exc:
            raise MalformedInput("a carried CRL does not parse", check="cms.crls") from exc


_ATTR_CHECKS = {
    _ATTR_CONTENT_TYPE: "content-type-attribute",
    _ATTR_MESSAGE_DIGEST: "message-digest",
    _ATTR_SIGNING_TIME: "signing-time",
}


def _read_signed_attributes(signed_bytes: bytes) -> tuple[str, bytes, datetime | None]:
    """contentType, messageDigest and signingTime from the DER SET OF attributes.

    Each may appear at most once (RFC 5652 sections 11.1-11.3); the first two
    are mandatory (section 5.3). Other attributes (e.g. the S/MIME
    capabilities Minerva adds) are ignored.
    """
    content_type: str | None = None
    digest: bytes | None = None
    signing_time: datetime | None = None
    seen: set[str] = set()
    try:
        _, _, cs, ce = der_element(signed_bytes, 0, len(signed_bytes))
        attributes = der_children(signed_bytes, cs, ce)
        for ident, _, acs, ace in attributes:
            fields = der_children(signed_bytes, acs, ace)
            if ident != 0x30 or len(fields) != 2 or fields[0][0] != 0x06 or fields[1][0] != 0x31:
                raise MalformedInput("a signed attribute is not an Attribute", check="cms.signed-attrs")
            oid = decode_oid(signed_bytes[fields[0][2] : fields[0][3]])
            check = _ATTR_CHECKS.get(oid)
            if check is None:
                continue
            if oid in seen:
                raise MalformedInput(f"{check} attribute appears twice", check=f"cms.{check}")
            seen.add(oid)
            values = der_children(signed_bytes, fields[1][2], fields[1][3])
            # RFC 5652 sections 11.1-11.3: each of these has exactly one value.
            if len(values) != 1:
                raise MalformedInput(f"{check} attribute must have one value", check=f"cms.{check}")
            vident, vstart, vcs, vce = values[0]
            value = signed_bytes[vcs:vce]
            if oid == _ATTR_CONTENT_TYPE:
                if vident != 0x06:
                    raise MalformedInput("contentType is not an OID", check=f"cms.{check}")
                content_type = decode_oid(value)
            elif oid == _ATTR_MESSAGE_DIGEST:
                if vident != 0x04:
                    raise MalformedInput("messageDigest is not an OCTET STRING", check=f"cms.{check}")
                digest = value
            else:
                when = asn1_x509.Time.load(signed_bytes[vstart:vce], strict=True).native
                if not isinstance(when, datetime) or when.tzinfo is None:
                    raise MalformedInput("signingTime is not a UTC time", check="cms.signing-time")
                signing_time = when
    except NotPlainDer as exc:
        raise MalformedInput("signed attributes use a form DER forbids", check="cms.signed-attrs") from exc
    if content_type is None:
        raise MalformedInput(
            "contentType signed attribute is missing", check="cms.content-type-attribute"
        )
    if digest is None:
        raise MalformedInput(
            "messageDigest signed attribute is missing", check="cms.message-digest"
        )
    return content_type, digest, signing_time


def _load_certificates(ders: Sequence[bytes]) -> tuple[x509.Certificate, ...]:
    found: list[x509.Certificate] = []
    for der in ders:
        try:
            # Names and extensions are decoded lazily, by whoever reads them
            # (chain validation, logs): their contents are not this layer's.
            found.append(load_der_cert(der))
            remember_well_framed(der)  # the same chain comes in the next message
        except (ValueError, x509.InvalidVersion) as exc:
            # RFC 5280 section 4.1: a certificate is DER; BER is allowed only
            # on the CMS layers around it (RFC 5652 section 5.1).
            require_der(der, CERT_NOT_DER, "cms.certificate-not-der")
            raise MalformedInput(
                "a carried certificate does not parse", check="cms.certificate"
            ) from exc
    return tuple(found)
