"""brski.csrattrs builds with the same asn1crypto ASN.1 classes it parses with;
here its bytes are checked against the published vectors, against the bytes
the project's earlier hand-written DER encoder produced (frozen below), and
against an independent direct-DER encoder of the same structures (X.690: a
SET OF sorted by its members' encodings): for the vectors, for every
csrattrs_for_device variant, and for generated templates (unsorted SET OF
values, optional fields absent or present, PrintableString and UTF8String
values).
"""

from __future__ import annotations

import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from brski import csrattrs as m
from brski import oids
from brski.asn1 import encode_oid, encode_tlv
from tests import VECTORS

# What the hand-written encoder this module replaced answered for two
# devices (RFC 9908 template first, then the RFC 7030 4.5.2 items).
OLD_BYTES = {
    ("00-D0-E5-F2-00-02", "p256", True): bytes.fromhex(
        "3073304b060b2a864886f70d010910023d313c303a020100301c311a30180603550405131130302d44302d4535"
        "2d46322d30302d3032a015301306072a8648ce3d020106082a8648ce3d030107a100301506072a8648ce3d0201"
        "310a06082a8648ce3d030107060355040506082a8648ce3d040302"
    ),
    (None, "ed25519", False): bytes.fromhex(
        "3031302a060b2a864886f70d010910023d311b30190201003009310730050603550405a007300506032b6570a1"
        "0006032b6570"
    ),
}

_PRINTABLE = re.compile(r"[A-Za-z0-9 '()+,\-./:=?]+")


def _set_of(elements: list[bytes]) -> bytes:
    return encode_tlv(0x31, b"".join(sorted(elements)))


def _string(text: str) -> bytes:
    if _PRINTABLE.fullmatch(text):
        return encode_tlv(0x13, text.encode("ascii"))
    return encode_tlv(0x0C, text.encode("utf-8"))


def ref_attribute(attr: m.CsrAttribute) -> bytes:
    return encode_tlv(0x30, encode_oid(attr.type) + _set_of(list(attr.values)))


def ref_template(t: m.CsrTemplate) -> bytes:
    body = b"\x02\x01\x00"  # version v1(0)
    if t.subject:
        rdns = [
            _set_of([encode_tlv(0x30, encode_oid(attr_type) + (b"" if value is None else _string(value)))])
            for attr_type, value in t.subject
        ]
        body += encode_tlv(0x30, b"".join(rdns))
    if t.key_algorithm is not None:
        alg = encode_oid(t.key_algorithm)
        if t.key_parameters is not None:
            alg += encode_oid(t.key_parameters)
        body += encode_tlv(0xA0, encode_tlv(0x30, alg))  # [0] IMPLICIT
    body += encode_tlv(0xA1, b"".join(sorted(ref_attribute(a) for a in t.attributes)))  # [1] IMPLICIT SET OF
    return encode_tlv(0x30, body)


def ref_csrattrs(attrs: m.CsrAttrs) -> bytes:
    return encode_tlv(
        0x30, b"".join(encode_oid(i) if isinstance(i, str) else ref_attribute(i) for i in attrs.items)
    )


def test_same_bytes_as_the_hand_written_encoder_did() -> None:
    for (serial, key_type, legacy), old in OLD_BYTES.items():
        assert m.csrattrs_for_device(serial_number=serial, key_type=key_type, legacy=legacy) == old


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


def _composed(serial: str | None, key_type: str, legacy: bool) -> bytes:
    """csrattrs_for_device's answer composed from the public pieces, nothing cached."""
    key_alg, curve, sig_alg = m._KEY_PROFILES[key_type]
    template = m.CsrTemplate(subject=(("2.5.4.5", serial),), key_algorithm=key_alg, key_parameters=curve)
    items: list[str | m.CsrAttribute] = [template.to_attribute()]
    if legacy:
        items.append(m.CsrAttribute(type=key_alg, values=(encode_oid(curve),)) if curve else key_alg)
        items.append("2.5.4.5")
    items.append(sig_alg)
    return m.build_csrattrs(m.CsrAttrs(items=tuple(items)))


