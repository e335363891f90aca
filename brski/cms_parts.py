"""Taking a CMS ContentInfo apart into the fields the voucher checks need.

Two extractors, one result. :func:`extract_plain_der` reads the DER shape
every BRSKI implementation emits directly (no object tree: the fast path,
about three times cheaper than a full decode); any other form (BER
streaming, high tags, an unexpected layout, and so every malformed input)
raises :class:`brski.asn1.NotPlainDer` and goes to
:func:`extract_asn1crypto`, which keeps the precise refusals. The rules
themselves live only in :mod:`brski.cms`, applied to a :class:`Parts`;
tests/unit/test_cms_paths.py proves the extractors agree.

Both expect input that already passed :func:`brski.asn1.check_der`.
"""

from __future__ import annotations

from dataclasses import dataclass

from asn1crypto import cms as asn1_cms
from asn1crypto import core as asn1_core

from brski import oids
from brski.asn1 import NotPlainDer, decode_oid, der_children, der_element
from brski.errors import MalformedInput

__all__ = ["Parts", "Sid", "extract_asn1crypto", "extract_plain_der"]

# (issuer Name DER, serial number) or a subjectKeyIdentifier.
Sid = tuple[bytes, int] | bytes


@dataclass(frozen=True, kw_only=True)
class Parts:
    """The fields of a ContentInfo the checks need, whatever decoded them.

    Two extractors fill this in: a direct reader for plain DER (what every
    BRSKI implementation emits, and the fast path) and asn1crypto for
    everything else (BER streaming, unusual forms, and every malformed
    input, so that refusals keep their precise check names). The checks in
    :func:`_check_parts` are the only place the rules live.
    """

    content_type: str
    e_content_type: str = ""
    content: bytes | None = None
    certificates: tuple[bytes, ...] = ()
    signer_count: int = 0
    digest_oid: str = ""
    signed_attrs: bytes | None = None  # contents octets of [0] IMPLICIT SignedAttributes
    sid: Sid = b""
    signature_algorithm: bytes = b""  # the AlgorithmIdentifier element
    signature: bytes = b""


def _expect(element: tuple[int, int, int, int], ident: int) -> tuple[int, int, int, int]:
    if element[0] != ident:
        raise NotPlainDer
    return element


