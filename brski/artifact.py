"""One entry point for signed vouchers and voucher-requests, whatever their format.

The roles only know a media type (RFC 8995 section 5.2 Accept/Content-Type
negotiation) and a payload model; this module maps the one onto the signature
format that carries the other:

* ``application/voucher-cms+json``: CMS SignedData over the JSON payload
  (RFC 8366 section 5.3, RFC 8995 section 3), through :mod:`brski.cms`;
* ``application/voucher-cose+cbor``: COSE_Sign1 over SID-keyed CBOR
  (draft-ietf-anima-constrained-voucher), through :mod:`brski.cose_voucher`;
* ``application/voucher-jws+json``: JWS JSON serialization
  (draft-ietf-anima-jws-voucher), through :mod:`brski.jws_voucher`.

Format modules are imported on first use, so a missing or broken optional
format costs only its own media type. Verification here means signature plus
model; chain validation against trust anchors stays with ``brski.pki``.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cryptography import x509

from brski import oids
from brski.errors import MalformedInput, UnsupportedMediaType, VoucherInvalid
from brski.pki import PrivateKey
from brski.voucher import Voucher, VoucherRequest

__all__ = [
    "SignFn",
    "SignedArtifact",
    "VerifyFn",
    "detect_media_type",
    "register_format",
    "sign_artifact",
    "supported_media_types",
    "verify_artifact",
    "verify_signature",
]

Payload = Voucher | VoucherRequest
Kind = type[Voucher] | type[VoucherRequest]
# sign(payload, *, key, cert, chain) -> raw artifact bytes
SignFn = Callable[..., bytes]
# verify(raw, *, kind, extra_certs) -> SignedArtifact
VerifyFn = Callable[..., "SignedArtifact"]


@dataclass(frozen=True, kw_only=True)
class SignedArtifact:
    """A signed voucher or voucher-request whose signature has been checked.

    ``raw`` is kept because RFC 8995 section 5.5 has the registrar forward the
    pledge's exact bytes as prior-signed-voucher-request, and audit logs want
    what was signed, not a re-encoding.
    """

    media_type: str
    raw: bytes
    payload: Voucher | VoucherRequest
    signer: x509.Certificate
    certificates: tuple[x509.Certificate, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.payload, Voucher | VoucherRequest):
            raise TypeError("payload must be a Voucher or VoucherRequest")
        if not isinstance(self.signer, x509.Certificate):
            raise TypeError("signer must be an x509.Certificate")
        object.__setattr__(self, "raw", bytes(self.raw))
        object.__setattr__(self, "certificates", tuple(self.certificates))


# --- CMS, the RFC 8366 format ------------------------------------------------------


def _cms_sign(
    payload: Payload,
    *,
    key: PrivateKey,
    cert: x509.Certificate,
    chain: Sequence[x509.Certificate] = (),
) -> bytes:
    from brski import cms

    # RFC 8366 section 5.3: eContentType id-ct-animaJSONVoucher (cms.sign's default).
    return cms.sign(
        payload.to_json(),
        key=key,
        cert=cert,
        chain=chain,
        content_type=oids.ID_CT_ANIMA_JSON_VOUCHER,
    )


def _cms_verify(
    raw: bytes, *, kind: Kind, extra_certs: Sequence[x509.Certificate] = ()
) -> SignedArtifact:
    from brski import cms

    # Both eContentTypes are accepted: every published CMS voucher (RFC 8995
    # Appendix C included) carries id-data instead of id-ct-animaJSONVoucher.
    message = cms.verify(
        raw,
        extra_certs=extra_certs,
        content_types=(oids.ID_CT_ANIMA_JSON_VOUCHER, oids.ID_DATA),
    )
    return SignedArtifact(
        media_type=oids.MT_VOUCHER_CMS_JSON,
        raw=raw,
        payload=kind.from_json(message.content),
        signer=message.signer,
        certificates=message.certificates,
    )


# --- the registry --------------------------------------------------------------------

_REGISTRY: dict[str, tuple[SignFn, VerifyFn]] = {
    oids.MT_VOUCHER_CMS_JSON: (_cms_sign, _cms_verify),
}
# Media types whose module exposes module-level sign() and verify(); imported lazily.
_LAZY: dict[str, str] = {
    oids.MT_VOUCHER_COSE_CBOR: "brski.cose_voucher",
    oids.MT_VOUCHER_JWS_JSON: "brski.jws_voucher",
}


def register_format(media_type: str, sign_fn: SignFn, verify_fn: VerifyFn) -> None:
    """Add or replace the functions for a media type (a plug-in point for new formats)."""
    _REGISTRY[_normalise(media_type)] = (sign_fn, verify_fn)


def supported_media_types() -> tuple[str, ...]:
    """The voucher media types this installation can sign and verify, preferred first."""
    out = []
    for media_type in oids.VOUCHER_MEDIA_TYPES:
        try:
            _lookup(media_type)
        except UnsupportedMediaType:
            continue
        out.append(media_type)
    return tuple(out)


def _normalise(media_type: str) -> str:
    # RFC 9110 section 8.3.1: type and subtype are case-insensitive; parameters
    # carry nothing for voucher types, so they are dropped. Aliases (the
    # constrained-voucher draft's application/voucher+cose) name the same format.
    name = media_type.split(";", 1)[0].strip().lower()
    return oids.VOUCHER_MEDIA_ALIASES.get(name, name)


def _lookup(media_type: str) -> tuple[SignFn, VerifyFn]:
    if not isinstance(media_type, str):
        raise UnsupportedMediaType("media type must be a string", check="artifact.media-type")
    name = _normalise(media_type)
    entry = _REGISTRY.get(name)
    if entry is not None:
        return entry
    module_name = _LAZY.get(name)
    if module_name is not None:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
        else:
            entry = (module.sign, module.verify)
            _REGISTRY[name] = entry
            return entry
    raise UnsupportedMediaType(
        f"unsupported voucher media type {media_type[:80]!r}", check="artifact.media-type"
    )


def sign_artifact(
    payload: Voucher | VoucherRequest,
    *,
    media_type: str,
    key: PrivateKey,
    cert: x509.Certificate,
    chain: Sequence[x509.Certificate] = (),
) -> bytes:
    """Sign ``payload`` in the format ``media_type`` names; ``chain`` travels with it.

    Date-and-time leaves go out in whole seconds (``Voucher.whole_seconds``):
    send conservatively, accept fractions.
    """
    if not isinstance(payload, Voucher | VoucherRequest):
        raise TypeError("payload must be a Voucher or VoucherRequest")
    sign_fn, _ = _lookup(media_type)
    return sign_fn(payload.whole_seconds(), key=key, cert=cert, chain=tuple(chain))


def verify_artifact(
    raw: bytes,
    *,
    media_type: str,
    kind: type[Voucher] | type[VoucherRequest],
    extra_certs: Sequence[x509.Certificate] = (),
) -> SignedArtifact:
    """Check the signature and decode the payload as ``kind``; no chain validation.

    ``extra_certs`` are candidates for the signer when the artifact does not
    carry its certificate (a pledge verifying a voucher signed by a MASA key it
    was built with).
    """
    if kind not in (Voucher, VoucherRequest):
        raise TypeError("kind must be Voucher or VoucherRequest")
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise MalformedInput("artifact must be bytes", check="artifact.type")
    _, verify_fn = _lookup(media_type)
    result = verify_fn(bytes(raw), kind=kind, extra_certs=tuple(extra_certs))
    if not isinstance(result.payload, kind):
        # Belt and braces: a format module that decoded the wrong container
        # must not let a voucher-request pass for a voucher.
        raise VoucherInvalid(
            f"artifact payload is a {type(result.payload).__name__}, not a {kind.__name__}",
            check="artifact.kind",
        )
    return result


def verify_signature(
    raw: bytes, *, media_type: str, extra_certs: Sequence[x509.Certificate] = ()
) -> tuple[bytes, x509.Certificate, tuple[x509.Certificate, ...]]:
    """The signature alone: (payload octets, signer, carried certificates).

    For tools that report signature and schema validity separately (a
    voucher without created-on has a valid signature and an invalid
    schema); protocol code uses :func:`verify_artifact`, which does both.
    """
    name = _normalise(media_type)
    _lookup(name)  # refuses an unsupported media type by name
    if name == oids.MT_VOUCHER_CMS_JSON:
        from brski import cms

        message = cms.verify(
            bytes(raw),
            extra_certs=extra_certs,
            content_types=(oids.ID_CT_ANIMA_JSON_VOUCHER, oids.ID_DATA),
        )
        return message.content, message.signer, message.certificates
    if name == oids.MT_VOUCHER_COSE_CBOR:
        from brski.cose_voucher import verify_cose_sign1

        return verify_cose_sign1(bytes(raw), candidates=extra_certs)
    if name == oids.MT_VOUCHER_JWS_JSON:
        from brski.jws_voucher import verify_jws

        return verify_jws(bytes(raw), candidates=extra_certs)
    raise UnsupportedMediaType(
        f"no signature-only check for {media_type[:80]!r}", check="artifact.media-type"
    )


def detect_media_type(raw: bytes) -> str:
    """Guess the format of an artifact from its first bytes (for the inspect tool).

    CMS is DER ContentInfo, a SEQUENCE (0x30). COSE_Sign1 is CBOR tag 18 (0xd2)
    or, untagged, a 4-element array (0x84). The JWS JSON serialization is an
    object with "payload" and "signatures" (general) or "signature" (flattened).
    This is a hint, not a check: verify_artifact decides.
    """
    data = bytes(raw).lstrip(b" \t\r\n")
    if not data:
        raise UnsupportedMediaType("empty artifact", check="artifact.detect")
    first = data[0]
    if first == 0x30:
        return oids.MT_VOUCHER_CMS_JSON
    if first == 0xD2 or 0x80 <= first <= 0x9F:
        return oids.MT_VOUCHER_COSE_CBOR
    if first == 0x7B and len(data) <= 1 << 20:
        try:
            obj = json.loads(data.decode("utf-8"))
        except (ValueError, RecursionError):
            obj = None
        if (
            isinstance(obj, dict)
            and "payload" in obj
            and ("signatures" in obj or "signature" in obj)
        ):
            return oids.MT_VOUCHER_JWS_JSON
    raise UnsupportedMediaType("not a CMS, COSE or JWS voucher artifact", check="artifact.detect")
