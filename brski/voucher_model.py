"""The ietf-voucher and ietf-voucher-request YANG model, declared once.

Every leaf of both structures is one :class:`Leaf` row in :data:`LEAVES`: its
YANG name, the Python attribute that holds it, its value kind, the SID it has
in each module that contains it (which is also *which* structures contain it),
whether it is mandatory, and the text that defines it. From that one table:

* ``brski.voucher`` takes the JSON member names, the emission order, the value
  checks and the mandatory leaves of :class:`~brski.voucher.Voucher` and
  :class:`~brski.voucher.VoucherRequest` (and checks at import that their
  dataclass fields are exactly the table's attributes);
* ``brski.sid`` takes the SID of every leaf and its YANG-CBOR type (RFC 9254).

Sources: RFC 8366 section 5.3 (ietf-voucher), RFC 8995 section 3.4
(ietf-voucher-request), draft-ietf-anima-rfc8366bis (both modules merged, with
ietf-voucher@2025-12-18.sid and ietf-voucher-request@2025-12-18.sid).
Adding a leaf is one row here plus the typed attribute on the class(es).
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Literal

__all__ = [
    "ASSERTION_CBOR",
    "LEAVES",
    "OWN_MODULES",
    "REQUEST",
    "STRUCTURES",
    "VOUCHER",
    "Assertion",
    "CborType",
    "Kind",
    "Leaf",
    "Must",
    "Structure",
    "structure",
]

VOUCHER_MODULE = "ietf-voucher"
REQUEST_MODULE = "ietf-voucher-request"
OWN_MODULES = frozenset({VOUCHER_MODULE, REQUEST_MODULE})


class Assertion(StrEnum):
    """RFC 8366 section 5.3 enumeration; ``agent-proximity`` is rfc8366bis (BRSKI-PRM)."""

    VERIFIED = "verified"
    LOGGED = "logged"
    PROXIMITY = "proximity"
    AGENT_PROXIMITY = "agent-proximity"


# rfc8366bis "CBOR integers for the 'assertion' Attribute enum value": the
# YANG enum values; RFC 9254 section 6.6 encodes an enumeration as its value.
ASSERTION_CBOR: Mapping[Assertion, int] = MappingProxyType(
    {
        Assertion.VERIFIED: 0,
        Assertion.LOGGED: 1,
        Assertion.PROXIMITY: 2,
        Assertion.AGENT_PROXIMITY: 3,
    }
)

# How brski.voucher checks a value. Several kinds share one YANG type and
# differ only in a restriction (nonce: binary 8..32 bytes; sha256: 32 bytes;
# serial: non-empty string; uri: inet:uri).
Kind = Literal[
    "datetime",
    "assertion",
    "serial",
    "binary",
    "nonce",
    "sha256",
    "boolean",
    "uri",
    "opaque",
    "names",
]
# The YANG-CBOR (RFC 9254 section 6) encoding brski.sid applies.
CborType = Literal[
    "binary", "opaque", "string", "date-and-time", "boolean", "assertion", "extensions"
]
_CBOR_TYPE: Mapping[Kind, CborType] = MappingProxyType(
    {
        "datetime": "date-and-time",  # RFC 9254 6.3: text, as yang:date-and-time is a string
        "assertion": "assertion",
        "serial": "string",
        "binary": "binary",  # RFC 9254 6.7: a byte string
        "nonce": "binary",
        "sha256": "binary",
        "boolean": "boolean",
        "uri": "string",  # inet:uri is a string subtype
        # rfc8366bis "Manufacturer Proprietary Extensions": a bstr in CBOR, any
        # string in JSON (base64url RECOMMENDED, which brski.sid emits).
        "opaque": "opaque",
        "names": "extensions",
    }
)


@dataclass(frozen=True, kw_only=True)
class Leaf:
    """One leaf (or leaf-list) of the voucher grouping or the voucher-request augment."""

    name: str
    kind: Kind
    sids: Mapping[str, int]
    ref: str
    attr: str = ""
    mandatory_in: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not self.attr:
            object.__setattr__(self, "attr", self.name.replace("-", "_"))
        object.__setattr__(self, "sids", MappingProxyType(dict(self.sids)))
        if not self.sids or not self.mandatory_in <= set(self.sids):
            raise ValueError(f"leaf {self.name}: mandatory in a module that lacks it")

    @property
    def cbor_type(self) -> CborType:
        return _CBOR_TYPE[self.kind]


def _both(voucher: int, request: int) -> dict[str, int]:
    return {VOUCHER_MODULE: voucher, REQUEST_MODULE: request}


def _request(sid: int) -> dict[str, int]:
    return {REQUEST_MODULE: sid}


_V = frozenset({VOUCHER_MODULE})
_R8366 = "RFC 8366 section 5.3"
_R8995 = "RFC 8995 section 3.4"
_BIS = "draft-ietf-anima-rfc8366bis"

# Emission order: the RFC 8366 5.3 grouping, the rfc8366bis additions, then the
# voucher-request augment (RFC 8995 3.4, then cBRSKI / BRSKI-PRM via rfc8366bis).
LEAVES: tuple[Leaf, ...] = (
    Leaf(name="created-on", kind="datetime", sids=_both(2453, 2503), ref=_R8366, mandatory_in=_V),
    Leaf(name="expires-on", kind="datetime", sids=_both(2455, 2505), ref=_R8366),
    Leaf(name="assertion", kind="assertion", sids=_both(2452, 2502), ref=_R8366, mandatory_in=_V),
    Leaf(name="serial-number", kind="serial", sids=_both(2462, 2514), ref=_R8366, mandatory_in=_V),
    Leaf(name="idevid-issuer", kind="binary", sids=_both(2456, 2506), ref=_R8366),
    Leaf(name="pinned-domain-cert", kind="binary", sids=_both(2459, 2509), ref=_R8366),
    Leaf(name="pinned-domain-pubk", kind="binary", sids=_both(2460, 2518), ref=_BIS),
    Leaf(name="pinned-domain-pubk-sha256", kind="sha256", sids=_both(2461, 2519), ref=_BIS),
    Leaf(name="domain-cert-revocation-checks", kind="boolean", sids=_both(2454, 2504), ref=_R8366),
    Leaf(name="nonce", kind="nonce", sids=_both(2458, 2508), ref=_R8366),
    Leaf(name="last-renewal-date", kind="datetime", sids=_both(2457, 2507), ref=_R8366),
    # rfc8366bis "Detailed changes": from the cloud-registrar draft.
    Leaf(name="est-domain", kind="uri", sids=_both(2464, 2521), ref=_BIS),
    Leaf(
        name="additional-configuration-url",
        attr="additional_configuration",
        kind="uri",
        sids=_both(2463, 2520),
        ref=_BIS,
    ),
    Leaf(name="manufacturer-private", kind="opaque", sids=_both(2465, 2523), ref=_BIS),
    # rfc8366bis "Voucher Extensions": the leaf-list of extension module names.
    Leaf(
        name="extensions",
        attr="extension_names",
        kind="names",
        sids=_both(2466, 2522),
        ref=_BIS,
    ),
    Leaf(name="prior-signed-voucher-request", kind="binary", sids=_request(2510), ref=_R8995),
    Leaf(name="proximity-registrar-cert", kind="binary", sids=_request(2511), ref=_R8995),
    Leaf(name="proximity-registrar-pubk", kind="binary", sids=_request(2513), ref=_BIS),
    Leaf(name="proximity-registrar-pubk-sha256", kind="sha256", sids=_request(2512), ref=_BIS),
    Leaf(name="agent-signed-data", kind="binary", sids=_request(2517), ref=_BIS),
    Leaf(
        name="agent-provided-proximity-registrar-cert",
        kind="binary",
        sids=_request(2515),
        ref=_BIS,
    ),
    Leaf(name="agent-sign-cert", kind="binary", sids=_request(2516), ref=_BIS),
)


@dataclass(frozen=True, kw_only=True)
class Must:
    """A YANG ``must`` between leaves of one structure, checked on construction.

    ``not-both``: the two leaves exclude each other; ``one-of``: at least one
    is present; ``requires``: the first needs the second. ``check`` is the rule
    name after the structure's check prefix.
    """

    rule: Literal["not-both", "one-of", "requires"]
    leaves: tuple[str, ...]
    check: str
    ref: str

    def violated(self, present: AbstractSet[str]) -> bool:
        here = [name in present for name in self.leaves]
        if self.rule == "not-both":
            return all(here)
        if self.rule == "one-of":
            return not any(here)
        return here[0] and not all(here[1:])

    @property
    def message(self) -> str:
        first, *rest = self.leaves
        if self.rule == "not-both":
            return f"{first} and {rest[0]} are mutually exclusive"
        if self.rule == "one-of":
            return f"no {', '.join(self.leaves[:-1])} or {self.leaves[-1]}"
        return f"{first} requires {' and '.join(rest)}"


# RFC 8366 section 5.3: expires-on "must 'not(../nonce)'" and nonce "must
# 'not(../expires-on)'", in the shared grouping, so in both structures.
_NONCE_OR_EXPIRY = Must(
    rule="not-both", leaves=("expires-on", "nonce"), check="expires-on-with-nonce", ref=_R8366
)
_VOUCHER_MUSTS = (
    _NONCE_OR_EXPIRY,
    # RFC 8366 section 5.3 makes pinned-domain-cert mandatory; rfc8366bis lets
    # pinned-domain-pubk(-sha256) stand in for it. One must be there.
    Must(
        rule="one-of",
        leaves=("pinned-domain-cert", "pinned-domain-pubk", "pinned-domain-pubk-sha256"),
        check="pinned-domain",
        ref=_BIS,
    ),
    # RFC 8366 section 5.3: last-renewal-date "must '../expires-on'". A
    # voucher-request keeps the leaf unchecked: RFC 8995 3.4 says it "MUST be
    # ignored" there.
    Must(
        rule="requires",
        leaves=("last-renewal-date", "expires-on"),
        check="last-renewal-date-without-expires-on",
        ref=_R8366,
    ),
)


@dataclass(frozen=True, kw_only=True)
class Structure:
    """One YANG structure: module, JSON container name, container SID and leaves."""

    module: str
    container: str
    sid: int
    check_prefix: str
    leaves: tuple[Leaf, ...]
    musts: tuple[Must, ...] = ()
    by_name: Mapping[str, Leaf] = field(init=False, repr=False)
    by_sid: Mapping[int, Leaf] = field(init=False, repr=False)
    # The leaves this module makes mandatory (read on every construction).
    mandatory: tuple[Leaf, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        by_name = {leaf.name: leaf for leaf in self.leaves}
        by_sid = {leaf.sids[self.module]: leaf for leaf in self.leaves}
        # A repeated name or SID would make one side of a conversion ambiguous;
        # RFC 9254 section 3.2 deltas need every member SID after the container's.
        if len(by_name) != len(self.leaves) or len(by_sid) != len(self.leaves):
            raise ValueError(f"{self.container}: leaf names or SIDs repeat")
        if any(sid <= self.sid for sid in by_sid):
            raise ValueError(f"{self.container}: a leaf SID precedes the container SID")
        if any(name not in by_name for must in self.musts for name in must.leaves):
            raise ValueError(f"{self.container}: a must names a leaf it does not have")
        object.__setattr__(self, "by_name", MappingProxyType(by_name))
        object.__setattr__(self, "by_sid", MappingProxyType(by_sid))
        object.__setattr__(
            self, "mandatory", tuple(leaf for leaf in self.leaves if self.module in leaf.mandatory_in)
        )

    def leaf_sid(self, leaf: Leaf) -> int:
        return leaf.sids[self.module]


def structure(
    module: str,
    *,
    sid: int,
    check_prefix: str,
    leaves: tuple[Leaf, ...] = LEAVES,
    musts: tuple[Must, ...] = (),
) -> Structure:
    """The structure named "<module>:voucher" with every leaf ``leaves`` gives ``module``."""
    return Structure(
        module=module,
        # RFC 7951 section 4: the top-level member is qualified by its module;
        # both modules name their structure "voucher" (RFC 8995 3.4, rfc8366bis).
        container=f"{module}:voucher",
        sid=sid,
        check_prefix=check_prefix,
        leaves=tuple(leaf for leaf in leaves if module in leaf.sids),
        musts=musts,
    )


VOUCHER = structure(VOUCHER_MODULE, sid=2451, check_prefix="voucher", musts=_VOUCHER_MUSTS)
REQUEST = structure(
    REQUEST_MODULE, sid=2501, check_prefix="voucher-request", musts=(_NONCE_OR_EXPIRY,)
)
# What brski.sid converts; read at call time, so a derived model can stand in.
STRUCTURES: tuple[Structure, ...] = (VOUCHER, REQUEST)