def extract_plain_der(der: bytes) -> Parts:
    """Read the expected DER shape directly; any deviation raises NotPlainDer."""
    _, _, cs, ce = _expect(der_element(der, 0, len(der)), 0x30)
    info = der_children(der, cs, ce)
    if len(info) != 2 or info[0][0] != 0x06 or info[1][0] != 0xA0:
        raise NotPlainDer
    if decode_oid(der[info[0][2] : info[0][3]]) != oids.ID_SIGNED_DATA:
        raise NotPlainDer
    explicit = der_children(der, info[1][2], info[1][3])
    if len(explicit) != 1:
        raise NotPlainDer
    _, _, cs, ce = _expect(explicit[0], 0x30)
    fields = der_children(der, cs, ce)
    if len(fields) < 4 or fields[0][0] != 0x02 or fields[1][0] != 0x31:
        raise NotPlainDer
    encap = der_children(der, *_expect(fields[2], 0x30)[2:])
    if not encap or encap[0][0] != 0x06 or len(encap) > 2:
        raise NotPlainDer
    content: bytes | None = None
    if len(encap) == 2:
        inner = der_children(der, *_expect(encap[1], 0xA0)[2:])
        if len(inner) != 1:
            raise NotPlainDer
        _, _, ocs, oce = _expect(inner[0], 0x04)  # a constructed (BER) OCTET STRING falls back
        content = der[ocs:oce]
    certificates: list[bytes] = []
    rest = fields[3:]
    if rest and rest[0][0] == 0xA0:
        for ident, start, _, cend in der_children(der, rest[0][2], rest[0][3]):
            if ident == 0x30:  # CertificateChoices: other formats cannot name a signer
                certificates.append(der[start:cend])
        rest = rest[1:]
    if rest and rest[0][0] == 0xA1:  # CRLs: not used by vouchers
        rest = rest[1:]
    if len(rest) != 1:
        raise NotPlainDer
    signer_infos = der_children(der, *_expect(rest[0], 0x31)[2:])
    if len(signer_infos) != 1:
        raise NotPlainDer  # the asn1crypto path reports the count
    si = der_children(der, *_expect(signer_infos[0], 0x30)[2:])
    if len(si) < 5 or si[0][0] != 0x02:
        raise NotPlainDer
    sid: Sid
    if si[1][0] == 0x30:
        ias = der_children(der, si[1][2], si[1][3])
        if len(ias) != 2 or ias[0][0] != 0x30 or ias[1][0] != 0x02:
            raise NotPlainDer
        sid = (der[ias[0][1] : ias[0][3]], int.from_bytes(der[ias[1][2] : ias[1][3]], "big", signed=True))
    elif si[1][0] == 0x80:
        sid = der[si[1][2] : si[1][3]]
    else:
        raise NotPlainDer
    digest_alg = der_children(der, *_expect(si[2], 0x30)[2:])
    if not digest_alg or digest_alg[0][0] != 0x06:
        raise NotPlainDer
    pos = 3
    signed_attrs: bytes | None = None
    if si[pos][0] == 0xA0:
        signed_attrs = der[si[pos][2] : si[pos][3]]
        pos += 1
    if len(si) < pos + 2 or si[pos][0] != 0x30 or si[pos + 1][0] != 0x04:
        raise NotPlainDer
    if len(si) > pos + 2 and (len(si) != pos + 3 or si[pos + 2][0] != 0xA1):
        raise NotPlainDer
    return Parts(
        content_type=oids.ID_SIGNED_DATA,
        e_content_type=decode_oid(der[encap[0][2] : encap[0][3]]),
        content=content,
        certificates=tuple(certificates),
        signer_count=1,
        digest_oid=decode_oid(der[digest_alg[0][2] : digest_alg[0][3]]),
        signed_attrs=signed_attrs,
        sid=sid,
        signature_algorithm=der[si[pos][1] : si[pos][3]],
        signature=der[si[pos + 1][2] : si[pos + 1][3]],
    )


def extract_asn1crypto(der: bytes) -> Parts:
    content_info = asn1_cms.ContentInfo.load(der, strict=True)
    content_type = content_info["content_type"].dotted
    if content_type != oids.ID_SIGNED_DATA:
        return Parts(content_type=content_type)
    signed_data = content_info["content"]
    encap = signed_data["encap_content_info"]
    e_content = encap["content"]
    detached = isinstance(e_content, asn1_core.Void) or e_content.contents is None
    if not detached and not isinstance(e_content, asn1_core.OctetString | asn1_core.ParsableOctetString):
        # RFC 5652 section 5.2: eContent is an OCTET STRING whatever its type.
        raise MalformedInput(
            f"eContent for {encap['content_type'].dotted} is not an OCTET STRING",
            check="cms.content-type",
        )
    cert_set = signed_data["certificates"]
    certificates = () if isinstance(cert_set, asn1_core.Void) else tuple(
        choice.chosen.dump() for choice in cert_set if choice.name == "certificate"
    )
    signer_infos = signed_data["signer_infos"]
    parts = Parts(
        content_type=content_type,
        e_content_type=encap["content_type"].dotted,
        content=None if detached else bytes(e_content),  # joins BER constructed chunks
        certificates=certificates,
        signer_count=len(signer_infos),
    )
    if parts.signer_count != 1:
        return parts
    si = signer_infos[0]
    signed_attrs = si["signed_attrs"]
    sid_choice = si["sid"]
    sid: Sid
    if sid_choice.name == "issuer_and_serial_number":
        ias = sid_choice.chosen
        sid = (ias["issuer"].dump(), ias["serial_number"].native)
    else:
        sid = bytes(sid_choice.chosen)
    return Parts(
        content_type=content_type,
        e_content_type=parts.e_content_type,
        content=parts.content,
        certificates=certificates,
        signer_count=1,
        digest_oid=si["digest_algorithm"]["algorithm"].dotted,
        signed_attrs=None
        if isinstance(signed_attrs, asn1_core.Void) or signed_attrs.contents is None
        else signed_attrs.contents,
        sid=sid,
        signature_algorithm=si["signature_algorithm"].dump(),
        signature=bytes(si["signature"]),
    )
