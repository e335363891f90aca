"""JWS-signed JSON vouchers (``application/voucher-jws+json``).

draft-ietf-anima-jws-voucher signs the JSON voucher (RFC 8366bis, the same
form ``Voucher.to_obj()`` gives) with a JWS (RFC 7515) in the General JSON
Serialization (section 7.2.1); the Flattened form (7.2.2) is accepted on
input as RFC 7515 lets any JSON-serialization consumer do. The protected
header holds ``alg``, ``typ`` (``voucher-jws+json``) and ``x5c`` (standard
base64 DER, the signer first, RFC 7515 section 4.1.6).

Refused on input, each with a ``jws.*`` check name:

* anything other than exactly one signature: a voucher has one signer, and
  "some signature verifies" is not "the signer we will chain-validate did";
* ``alg`` missing, unprotected, ``none``, or not an asymmetric algorithm we
  implement (HMAC would let anyone holding the key forge);
* a ``crit`` header at all, since this module implements no JWS extension
  (RFC 7515 section 4.1.11: unknown critical parameters MUST be rejected);
* a ``typ`` other than ``voucher-jws+json`` (with or without ``application/``);
* header names present both protected and unprotected (section 7.2.1);
* JSON nested deeper than a small bound, duplicate member names, NaN, or
  more than 64 KiB: ``json.loads`` recurses, and duplicate names make two
  parsers disagree about what was signed.

ECDSA signatures are raw ``r || s`` (RFC 7518 section 3.4).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from brski import oids
from brski.cose_voucher import (
    ALGORITHMS,
    MAX_CARRIED_CERTS,
    SignablePayload,
    algorithm_for_key,
    load_certificate,
    model_from_obj,
    sign_bytes,
    verify_bytes,
)
from brski.errors import MalformedInput, PayloadTooLarge, SignatureInvalid, VoucherInvalid
from brski.sid import VOUCHER, VOUCHER_REQUEST

if TYPE_CHECKING:
    from brski.artifact import SignedArtifact
    from brski.pki import PrivateKey
    from brski.voucher import Voucher, VoucherRequest

__all__ = ["JWS_TYP", "MAX_JSON_DEPTH", "MAX_SIZE", "parse_json", "sign", "verify", "verify_jws"]

JWS_TYP = "voucher-jws+json"
MAX_SIZE = 65536
# A JWS envelope is 3 deep, a voucher 2 (3 with an extension list).
MAX_JSON_DEPTH = 16
_B64URL = re.compile(r"[A-Za-z0-9_-]*")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: Any, what: str) -> bytes:
    """Strict base64url without padding (RFC 7515 section 2)."""
    if not isinstance(text, str) or not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise MalformedInput(f"{what} is not unpadded base64url", check="jws.base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _check_json_depth(text: str, max_depth: int) -> None:
    """Refuse JSON nested deeper than ``max_depth`` before ``json.loads`` recurses."""
    depth = 0
    in_string = False
    escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > max_depth:
                raise MalformedInput(f"JSON nested deeper than {max_depth}", check="json.depth")
        elif ch in "]}":
            depth -= 1


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise MalformedInput(f"duplicate JSON member {key!r}", check="json.duplicate-member")
        out[key] = value
    return out


def _no_constants(name: str) -> Any:
    raise MalformedInput(f"JSON constant {name} is not allowed", check="json.constant")


def parse_json(data: bytes, *, max_size: int = MAX_SIZE, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse untrusted UTF-8 JSON with size, depth and duplicate-name limits."""
    if len(data) > max_size:
        raise PayloadTooLarge(f"JSON of {len(data)} bytes exceeds {max_size}", check="json.size")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedInput("JSON is not UTF-8", check="json.utf8") from exc
    _check_json_depth(text, max_depth)
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except (ValueError, RecursionError) as exc:
        if isinstance(exc, MalformedInput):
            raise
        raise MalformedInput(f"not JSON: {exc}", check="json.syntax") from exc


# --- signing ----------------------------------------------------------------------


def sign(
    payload: SignablePayload,
    *,
    key: PrivateKey,
    cert: x509.Certificate,
    chain: Sequence[x509.Certificate] = (),
) -> bytes:
    """A General JSON Serialization JWS over ``payload``'s JSON form."""
    alg = algorithm_for_key(key, rsa_family="rsa-pkcs1")
    header = {
        "alg": alg.jose,
        "typ": JWS_TYP,
        "x5c": [
            base64.b64encode(c.public_bytes(Encoding.DER)).decode("ascii") for c in (cert, *chain)
        ],
    }
    body = json.dumps(payload.to_obj(), separators=(",", ":"), sort_keys=True).encode("utf-8")
    protected_b64 = _b64url(json.dumps(header, separators=(",", ":")).encode("utf-8"))
    payload_b64 = _b64url(body)
    signature = sign_bytes(alg, key, f"{protected_b64}.{payload_b64}".encode("ascii"))
    envelope = {
        "payload": payload_b64,
        "signatures": [{"protected": protected_b64, "signature": _b64url(signature)}],
    }
    return json.dumps(envelope, separators=(",", ":")).encode("utf-8")


# --- verification -----------------------------------------------------------------


