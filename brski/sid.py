"""YANG-CBOR (RFC 9254) mapping of the ietf-voucher and ietf-voucher-request data.

The rest of the project speaks the JSON form of a voucher (RFC 7951 / RFC
8366bis): ``{"ietf-voucher:voucher": {"serial-number": ..., ...}}`` with
binary leaves as base64 strings and the assertion as its enum name. A
COSE-signed voucher (draft-ietf-anima-constrained-voucher) carries the CBOR
form instead; this module converts between the two so that ``brski.voucher``
keeps a single model and a single set of validation rules.

CBOR form, per RFC 9254 and the SID values of draft-ietf-anima-rfc8366bis
(ietf-voucher@2025-12-18.sid, ietf-voucher-request@2025-12-18.sid):

* the top-level key is the container SID (2451 voucher, 2501 voucher-request);
* member keys are SID *deltas* from the container SID (RFC 9254 section 3.2),
  or an absolute SID under tag 47, or the plain leaf name (RFC 9254 allows
  names, and the constrained-voucher draft section 9 says a receiver MUST
  assume SIDs and names may be mixed);
* ``binary`` leaves are byte strings, ``date-and-time``/``string``/``uri``
  leaves text, ``boolean`` a CBOR boolean, and the ``assertion`` enumeration
  its integer value (0 verified, 1 logged, 2 proximity, 3 agent-proximity;
  RFC 8366bis "CBOR integers for the 'assertion' Attribute enum value").

Anything that does not fit this mapping is refused with
:class:`brski.errors.VoucherInvalid` (``check="sid.*"``): a voucher-request
that a newer peer extended with a leaf we cannot name cannot be re-encoded
faithfully into the model, and guessing would change what was signed.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import cbor2

from brski.cbor import DEFAULT_MAX_DEPTH, DEFAULT_MAX_SIZE, Tagged, decode_cbor
from brski.errors import MalformedInput, VoucherInvalid

__all__ = [
    "ASSERTION_VALUES",
    "SID_VOUCHER",
    "SID_VOUCHER_REQUEST",
    "VOUCHER",
    "VOUCHER_REQUEST",
    "LeafType",
    "SidModule",
    "cbor_to_json",
    "decode_payload",
    "encode_payload",
    "json_to_cbor",
    "module_for",
]

VOUCHER = "ietf-voucher:voucher"
VOUCHER_REQUEST = "ietf-voucher-request:voucher"
SID_VOUCHER = 2451
SID_VOUCHER_REQUEST = 2501
# RFC 9254 section 4.2.1: tag 47 marks an absolute SID used as a map key.
TAG_ABSOLUTE_SID = 47

LeafType = Literal[
    "binary", "opaque", "string", "date-and-time", "boolean", "assertion", "extensions"
]
_OWN_MODULES = frozenset({"ietf-voucher", "ietf-voucher-request"})

# RFC 8366bis, YANG enumeration "assertion" values.
ASSERTION_VALUES: Mapping[str, int] = {
    "verified": 0,
    "logged": 1,
    "proximity": 2,
    "agent-proximity": 3,
}
_ASSERTION_NAMES = {v: k for k, v in ASSERTION_VALUES.items()}

# Leaves shared by both modules (grouping voucher-artifact), with their YANG
# types. "uri" is a string subtype and travels as text.
_COMMON_TYPES: Mapping[str, LeafType] = {
    "assertion": "assertion",
    "created-on": "date-and-time",
    "domain-cert-revocation-checks": "boolean",
    "expires-on": "date-and-time",
    "idevid-issuer": "binary",
    "last-renewal-date": "date-and-time",
    "nonce": "binary",
    "pinned-domain-cert": "binary",
    "pinned-domain-pubk": "binary",
    "pinned-domain-pubk-sha256": "binary",
    "serial-number": "string",
    "additional-configuration-url": "string",
    "est-domain": "string",
    # rfc8366bis "Manufacturer Proprietary Extensions": a bstr in CBOR, any
    # string in JSON with base64url RECOMMENDED, which is what we emit.
    "manufacturer-private": "opaque",
    "extensions": "extensions",
}
_REQUEST_TYPES: Mapping[str, LeafType] = {
    **_COMMON_TYPES,
    "prior-signed-voucher-request": "binary",
    "proximity-registrar-cert": "binary",
    "proximity-registrar-pubk": "binary",
    "proximity-registrar-pubk-sha256": "binary",
    "agent-provided-proximity-registrar-cert": "binary",
    "agent-sign-cert": "binary",
    "agent-signed-data": "binary",
}

# ietf-voucher@2025-12-18.sid
_VOUCHER_SIDS: Mapping[str, int] = {
    "assertion": 2452,
    "created-on": 2453,
    "domain-cert-revocation-checks": 2454,
    "expires-on": 2455,
    "idevid-issuer": 2456,
    "last-renewal-date": 2457,
    "nonce": 2458,
    "pinned-domain-cert": 2459,
    "pinned-domain-pubk": 2460,
    "pinned-domain-pubk-sha256": 2461,
    "serial-number": 2462,
    "additional-configuration-url": 2463,
    "est-domain": 2464,
    "manufacturer-private": 2465,
    "extensions": 2466,
}
# ietf-voucher-request@2025-12-18.sid
_REQUEST_SIDS: Mapping[str, int] = {
    "assertion": 2502,
    "created-on": 2503,
    "domain-cert-revocation-checks": 2504,
    "expires-on": 2505,
    "idevid-issuer": 2506,
    "last-renewal-date": 2507,
    "nonce": 2508,
    "pinned-domain-cert": 2509,
    "prior-signed-voucher-request": 2510,
    "proximity-registrar-cert": 2511,
    "proximity-registrar-pubk-sha256": 2512,
    "proximity-registrar-pubk": 2513,
    "serial-number": 2514,
    "agent-provided-proximity-registrar-cert": 2515,
    "agent-sign-cert": 2516,
    "agent-signed-data": 2517,
    "pinned-domain-pubk": 2518,
    "pinned-domain-pubk-sha256": 2519,
    "additional-configuration-url": 2520,
    "est-domain": 2521,
    "extensions": 2522,
    "manufacturer-private": 2523,
}


@dataclass(frozen=True, kw_only=True)
class SidModule:
    """One YANG structure: its JSON container name, container SID and leaves."""

    name: str
    sid: int
    leaf_sids: Mapping[str, int]
    leaf_types: Mapping[str, LeafType]

    def __post_init__(self) -> None:
        # The two tables must describe the same leaves; a typo here would
        # silently drop a leaf on one side of the conversion.
        if set(self.leaf_sids) != set(self.leaf_types):
            raise AssertionError(f"SID and type tables disagree for {self.name}")

    def name_for_sid(self, sid: int) -> str | None:
        for leaf, leaf_sid in self.leaf_sids.items():
            if leaf_sid == sid:
                return leaf
        return None


_MODULES = (
    SidModule(name=VOUCHER, sid=SID_VOUCHER, leaf_sids=_VOUCHER_SIDS, leaf_types=_COMMON_TYPES),
    SidModule(
        name=VOUCHER_REQUEST,
        sid=SID_VOUCHER_REQUEST,
        leaf_sids=_REQUEST_SIDS,
        leaf_types=_REQUEST_TYPES,
    ),
)


def module_for(container: str | int) -> SidModule:
    """The module whose container is named (JSON) or numbered (SID) ``container``."""
    for module in _MODULES:
        if container in (module.name, module.sid) and not isinstance(container, bool):
            return module
    raise VoucherInvalid(f"unknown voucher container {container!r}", check="sid.container")


# --- JSON form -> CBOR form -------------------------------------------------------


def json_to_cbor(obj: Mapping[str, Any]) -> dict[int, dict[int | str, Any]]:
    """Convert the JSON-form voucher dict (``Voucher.to_obj()``) to its SID form.

    Raises :class:`VoucherInvalid` for leaves the SID tables do not name, since
    dropping one would sign something other than what the caller built.
    """
    if not isinstance(obj, Mapping) or len(obj) != 1:
        raise VoucherInvalid("a voucher has exactly one top-level container", check="sid.container")
    ((container, members),) = obj.items()
    module = module_for(container)
    if not isinstance(members, Mapping):
        raise VoucherInvalid("the voucher container must be an object", check="sid.container")
    out: dict[int | str, Any] = {}
    for leaf, value in members.items():
        sid = module.leaf_sids.get(leaf)
        if sid is not None:
            out[sid - module.sid] = _json_leaf_to_cbor(leaf, module.leaf_types[leaf], value)
        elif _is_foreign_member(leaf):
            # An extension module's member (rfc8366bis "Voucher Extensions").
            # Its SID is unknown here, so it keeps its name key (RFC 9254
            # allows names; the draft says receivers must accept a mix).
            out[leaf] = _check_json_data(value, leaf, 0)
        else:
            raise VoucherInvalid(
                f"leaf {leaf!r} has no SID in {module.name}", check="sid.unknown-leaf"
            )
    return {module.sid: out}


def _is_foreign_member(name: str) -> bool:
    module, sep, rest = name.partition(":")
    return bool(sep) and bool(module) and bool(rest) and module not in _OWN_MODULES


def _check_json_data(value: Any, where: str, depth: int) -> Any:
    """Extension data must survive both codecs: JSON types only, bounded depth."""
    if depth > DEFAULT_MAX_DEPTH:
        raise VoucherInvalid(f"{where} nests too deep", check="sid.extension")
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    if isinstance(value, list | tuple):
        return [_check_json_data(v, where, depth + 1) for v in value]
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        return {k: _check_json_data(v, where, depth + 1) for k, v in value.items()}
    raise VoucherInvalid(f"{where} holds data JSON cannot carry", check="sid.extension")


def _json_leaf_to_cbor(leaf: str, kind: LeafType, value: Any) -> Any:
    if kind == "binary":
        if not isinstance(value, str):
            raise VoucherInvalid(f"{leaf} must be a base64 string", check="sid.leaf-type")
        return _b64decode(leaf, value)
    if kind == "opaque":
        if not isinstance(value, str):
            raise VoucherInvalid(f"{leaf} must be a string", check="sid.leaf-type")
        return _b64decode(leaf, value)
    if kind == "assertion":
        if value not in ASSERTION_VALUES:
            raise VoucherInvalid(f"unknown assertion {value!r}", check="sid.assertion")
        return ASSERTION_VALUES[value]
    if kind == "boolean":
        if not isinstance(value, bool):
            raise VoucherInvalid(f"{leaf} must be a boolean", check="sid.leaf-type")
        return value
    if kind == "extensions":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise VoucherInvalid("extensions must be a list of names", check="sid.leaf-type")
        return list(value)
    if not isinstance(value, str):
        raise VoucherInvalid(f"{leaf} must be a string", check="sid.leaf-type")
    return value


def _b64decode(leaf: str, text: str) -> bytes:
    """Standard base64 as RFC 7951 writes binary; base64url also accepted.

    RFC 8995 Appendix C writes the nonce in base64url, so the model accepts
    both; mirroring that keeps the two layers in agreement.
    """
    padded = text + "=" * (-len(text) % 4)
    try:
        if "-" in text or "_" in text:
            return base64.urlsafe_b64decode(padded.encode("ascii"))
        return base64.b64decode(padded.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError) as exc:
        raise VoucherInvalid(f"{leaf} is not valid base64", check="sid.base64") from exc


# --- CBOR form -> JSON form -------------------------------------------------------


def cbor_to_json(obj: Any, *, container: str | None = None) -> dict[str, dict[str, Any]]:
    """Convert a decoded SID-form (or name-keyed CBOR) voucher to the JSON form.

    ``container`` (``VOUCHER`` or ``VOUCHER_REQUEST``), when given, is the only
    top-level container accepted: a voucher-request must not be taken for a
    voucher just because it verifies.
    """
    if not isinstance(obj, dict) or len(obj) != 1:
        raise VoucherInvalid("a voucher has exactly one top-level container", check="sid.container")
    ((key, members),) = obj.items()
    if isinstance(key, Tagged) and key.tag == TAG_ABSOLUTE_SID:
        key = key.value
    if not isinstance(key, int | str) or isinstance(key, bool):
        raise VoucherInvalid("the top-level key must be a SID or a name", check="sid.container")
    module = module_for(key)
    if container is not None and module.name != container:
        raise VoucherInvalid(
            f"expected {container}, found {module.name}", check="sid.container-kind"
        )
    if not isinstance(members, dict):
        raise VoucherInvalid("the voucher container must be a map", check="sid.container")
    out: dict[str, Any] = {}
    for member_key, value in members.items():
        if isinstance(member_key, str) and _is_foreign_member(member_key):
            out[member_key] = _check_json_data(value, member_key, 0)
            continue
        leaf = _leaf_name(module, member_key)
        if leaf in out:
            raise VoucherInvalid(f"leaf {leaf!r} appears twice", check="sid.duplicate-leaf")
        out[leaf] = _cbor_leaf_to_json(leaf, module.leaf_types[leaf], value)
    return {module.name: out}


def _leaf_name(module: SidModule, key: Any) -> str:
    if isinstance(key, str):
        # A name key may be qualified with its own module (RFC 7951 style).
        prefix, sep, rest = key.partition(":")
        bare = rest if sep and prefix in _OWN_MODULES else key
        if bare in module.leaf_types:
            return bare
        raise VoucherInvalid(f"unknown leaf name {key!r}", check="sid.unknown-leaf")
    if isinstance(key, Tagged) and key.tag == TAG_ABSOLUTE_SID:
        sid = key.value
    elif isinstance(key, int) and not isinstance(key, bool):
        sid = module.sid + key
    else:
        raise VoucherInvalid(f"unusable member key {key!r}", check="sid.key-type")
    if not isinstance(sid, int) or isinstance(sid, bool):
        raise VoucherInvalid("an absolute SID must be an integer", check="sid.key-type")
    leaf = module.name_for_sid(sid)
    if leaf is None:
        raise VoucherInvalid(f"SID {sid} is not a leaf of {module.name}", check="sid.unknown-leaf")
    return leaf


def _cbor_leaf_to_json(leaf: str, kind: LeafType, value: Any) -> Any:
    if kind == "binary":
        if not isinstance(value, bytes):
            raise VoucherInvalid(f"{leaf} must be a byte string", check="sid.leaf-type")
        return base64.b64encode(value).decode("ascii")
    if kind == "opaque":
        if not isinstance(value, bytes):
            raise VoucherInvalid(f"{leaf} must be a byte string", check="sid.leaf-type")
        return base64.urlsafe_b64encode(value).rstrip(b"=").decode("ascii")
    if kind == "assertion":
        # RFC 9254 section 6.6: an enumeration is its integer value.
        if not isinstance(value, int) or isinstance(value, bool) or value not in _ASSERTION_NAMES:
            raise VoucherInvalid(
                f"assertion {value!r} is not a known enum value", check="sid.assertion"
            )
        return _ASSERTION_NAMES[value]
    if kind == "boolean":
        if not isinstance(value, bool):
            raise VoucherInvalid(f"{leaf} must be a boolean", check="sid.leaf-type")
        return value
    if kind == "extensions":
        # JSON names extensions by module name, CBOR usually by SID; without
        # a registry of extension SIDs only the name form can be carried over.
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise VoucherInvalid("only name-form extensions are supported", check="sid.extensions")
        return list(value)
    if not isinstance(value, str):
        raise VoucherInvalid(f"{leaf} must be a text string", check="sid.leaf-type")
    return value


# --- bytes ------------------------------------------------------------------------


def encode_payload(obj: Mapping[str, Any]) -> bytes:
    """The SID-form CBOR bytes of a JSON-form voucher dict (deterministic)."""
    return cbor2.dumps(json_to_cbor(obj), canonical=True)


def decode_payload(
    data: bytes,
    *,
    container: str | None = None,
    max_size: int = DEFAULT_MAX_SIZE,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> dict[str, dict[str, Any]]:
    """Decode untrusted CBOR voucher bytes into the JSON-form dict.

    Only tag 47 (absolute SID keys) is admitted: date-and-time is text in
    YANG-CBOR, so a tag 0/1 date is an encoding error, not a leniency.
    """
    decoded = decode_cbor(
        data, max_size=max_size, max_depth=max_depth, allowed_tags=(TAG_ABSOLUTE_SID,)
    )
    if not isinstance(decoded, dict):
        raise MalformedInput("a CBOR voucher must be a map", check="sid.container")
    return cbor_to_json(decoded, container=container)
