"""The voucher and voucher-request YANG data as Python objects, with their JSON codec.

The model itself (every leaf, its type, SIDs, which structure holds it, what
is mandatory) is declared once in :mod:`brski.voucher_model`, after RFC 8366
section 5.3, RFC 8995 section 3.4 and draft-ietf-anima-rfc8366bis; this
module reads that table for the JSON names, order and checks.

Why a hand-written codec rather than ``json.loads`` and a dict: the bytes come
from the network, the MASA signs whatever the object says, and a pledge trusts
what it decodes. So the parser is strict where ambiguity could let two
implementations read different things into one signed payload (duplicate keys,
strings where booleans belong, unknown leaves), bounded before it does any work
(size, nesting), and lenient only where deployed peers are known to deviate
(the base64url nonce of RFC 8995 Appendix C, ``-04:00`` offsets).

Both classes validate on construction, so a MASA cannot build a voucher it
would itself refuse to parse, and ``from_obj`` goes through the constructor.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Mapping
from dataclasses import MISSING, Field, dataclass, field, fields
from datetime import datetime
from types import MappingProxyType
from typing import Any, ClassVar, Self, TypeVar

from brski.errors import MalformedInput, PayloadTooLarge, VoucherInvalid
from brski.voucher_model import OWN_MODULES, REQUEST, VOUCHER, Assertion, Structure
from brski.voucher_values import decode_leaf, encode_leaf, normalise

__all__ = [
    "MAX_JSON_DEPTH",
    "MAX_JSON_SIZE",
    "VOUCHER_CONTAINER",
    "VOUCHER_REQUEST_CONTAINER",
    "Assertion",
    "Voucher",
    "VoucherRequest",
    "declared",
]

MAX_JSON_SIZE = 65536
MAX_JSON_DEPTH = 16

VOUCHER_CONTAINER = VOUCHER.container
VOUCHER_REQUEST_CONTAINER = REQUEST.container


# RFC 7950 section 6.2 identifier; an extension member is "module:name" (RFC 7951 section 4).
_IDENT = r"[A-Za-z_][A-Za-z0-9_.-]*"
_QUALIFIED_RE = re.compile(rf"({_IDENT}):({_IDENT})")


# --- the bytes-level guards ------------------------------------------------------


def _check_depth(data: bytes, prefix: str) -> None:
    """Refuse nesting deeper than MAX_JSON_DEPTH before ``json`` recurses into it.

    A linear scan that tracks string state, so ``"[[[["`` inside a string
    does not count and a million ``[`` cannot reach the recursive parser.
    """
    # Nesting can never exceed the number of openers, and counting them runs
    # in C: a voucher has two or three (base64 has neither bracket), so the
    # byte-by-byte scan below (~0.1 ms per voucher-request) runs only for
    # input that could be too deep.
    if data.count(b"[") + data.count(b"{") <= MAX_JSON_DEPTH:
        return
    depth = 0
    in_string = False
    escaped = False
    for byte in data:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > MAX_JSON_DEPTH:
                raise MalformedInput(
                    f"JSON nesting deeper than {MAX_JSON_DEPTH}", check=f"{prefix}.json-depth"
                )
        elif byte in (0x5D, 0x7D):
            depth -= 1


def _load_json(data: bytes, prefix: str) -> Any:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise MalformedInput("JSON input must be bytes", check=f"{prefix}.json")
    data = bytes(data)
    if len(data) > MAX_JSON_SIZE:
        raise PayloadTooLarge(
            f"{len(data)} bytes of JSON exceeds {MAX_JSON_SIZE}", check=f"{prefix}.size"
        )
    _check_depth(data, prefix)

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in items:
            if key in out:
                # Two parsers could keep different copies of a duplicated member
                # of a signed payload; RFC 8259 section 4 leaves that undefined.
                raise MalformedInput(
                    f"duplicate JSON member {key[:64]!r}", check=f"{prefix}.duplicate-key"
                )
            out[key] = value
        return out

    def no_constant(name: str) -> Any:
        raise MalformedInput(f"{name} is not JSON (RFC 8259)", check=f"{prefix}.json")

    try:
        text = data.decode("utf-8")  # RFC 8259 section 8.1
        return json.loads(text, object_pairs_hook=pairs, parse_constant=no_constant)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
        raise MalformedInput(f"not valid JSON: {exc}", check=f"{prefix}.json") from None


# --- extension members (rfc8366bis "Voucher Extensions") -------------------------


def _check_text(value: str, where: str, prefix: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise VoucherInvalid(f"{where} holds a lone surrogate", check=f"{prefix}.string") from None


def _freeze_json(value: Any, where: str, prefix: str, depth: int) -> Any:
    """Check an extension value is plain JSON data (bounded depth) and freeze it."""
    if depth > MAX_JSON_DEPTH:
        raise VoucherInvalid(f"{where} nests too deep", check=f"{prefix}.extension")
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise VoucherInvalid(f"{where} holds a non-finite number", check=f"{prefix}.extension")
        return value
    if isinstance(value, str):
        _check_text(value, where, prefix)
        return value
    if isinstance(value, list | tuple):
        return tuple(_freeze_json(v, where, prefix, depth + 1) for v in value)
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise VoucherInvalid(f"{where} has a non-string key", check=f"{prefix}.extension")
            _check_text(k, where, prefix)
            out[k] = _freeze_json(v, where, prefix, depth + 1)
        return MappingProxyType(out)
    raise VoucherInvalid(
        f"{where} holds a {type(value).__name__}, not JSON data", check=f"{prefix}.extension"
    )


def _thaw_json(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_thaw_json(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _thaw_json(v) for k, v in value.items()}
    return value


def _check_extension_key(key: str, prefix: str) -> None:
    m = _QUALIFIED_RE.fullmatch(key)
    if m is None or m.group(1) in OWN_MODULES:
        # RFC 7951 section 4: members of the container's own module are
        # unqualified, so only another module's qualified member is an extension
        # (rfc8366bis "Voucher Extensions", e.g. "extension:example-my-extension").
        raise VoucherInvalid(
            f"unknown leaf {key[:64]!r}", check=f"{prefix}.unknown-leaf", leaf=key[:64]
        )


# --- the shared codec ------------------------------------------------------------


class _Codec:
    """JSON codec shared by Voucher and VoucherRequest, driven by the leaf tables."""

    _MODEL: ClassVar[Structure]
    extensions: Mapping[str, object]

    def _validate_common(self) -> None:
        prefix = self._MODEL.check_prefix
        for leaf in self._MODEL.mandatory:
            if getattr(self, leaf.attr) is None:
                raise VoucherInvalid(
                    f"mandatory leaf {leaf.name} is missing",
                    check=f"{prefix}.mandatory",
                    leaf=leaf.name,
                )
        present: set[str] = set()
        for leaf in self._MODEL.leaves:
            value = getattr(self, leaf.attr)
            if value is None or (leaf.kind == "names" and value == ()):
                continue
            value = normalise(leaf, value, prefix)
            object.__setattr__(self, leaf.attr, value)
            if value not in (None, ()):
                present.add(leaf.name)
        if not isinstance(self.extensions, Mapping):
            raise VoucherInvalid("extensions must be a mapping", check=f"{prefix}.type")
        frozen: dict[str, Any] = {}
        for key, value in self.extensions.items():
            if not isinstance(key, str):
                raise VoucherInvalid("extension key is not a string", check=f"{prefix}.type")
            _check_extension_key(key, prefix)
            frozen[key] = _freeze_json(value, key, prefix, 1)
        object.__setattr__(self, "extensions", MappingProxyType(frozen))
        # The YANG "must" statements (RFC 8366 section 5.3), declared in the model.
        for must in self._MODEL.musts:
            if must.violated(present):
                raise VoucherInvalid(must.message, check=f"{prefix}.{must.check}")

    def to_obj(self) -> dict[str, Any]:
        """The RFC 7951 JSON-form dict, members in YANG order, extensions last (sorted)."""
        body: dict[str, Any] = {}
        for leaf in self._MODEL.leaves:
            value = getattr(self, leaf.attr)
            if value is None or (leaf.kind == "names" and not value):
                continue
            body[leaf.name] = encode_leaf(leaf, value)
        for key in sorted(self.extensions):
            body[key] = _thaw_json(self.extensions[key])
        return {self._MODEL.container: body}

    def whole_seconds(self) -> Self:
        """This payload with every date-and-time leaf cut to whole seconds.

        Fractional seconds are valid yang:date-and-time (RFC 6991) and are
        accepted on input, but some deployed parsers refuse them, so what we
        sign is conservative (RFC 1122 1.2.2): brski.artifact.sign_artifact
        sends this form. Cutting (not rounding) never moves a time later.
        """
        changes = {
            leaf.attr: value.replace(microsecond=0)
            for leaf in self._MODEL.leaves
            if leaf.kind == "datetime"
            and (value := getattr(self, leaf.attr)) is not None
            and value.microsecond
        }
        return dataclasses.replace(self, **changes) if changes else self  # type: ignore[type-var]

    def to_json(self) -> bytes:
        """Compact, deterministic UTF-8 JSON: the bytes a signer puts in eContent."""
        return json.dumps(self.to_obj(), separators=(",", ":"), ensure_ascii=True).encode("ascii")

    @classmethod
    def from_obj(cls, obj: Any) -> Self:
        """Build from a parsed JSON-form object (from_json, or brski.sid's CBOR mapping)."""
        model = cls._MODEL
        prefix = model.check_prefix
        if not isinstance(obj, Mapping):
            raise VoucherInvalid("top level is not a JSON object", check=f"{prefix}.container")
        if list(obj.keys()) != [model.container]:
            names = ", ".join(repr(str(k)[:64]) for k in list(obj.keys())[:4])
            raise VoucherInvalid(
                f"expected exactly the member {model.container!r}, got {names or 'none'}",
                check=f"{prefix}.container",
            )
        body = obj[model.container]
        if not isinstance(body, Mapping):
            raise VoucherInvalid(f"{model.container} is not an object", check=f"{prefix}.container")
        kwargs: dict[str, Any] = {}
        extensions: dict[str, Any] = {}
        for key, value in body.items():
            if not isinstance(key, str):
                raise VoucherInvalid("member name is not a string", check=f"{prefix}.type")
            leaf = model.by_name.get(key)
            if leaf is not None:
                kwargs[leaf.attr] = decode_leaf(leaf, value, prefix)
            else:
                _check_extension_key(key, prefix)
                extensions[key] = value
        missing = [leaf.name for leaf in model.mandatory if leaf.attr not in kwargs]
        if missing:
            raise VoucherInvalid(
                f"mandatory leaf {missing[0]} is missing",
                check=f"{prefix}.mandatory",
                leaf=missing[0],
            )
        kwargs["extensions"] = extensions
        return cls(**kwargs)

    @classmethod
    def from_json(cls, data: bytes) -> Self:
        """Parse untrusted JSON bytes: size, depth, duplicates, then the YANG model."""
        return cls.from_obj(_load_json(data, cls._MODEL.check_prefix))


_C = TypeVar("_C", bound=type["_Codec"])


def _is_required(f: Field[Any]) -> bool:
    return f.default is MISSING and f.default_factory is MISSING


def declared(cls: _C) -> _C:
    """Class decorator: the dataclass fields are exactly its model's leaves.

    The model (brski.voucher_model) is the one declaration; the fields are the
    typed Python view of it. A leaf without a field, a field without a leaf,
    or a required field that is not a mandatory leaf fails at import.
    """
    declared_fields = fields(cls)  # type: ignore[arg-type]  # _Codec subclasses are dataclasses
    have = {f.name: _is_required(f) for f in declared_fields if f.name != "extensions"}
    want = {leaf.attr: leaf in cls._MODEL.mandatory for leaf in cls._MODEL.leaves}
    if have != want:
        raise TypeError(f"{cls.__name__} fields disagree with {cls._MODEL.container}")
    return cls


def _empty_extensions() -> Mapping[str, object]:
    return MappingProxyType({})


@declared
@dataclass(frozen=True, kw_only=True)
class Voucher(_Codec):
    """An ietf-voucher voucher (RFC 8366 section 5.3, rfc8366bis).

    Binary leaves hold the decoded bytes; ``extensions`` holds the members
    qualified by another module ("module:leaf"), re-emitted as they came.
    ``additional_configuration`` is the rfc8366bis leaf additional-configuration-url.
    """

    _MODEL: ClassVar[Structure] = VOUCHER

    created_on: datetime
    assertion: Assertion
    serial_number: str
    expires_on: datetime | None = None
    idevid_issuer: bytes | None = None
    pinned_domain_cert: bytes | None = None
    pinned_domain_pubk: bytes | None = None
    pinned_domain_pubk_sha256: bytes | None = None
    domain_cert_revocation_checks: bool | None = None
    nonce: bytes | None = None
    last_renewal_date: datetime | None = None
    est_domain: str | None = None
    additional_configuration: str | None = None
    manufacturer_private: str | None = None
    extension_names: tuple[str, ...] = ()
    extensions: Mapping[str, object] = field(default_factory=_empty_extensions)

    def __post_init__(self) -> None:
        # Mandatory leaves and the YANG "must" rules (RFC 8366 section 5.3,
        # rfc8366bis pinning) are rows of brski.voucher_model.VOUCHER.
        self._validate_common()


@declared
@dataclass(frozen=True, kw_only=True)
class VoucherRequest(_Codec):
    """An ietf-voucher-request voucher (RFC 8995 section 3.4, rfc8366bis).

    Every leaf is optional here: whether a pledge or registrar request must carry
    serial-number, nonce or proximity-registrar-cert is a protocol rule that
    brski.validation applies. pinned-domain-cert, last-renewal-date and
    domain-cert-revocation-checks are kept if present though RFC 8995 3.4 says
    they "MUST be ignored": consumers ignore them, the codec stays faithful.
    """

    _MODEL: ClassVar[Structure] = REQUEST

    created_on: datetime | None = None
    assertion: Assertion | None = None
    serial_number: str | None = None
    expires_on: datetime | None = None
    idevid_issuer: bytes | None = None
    pinned_domain_cert: bytes | None = None
    pinned_domain_pubk: bytes | None = None
    pinned_domain_pubk_sha256: bytes | None = None
    domain_cert_revocation_checks: bool | None = None
    nonce: bytes | None = None
    last_renewal_date: datetime | None = None
    est_domain: str | None = None
    additional_configuration: str | None = None
    manufacturer_private: str | None = None
    extension_names: tuple[str, ...] = ()
    prior_signed_voucher_request: bytes | None = None
    proximity_registrar_cert: bytes | None = None
    proximity_registrar_pubk: bytes | None = None
    proximity_registrar_pubk_sha256: bytes | None = None
    agent_signed_data: bytes | None = None
    agent_provided_proximity_registrar_cert: bytes | None = None
    agent_sign_cert: bytes | None = None
    extensions: Mapping[str, object] = field(default_factory=_empty_extensions)

    def __post_init__(self) -> None:
        self._validate_common()
