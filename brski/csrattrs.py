"""CSR attributes: what the registrar asks a pledge to put in its CSR.

RFC 7030 section 4.5.2 defines /csrattrs; RFC 9908 replaces its ambiguous
attribute form with a CSR template (section 3.4) that can say "subject
serialNumber with this value" and "this key algorithm on this curve".
RFC 8995 section 5.9.2 has the registrar use it to tell the pledge what its
LDevID request must contain. Sans-IO and bounded like the rest of
:mod:`brski.est`: every peer byte goes through :func:`brski.asn1.check_der`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeVar

from asn1crypto import core
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID, PublicKeyAlgorithmOID, SignatureAlgorithmOID

from brski import oids
from brski.asn1 import check_der
from brski.errors import BrskiError, ConfigError, MalformedInput

__all__ = ["CsrAttribute", "CsrAttrs", "CsrTemplate", "build_csrattrs", "csrattrs_for_device", "parse_csrattrs"]

DEFAULT_MAX_SIZE = 65536

_V = TypeVar("_V", bound=core.Asn1Value)


# --- csrattrs (RFC 7030 section 4.5.2, RFC 9908) ----------------------------------


class _AnyValues(core.SetOf):
    _child_spec = core.Any


class _Attribute(core.Sequence):
    _fields: ClassVar[list[Any]] = [("type", core.ObjectIdentifier), ("values", _AnyValues)]


class _AttrOrOid(core.Choice):
    _alternatives: ClassVar[list[Any]] = [("oid", core.ObjectIdentifier), ("attribute", _Attribute)]


class _CsrAttrsAsn(core.SequenceOf):
    _child_spec = _AttrOrOid


class _SingleAttributeTemplate(core.Sequence):
    _fields: ClassVar[list[Any]] = [
        ("type", core.ObjectIdentifier),
        ("value", core.Any, {"optional": True}),
    ]


class _RdnTemplate(core.SetOf):
    _child_spec = _SingleAttributeTemplate


class _NameTemplate(core.SequenceOf):
    _child_spec = _RdnTemplate


class _AlgorithmIdentifier(core.Sequence):
    _fields: ClassVar[list[Any]] = [
        ("algorithm", core.ObjectIdentifier),
        ("parameters", core.Any, {"optional": True}),
    ]


class _SpkiTemplate(core.Sequence):
    _fields: ClassVar[list[Any]] = [
        ("algorithm", _AlgorithmIdentifier),
        ("subject_public_key", core.BitString, {"optional": True}),
    ]


class _Attributes(core.SetOf):
    _child_spec = _Attribute


class _CriTemplate(core.Sequence):
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


# One ASN.1 declaration (the classes above) both parses and builds: asn1crypto
# writes DER (X.690), sorting each SET OF by its members' encodings (11.6).
# Building through asn1crypto costs more CPU than writing the DER directly;
# one declaration that cannot drift from the parser was preferred over that
# cost, and two things keep it down.  A value asn1crypto constructed stays
# "mutated" for good and is re-encoded, with its whole subtree, each time its
# encoding is asked for (twice per dump, once more per SET OF sort), so a
# nested build costs about 2^depth encodings; a value *loaded* hands over the
# bytes it was loaded from.  Each nested level is therefore settled (encoded
# once and loaded back, _settled) before its parent takes it.  And the parts
# of csrattrs_for_device's answer that are the same for every device are
# built once per process (_device_profile).  Measured: 0.6-0.8 ms per answer
# before, see docs/performance.md for after.


def _settled(value: _V, **tagging: Any) -> _V:
    """*value*, loaded back from its own encoding (see above); *tagging* is the
    implicit/explicit tag it was built with, which load must be told again."""
    loaded: _V = type(value).load(value.dump(), **tagging)
    return loaded


def _directory_string(text: str) -> core.Any:
    """PrintableString when the text allows it (X.520 serialNumber), else UTF8String."""
    value = core.PrintableString(text) if _PRINTABLE.fullmatch(text) else core.UTF8String(text)
    return core.Any.load(value.dump())


def _oid_value(dotted: str) -> core.Any:
    """An OBJECT IDENTIFIER where the schema says ANY (a curve, an attribute value)."""
    return core.Any.load(core.ObjectIdentifier(dotted).dump())


def _attribute_asn(attr: CsrAttribute) -> _Attribute:
    return _settled(_Attribute({"type": attr.type, "values": _AnyValues([core.Any.load(v) for v in attr.values])}))


def _name_template(subject: tuple[tuple[str, str | None], ...]) -> _NameTemplate | None:
    """The template's subject, one attribute per RDN; None (absent) when empty."""
    if not subject:
        return None
    return _settled(
        _NameTemplate(
            [
                _settled(
                    _RdnTemplate(
                        [
                            _settled(
                                _SingleAttributeTemplate(
                                    {"type": attr_type}
                                    if value is None
                                    else {"type": attr_type, "value": _directory_string(value)}
                                )
                            )
                        ]
                    )
                )
                for attr_type, value in subject
            ]
        )
    )


def _spki_template(key_algorithm: str | None, key_parameters: str | None) -> _SpkiTemplate | None:
    """The [0] IMPLICIT SubjectPublicKeyInfoTemplate (algorithm only); None when absent."""
    if key_algorithm is None:
        return None
    algorithm: dict[str, Any] = {"algorithm": key_algorithm}
    if key_parameters is not None:
        algorithm["parameters"] = _oid_value(key_parameters)
    return _settled(_SpkiTemplate({"algorithm": _settled(_AlgorithmIdentifier(algorithm))}, implicit=0), implicit=0)