def test_the_per_process_parts_do_not_change_between_devices() -> None:
    """The parts built once per process (_device_profile) give every device,
    in any order, the answer composed afresh; no device's serial leaks into
    another's answer."""
    m._device_profiles.clear()
    serials = ["PLG-000001", "séri@l", None, "x" * 300, "PLG-000002", "PLG-000001"]
    for _ in range(2):
        for serial in serials:
            for key_type in ("ed25519", "p384", "p256"):
                for legacy in (False, True):
                    answer = m.csrattrs_for_device(serial_number=serial, key_type=key_type, legacy=legacy)
                    assert answer == _composed(serial, key_type, legacy)
    assert len(m._device_profiles) == 6  # one per (key type, legacy), built once


def test_answers_spliced_around_a_serial_equal_the_full_build() -> None:
    """csrattrs_for_device puts a printable serial into bytes found once per
    serial length (_answer_shape): for every length and character the answer
    is the one the declaration builds, and no serial stays in another's."""
    m._shapes.clear()
    chars = "ABZaz09 '()+,-./:=?"
    for length in range(1, 65):
        for serial in (chars[length % len(chars)] * length, "".join(chars[(i * 7 + length) % len(chars)] for i in range(length))):
            for key_type in ("p256", "ed25519"):
                for legacy in (True, False):
                    answer = m.csrattrs_for_device(serial_number=serial, key_type=key_type, legacy=legacy)
                    assert answer == m._build_for_device(serial, key_type, legacy) == _composed(serial, key_type, legacy)
    assert m._shapes and all(shape is not None for shape in m._shapes.values())
    # Not printable, or longer than ub-serial-number: built in full, still the same answer.
    for serial in ("séri@l", "x" * 65):
        assert m.csrattrs_for_device(serial_number=serial) == _composed(serial, "p256", True)


_oid = st.builds(lambda a, b, c: f"1.{a}.{b}.{c}", st.integers(0, 39), st.integers(0, 300), st.integers(0, 10**6))
_value = st.builds(
    lambda body: bytes([0x04, len(body)]) + body, st.binary(max_size=40)
)  # OCTET STRINGs of various contents, so SET OF order matters
_attribute = st.builds(lambda t, vs: m.CsrAttribute(type=t, values=tuple(vs)), _oid, st.lists(_value, min_size=1, max_size=4))


def _no_extension_requests(attrs: list[m.CsrAttribute]) -> bool:
    return not any(a.type in (oids.ID_EXTENSION_REQUEST, oids.ID_AA_EXTENSION_REQ_TEMPLATE) for a in attrs)


@settings(max_examples=300, deadline=None)
@given(
    subject=st.lists(st.tuples(_oid, st.one_of(st.none(), st.text(min_size=1, max_size=20))), max_size=4),
    key=st.one_of(st.none(), st.tuples(_oid, st.one_of(st.none(), _oid))),
    attributes=st.lists(_attribute, max_size=3, unique_by=lambda a: a.type).filter(_no_extension_requests),
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
    items = [tmpl.to_attribute(), *[e for e in extra if not (isinstance(e, m.CsrAttribute) and e.type == oids.ID_AA_CERT_REQ_INFO_TEMPLATE)]]
    attrs = m.CsrAttrs(items=tuple(items))
    assert m.build_csrattrs(attrs) == ref_csrattrs(attrs)
    # The round trip keeps everything but the order of SET OF values, which DER fixes.
    back = m.CsrTemplate.from_attribute(tmpl.to_attribute())
    assert (back.subject, back.key_algorithm, back.key_parameters) == (tmpl.subject, tmpl.key_algorithm, tmpl.key_parameters)
    assert sorted((a.type, sorted(a.values)) for a in back.attributes) == sorted((a.type, sorted(a.values)) for a in tmpl.attributes)
