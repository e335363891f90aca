"""COSE_Sign1-signed CBOR vouchers (``application/voucher-cose+cbor``).

draft-ietf-anima-constrained-voucher section 9 ("Signing Voucher and Voucher
Request Artifacts with COSE") signs the YANG-CBOR voucher (see
:mod:`brski.sid`) with a COSE_Sign1 structure (RFC 9052 section 4.2, tag 18):

* protected header ``{1: alg}`` only, as in every example of the draft
  (ES256 = -7, ES384 = -35, ES512 = -36, EdDSA = -8; RSA is PS256 = -37);
* the signer's certificates travel in an *unprotected* ``x5bag`` (label 32,
  RFC 9360): the registrar MUST put its chain there in an RVR, the MASA its
  chain in a voucher, and the registrar strips it before forwarding
  (:func:`strip_unprotected_certs`); ``x5chain`` (33) and ``kid`` (4, a bstr,
  here the signer's subject key identifier) are the alternatives;
* a pledge voucher-request usually carries no certificate at all: the
  verifier supplies candidates (the pledge's TLS client certificate).

The signature is over the RFC 9052 section 4.4 Sig_structure
``["Signature1", protected, h'', payload]``; ECDSA signatures are the raw
``r || s`` of RFC 9053 section 2.1, not DER. This module checks signatures
only; whether the signer chains to a trust anchor is ``brski.pki``'s call.

The signature-algorithm helpers here are shared with :mod:`brski.jws_voucher`
(JWA and COSE name the same algorithms differently).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

import cbor2
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.hazmat.primitives.serialization import Encoding

from brski import oids
from brski.cbor import DEFAULT_MAX_SIZE, Tagged, decode_cbor
from brski.errors import BrskiError, ConfigError, MalformedInput, SignatureInvalid, VoucherInvalid
from brski.sid import VOUCHER, VOUCHER_REQUEST, decode_payload, encode_payload

if TYPE_CHECKING:
    from brski.artifact import SignedArtifact
    from brski.pki import PrivateKey
    from brski.voucher import Voucher, VoucherRequest

__all__ = [
    "ALGORITHMS",
    "COSE_TAG_SIGN1",
    "HDR_ALG",
    "HDR_CRIT",
    "HDR_KID",
    "HDR_X5BAG",
    "HDR_X5CHAIN",
    "SigAlg",
    "SignablePayload",
    "algorithm_for_key",
    "key_identifier",
    "load_certificate",
    "model_from_obj",
    "sign",
    "sign_bytes",
    "strip_unprotected_certs",
    "verify",
    "verify_bytes",
    "verify_cose_sign1",
]

COSE_TAG_SIGN1 = 18  # RFC 9052 section 2
# RFC 9052 section 3.1 common header parameters; RFC 9360 section 2.
HDR_ALG = 1
HDR_CRIT = 2
HDR_KID = 4
HDR_X5BAG = 32
HDR_X5CHAIN = 33
# Header parameters this module understands, so may appear in "crit".
_UNDERSTOOD = frozenset({HDR_KID, HDR_X5BAG, HDR_X5CHAIN})
# A voucher chain is a handful of certificates; more is an abuse.
MAX_CARRIED_CERTS = 16

Family = Literal["ecdsa", "eddsa", "rsa-pss", "rsa-pkcs1"]


class SignablePayload(Protocol):
    """What sign() reads of a payload (here and in jws_voucher): its RFC 7951
    JSON object form, as Voucher and VoucherRequest give it."""

    def to_obj(self) -> dict[str, Any]: ...


@dataclass(frozen=True, kw_only=True)
class SigAlg:
    """One signature algorithm with its JOSE name and COSE number."""

    jose: str
    cose: int | None
    family: Family
    hash_name: str | None  # "sha256", ...; None for EdDSA
    curve: str | None = None  # cryptography curve name for ECDSA
    coord_size: int = 0  # bytes per ECDSA coordinate in raw r||s


# RFC 9053 tables 1 and 2, RFC 8230 (PS*), RFC 8812 (RS*); RFC 7518 section 3.
ALGORITHMS: tuple[SigAlg, ...] = (
    SigAlg(
        jose="ES256", cose=-7, family="ecdsa", hash_name="sha256", curve="secp256r1", coord_size=32
    ),
    SigAlg(
        jose="ES384", cose=-35, family="ecdsa", hash_name="sha384", curve="secp384r1", coord_size=48
    ),
    SigAlg(
        jose="ES512", cose=-36, family="ecdsa", hash_name="sha512", curve="secp521r1", coord_size=66
    ),
    SigAlg(jose="EdDSA", cose=-8, family="eddsa", hash_name=None),
    SigAlg(jose="PS256", cose=-37, family="rsa-pss", hash_name="sha256"),
    SigAlg(jose="PS384", cose=-38, family="rsa-pss", hash_name="sha384"),
    SigAlg(jose="PS512", cose=-39, family="rsa-pss", hash_name="sha512"),
    SigAlg(jose="RS256", cose=-257, family="rsa-pkcs1", hash_name="sha256"),
    SigAlg(jose="RS384", cose=-258, family="rsa-pkcs1", hash_name="sha384"),
    SigAlg(jose="RS512", cose=-259, family="rsa-pkcs1", hash_name="sha512"),
)
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


def algorithm_for_key(key: PrivateKey, *, rsa_family: Family = "rsa-pss") -> SigAlg:
    """The algorithm a signer with ``key`` uses: fixed by the key, never chosen.

    ECDSA follows the curve (P-256 -> ES256 as the draft recommends), Ed25519
    is EdDSA, RSA uses ``rsa_family`` with SHA-256 (COSE: PS256; JOSE
    callers ask for RS256, the common JWS choice).
    """
    if isinstance(key, ec.EllipticCurvePrivateKey):
        for alg in ALGORITHMS:
            if alg.family == "ecdsa" and alg.curve == key.curve.name:
                return alg
        raise ConfigError(f"no signature algorithm for curve {key.curve.name}", check="sign.curve")
    if isinstance(key, Ed25519PrivateKey):
        return _by_jose("EdDSA")
    if isinstance(key, rsa.RSAPrivateKey):
        return _by_jose("PS256" if rsa_family == "rsa-pss" else "RS256")
    raise ConfigError(f"unsupported signing key {type(key).__name__}", check="sign.key-type")


def _by_jose(name: str) -> SigAlg:
    return next(a for a in ALGORITHMS if a.jose == name)


def sign_bytes(alg: SigAlg, key: PrivateKey, data: bytes) -> bytes:
    """Sign ``data``; ECDSA output is the fixed-width raw ``r || s``."""
    if alg.family == "ecdsa" and isinstance(key, ec.EllipticCurvePrivateKey):
        der = key.sign(data, ec.ECDSA(_HASHES[alg.hash_name or "sha256"]()))
        r, s = decode_dss_signature(der)
        return r.to_bytes(alg.coord_size, "big") + s.to_bytes(alg.coord_size, "big")
    if alg.family == "eddsa" and isinstance(key, Ed25519PrivateKey):
        return key.sign(data)
    if alg.family in ("rsa-pss", "rsa-pkcs1") and isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, _rsa_padding(alg), _HASHES[alg.hash_name or "sha256"]())
    raise ConfigError(f"key does not fit algorithm {alg.jose}", check="sign.key-type")


def _rsa_padding(alg: SigAlg) -> padding.AsymmetricPadding:
    if alg.family == "rsa-pss":
        # RFC 8230 / RFC 7518: salt length equals the hash length.
        return padding.PSS(
            mgf=padding.MGF1(_HASHES[alg.hash_name or "sha256"]()),
            salt_length=padding.PSS.DIGEST_LENGTH,
        )
    return padding.PKCS1v15()


def verify_bytes(alg: SigAlg, cert: x509.Certificate, data: bytes, signature: bytes) -> bool:
    """True when ``cert``'s key of the right type and curve made ``signature``.

    False (never an exception) for a mismatching key type, so callers can
    try several candidate certificates.
    """
    try:
        public = cert.public_key()
    except Exception:  # any key cryptography cannot load is no match
        return False
    try:
        if alg.family == "ecdsa":
            if not isinstance(public, ec.EllipticCurvePublicKey) or public.curve.name != alg.curve:
                return False
            if len(signature) != 2 * alg.coord_size:
                return False
            r = int.from_bytes(signature[: alg.coord_size], "big")
            s = int.from_bytes(signature[alg.coord_size :], "big")
            der = encode_dss_signature(r, s)
            public.verify(der, data, ec.ECDSA(_HASHES[alg.hash_name or "sha256"]()))
            return True
        if alg.family == "eddsa":
            if not isinstance(public, Ed25519PublicKey):
                return False
            public.verify(signature, data)
            return True
        if not isinstance(public, rsa.RSAPublicKey):
            return False
        public.verify(signature, data, _rsa_padding(alg), _HASHES[alg.hash_name or "sha256"]())
        return True
    except (InvalidSignature, ValueError):
        return False


def key_identifier(cert: x509.Certificate) -> bytes:
    """The subject key identifier: the extension if present, else RFC 5280 method 1."""
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        return ext.value.digest
    except Exception:  # absent, duplicated or unparsable extension
        return x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest


def _key_identifiers(cert: x509.Certificate) -> set[bytes]:
    ids: set[bytes] = set()
    try:
        ids.add(key_identifier(cert))
        ids.add(x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest)
    except Exception:  # a key cryptography cannot load has no identifier
        pass
    return ids


def load_certificate(der: Any, *, where: str) -> x509.Certificate:
    """Parse one carried DER certificate, refusing anything else as malformed."""
    if not isinstance(der, bytes):
        raise MalformedInput(f"{where} must hold DER certificates", check=f"{where}.cert")
    try:
        return x509.load_der_x509_certificate(der)
    except (ValueError, x509.InvalidVersion) as exc:
        raise MalformedInput(
            f"{where} holds a certificate that does not parse", check=f"{where}.cert"
        ) from exc


def model_from_obj(
    kind: type[Voucher] | type[VoucherRequest], obj: dict[str, Any]
) -> Voucher | VoucherRequest:
    """``kind.from_obj`` with stray parser exceptions turned into VoucherInvalid."""
    try:
        return kind.from_obj(obj)
    except BrskiError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise VoucherInvalid(f"voucher data refused: {exc}", check="voucher.model") from exc


def _container_for(kind: type[Voucher] | type[VoucherRequest]) -> str:
    from brski.voucher import VoucherRequest

    return VOUCHER_REQUEST if issubclass(kind, VoucherRequest) else VOUCHER


# --- signing ----------------------------------------------------------------------


def sign(
    payload: SignablePayload,
    *,
    key: PrivateKey,
    cert: x509.Certificate,
    chain: Sequence[x509.Certificate] = (),
    include: Literal["x5bag", "kid", "x5chain"] = "x5bag",
) -> bytes:
    """COSE_Sign1 (tag 18) over the SID-form CBOR of ``payload``.

    ``include`` says how the verifier finds the key: an unprotected x5bag
    with ``cert`` first then ``chain`` (the draft's default for RVRs and
    vouchers), an x5chain (leaf first, RFC 9360), or only a ``kid``.
    """
    alg = algorithm_for_key(key)
    assert alg.cose is not None
    body = encode_payload(payload.to_obj())
    protected = cbor2.dumps({HDR_ALG: alg.cose})
    ders = [c.public_bytes(Encoding.DER) for c in (cert, *chain)]
    unprotected: dict[int, Any]
    if include == "kid":
        unprotected = {HDR_KID: key_identifier(cert)}
    elif include == "x5chain":
        unprotected = {HDR_X5CHAIN: ders[0] if len(ders) == 1 else ders}
    elif include == "x5bag":
        unprotected = {HDR_X5BAG: ders[0] if len(ders) == 1 else ders}
    else:
        raise ConfigError(f"unknown include {include!r}", check="cose.include")
    to_be_signed = _sig_structure(protected, body)
    signature = sign_bytes(alg, key, to_be_signed)
    return cbor2.dumps(cbor2.CBORTag(COSE_TAG_SIGN1, [protected, unprotected, body, signature]))


def _sig_structure(protected: bytes, payload: bytes) -> bytes:
    # RFC 9052 section 4.4, with an empty external_aad.
    return cbor2.dumps(["Signature1", protected, b"", payload])


# --- verification -----------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class _Parsed:
    protected_bytes: bytes
    protected: dict[Any, Any]
    unprotected: dict[Any, Any]
    payload: bytes
    signature: bytes


def _parse(raw: bytes, max_size: int) -> _Parsed:
    msg = decode_cbor(raw, max_size=max_size, allowed_tags=(COSE_TAG_SIGN1,))
    if isinstance(msg, Tagged):
        msg = msg.value  # the tag can only be 18: decode_cbor allows no other
    if not isinstance(msg, list) or len(msg) != 4:
        raise MalformedInput("a COSE_Sign1 is an array of four items", check="cose.structure")
    protected_bytes, unprotected, payload, signature = msg
    if not isinstance(protected_bytes, bytes) or not isinstance(unprotected, dict):
        raise MalformedInput("COSE headers are a bstr and a map", check="cose.structure")
    if payload is None:
        raise MalformedInput(
            "detached COSE payloads are not used for vouchers", check="cose.detached"
        )
    if not isinstance(payload, bytes) or not isinstance(signature, bytes):
        raise MalformedInput("COSE payload and signature are bstrs", check="cose.structure")
    # RFC 9052 section 3: an empty protected header is a zero-length bstr.
    protected = decode_cbor(protected_bytes, max_size=max_size) if protected_bytes else {}
    if not isinstance(protected, dict):
        raise MalformedInput("the COSE protected header is a map", check="cose.structure")
    for label in (*protected, *unprotected):
        if not isinstance(label, int | str) or isinstance(label, bool):
            raise MalformedInput("COSE header labels are int or tstr", check="cose.header-label")
    both = set(protected) & set(unprotected)
    if both:
        # RFC 9052 section 3: a parameter MUST NOT be in both buckets.
        raise MalformedInput(
            f"header parameters {sorted(map(str, both))} appear twice",
            check="cose.header-duplicate",
        )
    return _Parsed(
        protected_bytes=protected_bytes,
        protected=protected,
        unprotected=unprotected,
        payload=payload,
        signature=signature,
    )


def _certs_from(value: Any, where: str) -> list[x509.Certificate]:
    # RFC 9360: COSE_X509 = bstr / [2*certs: bstr]
    items = value if isinstance(value, list) else [value]
    if not items or len(items) > MAX_CARRIED_CERTS:
        raise MalformedInput(
            f"{where} must hold 1..{MAX_CARRIED_CERTS} certificates", check=f"{where}.count"
        )
    return [load_certificate(item, where=where) for item in items]


def verify_cose_sign1(
    raw: bytes,
    *,
    candidates: Sequence[x509.Certificate] = (),
    max_size: int = DEFAULT_MAX_SIZE,
) -> tuple[bytes, x509.Certificate, tuple[x509.Certificate, ...]]:
    """Check a COSE_Sign1 signature; return (payload, signer, carried certs).

    The signer is searched among the x5chain leaf (RFC 9360: the signer),
    then ``candidates`` (certificates the caller already holds, so a match
    returns the caller's own copy), then the x5bag; a ``kid`` narrows the search to certificates with that
    subject key identifier. Model rules are not applied: this is the layer
    that published vectors with quirks can still be checked against.
    """
    parsed = _parse(raw, max_size)
    headers = {**parsed.unprotected, **parsed.protected}
    if HDR_ALG not in parsed.protected:
        # RFC 9052 section 3.1: alg is protected, or an attacker can swap it.
        where = "unprotected" if HDR_ALG in parsed.unprotected else "missing"
        raise SignatureInvalid(f"COSE alg is {where}", check="cose.alg-protected")
    alg_id = parsed.protected[HDR_ALG]
    alg = None
    if isinstance(alg_id, int) and not isinstance(alg_id, bool):
        alg = next((a for a in ALGORITHMS if a.cose == alg_id), None)
    if alg is None:
        raise SignatureInvalid(
            f"COSE alg {parsed.protected[HDR_ALG]!r} is not supported", check="cose.alg"
        )
    if HDR_CRIT in parsed.unprotected:
        raise MalformedInput("crit must be protected", check="cose.crit")
    if HDR_CRIT in parsed.protected:
        crit = parsed.protected[HDR_CRIT]
        if (
            not isinstance(crit, list)
            or not crit
            or any(not isinstance(c, int) or c not in _UNDERSTOOD for c in crit)
        ):
            raise SignatureInvalid(
                f"critical header parameters {crit!r} not understood", check="cose.crit"
            )

    chain = _certs_from(headers[HDR_X5CHAIN], "cose.x5chain") if HDR_X5CHAIN in headers else []
    bag = _certs_from(headers[HDR_X5BAG], "cose.x5bag") if HDR_X5BAG in headers else []
    carried = _dedupe([*chain, *bag])
    pool = _dedupe([*chain[:1], *candidates, *bag])
    if HDR_KID in headers:
        kid = headers[HDR_KID]
        if not isinstance(kid, bytes):
            raise MalformedInput("COSE kid must be a bstr", check="cose.kid")
        pool = [c for c in pool if kid in _key_identifiers(c)]
        if not pool:
            raise SignatureInvalid(
                "no known certificate matches the COSE kid", check="cose.kid-unknown"
            )
    if not pool:
        raise SignatureInvalid(
            "no certificate to verify the COSE signature with", check="cose.no-signer"
        )

    to_be_signed = _sig_structure(parsed.protected_bytes, parsed.payload)
    for cert in pool:
        if verify_bytes(alg, cert, to_be_signed, parsed.signature):
            return parsed.payload, cert, tuple(carried)
    raise SignatureInvalid(
        "the COSE signature does not verify with any candidate", check="cose.signature"
    )


def _dedupe(certs: Sequence[x509.Certificate]) -> list[x509.Certificate]:
    seen: set[bytes] = set()
    out: list[x509.Certificate] = []
    for cert in certs:
        der = cert.public_bytes(Encoding.DER)
        if der not in seen:
            seen.add(der)
            out.append(cert)
    return out


def verify(
    raw: bytes,
    *,
    kind: type[Voucher] | type[VoucherRequest],
    extra_certs: Sequence[x509.Certificate] = (),
) -> SignedArtifact:
    """Verify the signature, then decode the SID payload into ``kind``."""
    # Imported here: brski.artifact dispatches to this module, so a top-level
    # import would become a cycle the day artifact imports its formats eagerly.
    from brski.artifact import SignedArtifact

    payload, signer, certs = verify_cose_sign1(raw, candidates=extra_certs)
    obj = decode_payload(payload, container=_container_for(kind))
    model = model_from_obj(kind, obj)
    return SignedArtifact(
        media_type=oids.MT_VOUCHER_COSE_CBOR,
        raw=bytes(raw),
        payload=model,
        signer=signer,
        certificates=certs,
    )


def strip_unprotected_certs(raw: bytes, *, max_size: int = DEFAULT_MAX_SIZE) -> bytes:
    """The same COSE_Sign1 without unprotected x5bag/x5chain.

    The constrained-voucher draft (section 6.3) has the registrar remove them
    before forwarding a voucher to a constrained pledge; they are not signed,
    so the signature stays valid.
    """
    parsed = _parse(raw, max_size)
    unprotected = {k: v for k, v in parsed.unprotected.items() if k not in (HDR_X5BAG, HDR_X5CHAIN)}
    return cbor2.dumps(
        cbor2.CBORTag(
            COSE_TAG_SIGN1,
            [parsed.protected_bytes, _reencodable(unprotected), parsed.payload, parsed.signature],
        )
    )


def _reencodable(value: Any) -> Any:
    """Turn decoded :class:`Tagged` values back into cbor2 tags for encoding."""
    if isinstance(value, Tagged):
        return cbor2.CBORTag(value.tag, _reencodable(value.value))
    if isinstance(value, list):
        return [_reencodable(v) for v in value]
    if isinstance(value, dict):
        if any(isinstance(k, Tagged) for k in value):
            raise MalformedInput("tagged COSE header labels", check="cose.header-label")
        return {k: _reencodable(v) for k, v in value.items()}
    return value
