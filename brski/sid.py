"""YANG-CBOR (RFC 9254) mapping of the ietf-voucher and ietf-voucher-request data.

The rest of the project speaks the JSON form of a voucher (RFC 7951 / RFC
8366bis): ``{"ietf-voucher:voucher": {"serial-number": ..., ...}}`` with
binary leaves as base64 strings and the assertion as its enum name. A
COSE-signed voucher (draft-ietf-anima-constrained-voucher) carries the CBOR
form instead; this module converts between the two so that ``brski.voucher``
keeps a single model and a single set of validation rules.

CBOR form, per RFC 9254 and the SID values of draft-ietf-anima-rfc8366bis
(ietf-voucher@2025-12-18.sid, ietf-voucher-request@2025-12-18.sid), which,
like every leaf's YANG type, are declared once in :mod:`brski.voucher_model`:

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
from typing import Any

import cbor2

from brski import voucher_model
from brski.cbor import DEFAULT_MAX_DEPTH, DEFAULT_MAX_SIZE, Tagged, decode_cbor
from brski.errors import MalformedInput, VoucherInvalid
from brski.voucher_model import ASSERTION_CBOR, OWN_MODULES, CborType, Leaf, Structure

__all__ = [
    "SID_VOUCHER",
    "SID_VOUCHER_REQUEST",
    "VOUCHER",
    "VOUCHER_REQUEST",
    "cbor_to_json",
    "decode_payload",
    "encode_payload",
    "json_to_cbor",
    "module_for",
]

VOUCHER = voucher_model.VOUCHER.container
VOUCHER_REQUEST = voucher_model.REQUEST.container
SID_VOUCHER = voucher_model.VOUCHER.sid
SID_VOUCHER_REQUEST = voucher_model.REQUEST.sid
# RFC 9254 section 4.2.1: tag 47 marks an absolute SID used as a map key.
TAG_ABSOLUTE_SID = 47

_ASSERTION_VALUES: Mapping[str, int] = {str(a): n for a, n in ASSERTION_CBOR.items()}
_ASSERTION_NAMES = {n: str(a) for a, n in ASSERTION_CBOR.items()}


def module_for(container: str | int) -> Structure:
    """The structure whose container is named (JSON) or numbered (SID) ``container``.

    The structures, their leaves and SIDs come from brski.voucher_model.
    """
    for module in voucher_model.STRUCTURES:
        if container in (module.container, module.sid) and not isinstance(container, bool):
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
    for name, value in members.items():
        leaf = module.by_name.get(name)
        if leaf is not None:
            out[module.leaf_sid(leaf) - module.sid] = _json_leaf_to_cbor(
                name, leaf.cbor_type, value
            )
        elif _is_foreign_member(name):
            # An extension module's member (rfc8366bis "Voucher Extensions").
            # Its SID is unknown here, so it keeps its name key (RFC 9254
            # allows names; the draft says receivers must accept a mix).
            out[name] = _check_json_data(value, name, 0)
        else:
            raise VoucherInvalid(
                f"leaf {name!r} has no SID in {module.container}", check="sid.unknown-leaf"
            )
    return {module.sid: out}


def _is_foreign_member(name: str) -> bool:
    module, sep, rest = name.partition(":")
    return bool(sep) and bool(module) and bool(rest) and module not in OWN_MODULES


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


def _json_leaf_to_cbor(leaf: str, kind: CborType, value: Any) -> Any:
    if kind == "binary":
        if not isinstance(value, str):
            raise VoucherInvalid(f"{leaf} must be a base64 string", check="sid.leaf-type")
        return _b64decode(leaf, value)
    if kind == "opaque":
        if not isinstance(value, str):
            raise VoucherInvalid(f"{leaf} must be a string", check="sid.leaf-type")
        return _b64decode(leaf, value)
    if kind == "assertion":
        if value not in _ASSERTION_VALUES:
            raise VoucherInvalid(f"unknown assertion {value!r}", check="sid.assertion")
        return _ASSERTION_VALUES[value]
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
    if container is not None and module.container != container:
        raise VoucherInvalid(
            f"expected {container}, found {module.container}", check="sid.container-kind"
        )
    if not isinstance(members, dict):
        raise VoucherInvalid("the voucher container must be a map", check="sid.container")
    out: dict[str, Any] = {}
    for member_key, value in members.items():
        if isinstance(member_key, str) and _is_foreign_member(member_key):
            out[member_key] = _check_json_data(value, member_key, 0)
            continue
        leaf = _leaf_for(module, member_key)
        if leaf.name in out:
            raise VoucherInvalid(f"leaf {leaf.name!r} appears twice", check="sid.duplicate-leaf")
        out[leaf.name] = _cbor_leaf_to_json(leaf.name, leaf.cbor_type, value)
    return {module.container: out}


def _leaf_for(module: Structure, key: Any) -> Leaf:
    if isinstance(key, str):
        # A name key may be qualified with its own module (RFC 7951 style).
        prefix, sep, rest = key.partition(":")
        bare = rest if sep and prefix in OWN_MODULES else key
        by_name = module.by_name.get(bare)
        if by_name is not None:
            return by_name
        raise VoucherInvalid(f"unknown leaf name {key!r}", check="sid.unknown-leaf")
    if isinstance(key, Tagged) and key.tag == TAG_ABSOLUTE_SID:
        sid = key.value
    elif isinstance(key, int) and not isinstance(key, bool):
        sid = module.sid + key
    else:
        raise VoucherInvalid(f"unusable member key {key!r}", check="sid.key-type")
    if not isinstance(sid, int) or isinstance(sid, bool):
        raise VoucherInvalid("an absolute SID must be an integer", check="sid.key-type")
    leaf = module.by_sid.get(sid)
    if leaf is None:
        raise VoucherInvalid(
            f"SID {sid} is not a leaf of {module.container}", check="sid.unknown-leaf"
        )
    return leaf


def _cbor_leaf_to_json(leaf: str, kind: CborType, value: Any) -> Any:
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
