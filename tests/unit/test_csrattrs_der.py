"""The direct-DER csrattrs encoder against asn1crypto's encoder of the same ASN.1.

brski.csrattrs writes DER by hand (it is on the registrar's hot path) and
parses with asn1crypto.  Here asn1crypto *encodes* the same structures from
the module's own ASN.1 classes, and the bytes must be identical: for the
published vectors, for every csrattrs_for_device variant, and for generated
templates (unsorted SET OF values, optional fields absent or present,
PrintableString and UTF8String values).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from asn1crypto import core
from hypothesis import given, settings
from hypothesis import strategies as st

from brski import csrattrs as m

VECTORS = Path(__file__).resolve().parent.parent / "vectors"


def ref_attribute(attr: m.CsrAttribute) -> Any:
    return m._Attribute({"type": attr.type, "values": m._AnyValues([core.Any.load(v) for v in attr.values])})


def ref_template(t: m.CsrTemplate) -> bytes:
    fields: dict[str, Any] = {"version": 0}
    if t.subject:
        rdns = []
        for attr_type, value in t.subject:
            single: dict[str, Any] = {"type": attr_type}
            if value is not None:
                cls = core.PrintableString if m._PRINTABLE.fullmatch(value) else core.UTF8String
                single["value"] = core.Any.load(cls(value).dump())
            rdns.append(m._RdnTemplate([m._SingleAttributeTemplate(single)]))
        fields["subject"] = m._NameTemplate(rdns)
    if t.key_algorithm is not None:
        alg: dict[str, Any] = {"algorithm": t.key_algorithm}
        if t.key_parameters is not None:
            alg["parameters"] = core.Any.load(core.ObjectIdentifier(t.key_parameters).dump())
        fields["subject_pk_info"] = m._SpkiTemplate({"algorithm": m._AlgorithmIdentifier(alg)})
    fields["attributes"] = m._Attributes([ref_attribute(a) for a in t.attributes])
    return bytes(m._CriTemplate(fields).dump(force=True))


def ref_csrattrs(attrs: m.CsrAttrs) -> bytes:
    items = [
        m._AttrOrOid(name="oid", value=core.ObjectIdentifier(i))
        if isinstance(i, str)
        else m._AttrOrOid(name="attribute", value=ref_attribute(i))
        for i in attrs.items
    ]
    return bytes(m._CsrAttrsAsn(items).dump(force=True))


def test_vectors_rebuild_identically_through_both_encoders() -> None:
    paths = [
        *sorted((VECTORS / "csrattrs-draft").glob("*.der")),
        VECTORS / "rfc7030" / "A.2-csrattrs-response.der",
        VECTORS / "rfc7030" / "sec4.5.2-csrattrs.der",
    ]
    assert paths, "csrattrs vectors missing"
    for path in paths:
        parsed = m.parse_csrattrs(path.read_bytes())
        assert m.build_csrattrs(parsed) == ref_csrattrs(parsed) == path.read_bytes(), path.name
        tmpl = parsed.template()
        if tmpl is not None:
            assert tmpl.to_attribute().values[0] == ref_template(tmpl), path.name


def test_every_device_variant_matches() -> None:
    for serial in (None, "PLG-000001", "00-D0-E5-F2-00-02", "séri@l", "x" * 300):
        for key_type in ("p256", "p384", "ed25519"):
            for legacy in (True, False):
                der = m.csrattrs_for_device(serial_number=serial, key_type=key_type, legacy=legacy)
                parsed = m.parse_csrattrs(der)
                assert der == ref_csrattrs(parsed)
                tmpl = parsed.template()
                assert tmpl is not None and tmpl.to_attribute().values[0] == ref_template(tmpl)
                assert dict(tmpl.subject).get("2.5.4.5") == serial


_oid = st.builds(lambda a, b, c: f"1.{a}.{b}.{c}", st.integers(0, 39), st.integers(0, 300), st.integers(0, 10**6))
_value = st.builds(
    lambda body: bytes([0x04, len(body)]) + body, st.binary(max_size=40)
)  # OCTET STRINGs of various contents, so SET OF order matters
_attribute = st.builds(lambda t, vs: m.CsrAttribute(type=t, values=tuple(vs)), _oid, st.lists(_value, min_size=1, max_size=4))


@settings(max_examples=300, deadline=None)
@given(
    subject=st.lists(st.tuples(_oid, st.one_of(st.none(), st.text(min_size=1, max_size=20))), max_size=4),
    key=st.one_of(st.none(), st.tuples(_oid, st.one_of(st.none(), _oid))),
    attributes=st.lists(_attribute, max_size=3, unique_by=lambda a: a.type).filter(
        lambda attrs: not any(a.type in (m.oids.ID_EXTENSION_REQUEST, m.oids.ID_AA_EXTENSION_REQ_TEMPLATE) for a in attrs)
    ),
    extra=st.lists(st.one_of(_oid, _attribute), max_size=4),
)
def test_generated_templates_match(subject: Any, key: Any, attributes: Any, extra: Any) -> None:
    tmpl = m.CsrTemplate(
        subject=tuple(subject),
        key_algorithm=None if key is None else key[0],
        key_parameters=None if key is None else key[1],
        attributes=tuple(attributes),
    )
    assert tmpl.to_attribute().values[0] == ref_template(tmpl)
    items = [tmpl.to_attribute(), *[e for e in extra if not (isinstance(e, m.CsrAttribute) and e.type == m.oids.ID_AA_CERT_REQ_INFO_TEMPLATE)]]
    attrs = m.CsrAttrs(items=tuple(items))
    assert m.build_csrattrs(attrs) == ref_csrattrs(attrs)
    # The round trip keeps everything but the order of SET OF values, which DER fixes.
    back = m.CsrTemplate.from_attribute(tmpl.to_attribute())
    assert (back.subject, back.key_algorithm, back.key_parameters) == (tmpl.subject, tmpl.key_algorithm, tmpl.key_parameters)
    assert sorted((a.type, sorted(a.values)) for a in back.attributes) == sorted((a.type, sorted(a.values)) for a in tmpl.attributes)