def _one_signature(envelope: Any) -> tuple[str, dict[str, Any], str]:
    """(protected_b64, unprotected header, signature_b64) of the only signature."""
    if not isinstance(envelope, dict):
        raise MalformedInput("a JWS JSON serialization is an object", check="jws.structure")
    flattened_members = {"protected", "header", "signature"} & set(envelope)
    if "signatures" in envelope:
        if flattened_members:
            raise MalformedInput("JWS mixes general and flattened members", check="jws.structure")
        sigs = envelope["signatures"]
        if not isinstance(sigs, list):
            raise MalformedInput("JWS signatures must be an array", check="jws.structure")
        if len(sigs) != 1:
            raise SignatureInvalid(
                f"a voucher carries exactly one signature, not {len(sigs)}",
                check="jws.signature-count",
            )
        entry = sigs[0]
        if not isinstance(entry, dict):
            raise MalformedInput("a JWS signature is an object", check="jws.structure")
    else:
        entry = envelope
    protected = entry.get("protected")
    signature = entry.get("signature")
    header = entry.get("header", {})
    if not isinstance(protected, str) or not isinstance(signature, str):
        raise MalformedInput("JWS protected and signature must be strings", check="jws.structure")
    if not isinstance(header, dict):
        raise MalformedInput("a JWS unprotected header is an object", check="jws.structure")
    return protected, header, signature


def _check_header(protected: dict[str, Any], unprotected: dict[str, Any]) -> str:
    """Apply the header rules; return the alg name."""
    overlap = set(protected) & set(unprotected)
    if overlap:
        raise MalformedInput(
            f"JWS header names {sorted(overlap)} appear twice", check="jws.header-duplicate"
        )
    if "crit" in protected or "crit" in unprotected:
        raise SignatureInvalid(
            "JWS crit names extensions this verifier does not implement", check="jws.crit"
        )
    if "alg" not in protected:
        raise SignatureInvalid("JWS alg must be in the protected header", check="jws.alg-protected")
    alg = protected["alg"]
    if not isinstance(alg, str):
        raise MalformedInput("JWS alg must be a string", check="jws.alg")
    if alg.lower() == "none":
        raise SignatureInvalid('JWS "alg": "none" is never accepted', check="jws.alg-none")
    typ = protected.get("typ", unprotected.get("typ"))
    if typ is not None:
        if not isinstance(typ, str) or typ.lower().removeprefix("application/") != JWS_TYP:
            raise MalformedInput(f"JWS typ {typ!r} is not {JWS_TYP}", check="jws.typ")
    return alg


def _x5c(value: Any) -> list[x509.Certificate]:
    if not isinstance(value, list) or not value or len(value) > MAX_CARRIED_CERTS:
        raise MalformedInput(f"x5c must list 1..{MAX_CARRIED_CERTS} certificates", check="jws.x5c")
    certs = []
    for item in value:
        if not isinstance(item, str):
            raise MalformedInput("x5c entries are base64 strings", check="jws.x5c")
        try:
            # RFC 7515 section 4.1.6: standard base64, not base64url.
            der = base64.b64decode(item.encode("ascii"), validate=True)
        except (binascii.Error, ValueError, UnicodeEncodeError) as exc:
            raise MalformedInput("x5c entry is not standard base64", check="jws.x5c") from exc
        certs.append(load_certificate(der, where="jws.x5c"))
    return certs


def verify_jws(
    raw: bytes,
    *,
    candidates: Sequence[x509.Certificate] = (),
    max_size: int = MAX_SIZE,
) -> tuple[bytes, x509.Certificate, tuple[x509.Certificate, ...]]:
    """Check the single JWS signature; return (payload bytes, signer, x5c certs).

    With ``x5c`` the signer is its first certificate (RFC 7515 section
    4.1.6), and nothing else is tried; without it, ``candidates`` are.
    """
    envelope = parse_json(raw, max_size=max_size)
    protected_b64, unprotected, signature_b64 = _one_signature(envelope)
    payload_b64 = envelope.get("payload")
    if not isinstance(payload_b64, str):
        raise MalformedInput(
            "JWS payload must be a string (detached is not used)", check="jws.structure"
        )
    protected = parse_json(_b64url_decode(protected_b64, "JWS protected header"), max_size=max_size)
    if not isinstance(protected, dict):
        raise MalformedInput("the JWS protected header is an object", check="jws.structure")
    alg_name = _check_header(protected, unprotected)
    alg = next((a for a in ALGORITHMS if a.jose == alg_name), None)
    if alg is None:
        raise SignatureInvalid(f"JWS alg {alg_name!r} is not supported", check="jws.alg")
    signature = _b64url_decode(signature_b64, "JWS signature")
    payload = _b64url_decode(payload_b64, "JWS payload")

    x5c_value = protected.get("x5c", unprotected.get("x5c"))
    carried = _x5c(x5c_value) if x5c_value is not None else []
    pool = carried[:1] if carried else list(candidates)
    if not pool:
        raise SignatureInvalid("no certificate to verify the JWS with", check="jws.no-signer")
    signing_input = f"{protected_b64}.{payload_b64}".encode("ascii")
    for cert in pool:
        if verify_bytes(alg, cert, signing_input, signature):
            return payload, cert, tuple(carried)
    raise SignatureInvalid("the JWS signature does not verify", check="jws.signature")


def verify(
    raw: bytes,
    *,
    kind: type[Voucher] | type[VoucherRequest],
    extra_certs: Sequence[x509.Certificate] = (),
) -> SignedArtifact:
    """Verify the signature, then parse the payload JSON into ``kind``."""
    from brski.artifact import SignedArtifact
    from brski.voucher import VoucherRequest

    payload, signer, certs = verify_jws(raw, candidates=extra_certs)
    obj = parse_json(payload)
    expected = VOUCHER_REQUEST if issubclass(kind, VoucherRequest) else VOUCHER
    if not isinstance(obj, dict) or set(obj) != {expected}:
        raise VoucherInvalid(
            f"the JWS payload must be a {expected} object", check="jws.payload-kind"
        )
    model = model_from_obj(kind, obj)
    return SignedArtifact(
        media_type=oids.MT_VOUCHER_JWS_JSON,
        raw=bytes(raw),
        payload=model,
        signer=signer,
        certificates=certs,
    )