def _cri_template_der(
    *, subject: _NameTemplate | None, spki: _SpkiTemplate | None, attributes: _Attributes
) -> bytes:
    """RFC 9908 Appendix A (IMPLICIT TAGS): version v1(0), subject NameTemplate,
    [0] SubjectPublicKeyInfoTemplate, [1] Attributes; absent parts left out."""
    fields: dict[str, Any] = {"version": 0}
    if subject is not None:
        fields["subject"] = subject
    if spki is not None:
        fields["subject_pk_info"] = spki
    fields["attributes"] = attributes
    return bytes(_CriTemplate(fields).dump())


def _item_asn(item: str | CsrAttribute) -> _AttrOrOid:
    if isinstance(item, str):
        return _AttrOrOid(name="oid", value=core.ObjectIdentifier(item))
    return _settled(_AttrOrOid(name="attribute", value=_attribute_asn(item)))


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
        der = _cri_template_der(
            subject=_name_template(self.subject),
            spki=_spki_template(self.key_algorithm, self.key_parameters),
            attributes=_settled(_Attributes([_attribute_asn(a) for a in self.attributes], implicit=1), implicit=1),
        )
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
    return bytes(_CsrAttrsAsn([_item_asn(item) for item in attrs.items]).dump())


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
    if serial_number is not None and len(serial_number) <= _UB_SERIAL and _PRINTABLE.fullmatch(serial_number):
        shape = _answer_shape(key_type, legacy, len(serial_number))
        if shape is not None:
            before, after = shape
            return before + serial_number.encode("ascii") + after
    return _build_for_device(serial_number, key_type, legacy)


def _build_for_device(serial_number: str | None, key_type: str, legacy: bool) -> bytes:
    """csrattrs_for_device's answer, built through the declaration."""
    profile = _device_profile(key_type, legacy)
    # The only per-device part: the template's subject serialNumber value.
    template = _cri_template_der(
        subject=_name_template(((_SERIAL_OID, serial_number),)), spki=profile.spki, attributes=profile.attributes
    )
    item = _item_asn(CsrAttribute(type=oids.ID_AA_CERT_REQ_INFO_TEMPLATE, values=(template,)))
    return bytes(_CsrAttrsAsn([item, *profile.rest]).dump())


# RFC 5280 Appendix A.1: ub-serial-number 64; a longer serial is built in full.
_UB_SERIAL = 64
# (key type, legacy, serial length) -> the answer's bytes before and after the
# serialNumber value (a PrintableString of that length), or None.
_shapes: dict[tuple[str, bool, int], tuple[bytes, bytes] | None] = {}


def _answer_shape(key_type: str, legacy: bool, length: int) -> tuple[bytes, bytes] | None:
    """Where a PrintableString serial of ``length`` characters sits in the answer.

    The serial is the answer's only per-device part, and in DER every length
    and tag around it depends only on its tag and length, not on its
    characters: it is the one member of its RDN's SET OF, and no other SET OF
    holds it, so no X.690 11.6 ordering moves with its value. So the answer is
    built through the declaration for two placeholders of the same length
    ("A..." and "B..."), which must differ in exactly that many consecutive
    bytes, the placeholder's own; every device's answer is then those bytes
    around its own serial (0.32 ms a build against about 1 us). Anything
    else (no such run found) is answered with the full build.
    """
    key = (key_type, legacy, length)
    if key in _shapes:
        return _shapes[key]
    a = _build_for_device("A" * length, key_type, legacy)
    b = _build_for_device("B" * length, key_type, legacy)
    differ = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y] if len(a) == len(b) else []
    shape = None
    if differ and differ[-1] - differ[0] + 1 == length == len(differ) and a[differ[0] : differ[-1] + 1] == b"A" * length:
        shape = (a[: differ[0]], a[differ[-1] + 1 :])
    _shapes[key] = shape
    return shape


_SERIAL_OID = NameOID.SERIAL_NUMBER.dotted_string


@dataclass(frozen=True, kw_only=True)
class _DeviceProfile:
    """The parts of csrattrs_for_device's answer that do not depend on the
    device, built through the declaration above and encoded once. Never
    mutated after _device_profile returns it."""

    spki: _SpkiTemplate | None
    attributes: _Attributes
    rest: tuple[_AttrOrOid, ...]


_device_profiles: dict[tuple[str, bool], _DeviceProfile] = {}


def _device_profile(key_type: str, legacy: bool) -> _DeviceProfile:
    """Per process: a registrar answers with one key type, a test with a few."""
    cached = _device_profiles.get((key_type, legacy))
    if cached is not None:
        return cached
    profile = _KEY_PROFILES.get(key_type)
    if profile is None:
        raise ConfigError(f"unknown key type {key_type!r}", check="est.csrattrs-key-type")
    key_alg, curve, sig_alg = profile
    rest: list[str | CsrAttribute] = []
    if legacy:
        if curve is not None:
            rest.append(CsrAttribute(type=key_alg, values=(_oid_value(curve).dump(),)))
        else:
            rest.append(key_alg)
        rest.append(_SERIAL_OID)
    rest.append(sig_alg)
    built = _DeviceProfile(
        spki=_spki_template(key_alg, curve),
        attributes=_settled(_Attributes([], implicit=1), implicit=1),
        rest=tuple(_settled(_item_asn(item)) for item in CsrAttrs(items=tuple(rest)).items),
    )
    _device_profiles[(key_type, legacy)] = built
    return built
