"""Taking a CMS ContentInfo apart into the fields the voucher checks need.

Two extractors, one result, one grammar. :func:`_walk` checks the whole
unsigned structure against RFC 5652 (every element where the ASN.1 module
puts it, nothing else anywhere: OpenSSL's template decoder is as strict,
asn1crypto is not). :func:`extract_plain_der` runs it over plain DER, the
shape every BRSKI implementation emits, and reads the values directly (no
object tree: the fast path, about three times cheaper than a full decode);
any BER form (indefinite lengths, constructed OCTET STRINGs, high tags)
raises :class:`brski.asn1.NotPlainDer` and goes to
:func:`extract_asn1crypto`, which runs the same walk over BER and takes the
values from asn1crypto. The semantic rules live only in :mod:`brski.cms`,
applied to a :class:`Parts`; tests/unit/test_cms_paths.py proves the
extractors agree.

Both expect input that already passed :func:`brski.asn1.check_der`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from asn1crypto import cms as asn1_cms
from asn1crypto import core as asn1_core

from brski import oids
from brski.asn1 import NotPlainDer, ber_children, check_der, decode_oid, der_element
from brski.errors import MalformedInput

__all__ = ["CERT_NOT_DER", "Parts", "Sid", "extract_asn1crypto", "extract_plain_der", "require_der"]

CERT_NOT_DER = "a carried certificate uses BER indefinite lengths; certificates are DER"

# (issuer Name DER, serial number) or a subjectKeyIdentifier.
Sid = tuple[bytes, int] | bytes


@dataclass(frozen=True, kw_only=True)
class Parts:
    """The fields of a ContentInfo the checks need, whatever decoded them.

    Two extractors fill this in: a direct reader for plain DER (what every
    BRSKI implementation emits, and the fast path) and asn1crypto for BER.
    The checks in :func:`brski.cms._check_parts` are the only place the
    semantic rules live.
    """

    content_type: str
    e_content_type: str = ""
    content: bytes | None = None
    certificates: tuple[bytes, ...] = ()
    crls: tuple[bytes, ...] = ()  # CertificateList elements, RFC 5652 section 10.2.1
    digest_algorithms: tuple[str, ...] = ()  # SignedData.digestAlgorithms, RFC 5652 section 5.1
    signer_count: int = 0
    digest_oid: str = ""
    signed_attrs: bytes | None = None  # contents octets of [0] IMPLICIT SignedAttributes
    sid: Sid = b""
    signature_algorithm: bytes = b""  # the AlgorithmIdentifier element
    signature: bytes = b""


Element = tuple[int, int, int, int, int]  # see brski.asn1.BerElement
Children = Callable[[bytes, int, int], list[Element]]


def _plain_children(data: bytes, start: int, end: int) -> list[Element]:
    """DER children as BerElement tuples; any BER form raises NotPlainDer.

    The short and one- or two-octet length forms (all a voucher uses) are
    read inline; anything else, and every bounds violation, goes through
    der_element, which raises the precise error."""
    out: list[Element] = []
    pos = start
    while pos < end:
        ident = data[pos]
        first = data[pos + 1] if pos + 1 < end else 0xFF
        if ident & 0x1F != 0x1F and first < 0x80:
            cs = pos + 2
            ce = cs + first
        elif ident & 0x1F != 0x1F and first == 0x81 and pos + 3 <= end:
            cs = pos + 3
            ce = cs + data[pos + 2]
        elif ident & 0x1F != 0x1F and first == 0x82 and pos + 4 <= end:
            cs = pos + 4
            ce = cs + ((data[pos + 2] << 8) | data[pos + 3])
        else:
            ident, _, cs, ce = der_element(data, pos, end)
        if ce > end:
            der_element(data, pos, end)  # raises: runs past its container
        out.append((ident, pos, cs, ce, ce))
        pos = ce
    return out


def _bad(detail: str, check: str = "cms.structure") -> MalformedInput:
    return MalformedInput(detail, check=check)


def _integer(der: bytes, element: Element, what: str) -> int:
    """An INTEGER with minimal contents (X.690 section 8.3.2)."""
    if element[0] != 0x02:
        raise _bad(f"{what} is not an INTEGER")
    body = der[element[2] : element[3]]
    redundant = len(body) > 1 and (
        (body[0] == 0 and body[1] < 0x80) or (body[0] == 0xFF and body[1] >= 0x80)
    )
    if not body or redundant:
        raise _bad(f"{what} is not a minimal INTEGER (X.690 section 8.3.2)")
    return int.from_bytes(body, "big", signed=True)


def _version(der: bytes, element: Element, what: str, allowed: tuple[int, ...]) -> int:
    """CMSVersion (RFC 5652 section 10.2.5): a small INTEGER from the listed values."""
    if element[0] != 0x02 or element[3] - element[2] != 1 or der[element[2]] not in allowed:
        raise _bad(f"{what} must be one of {allowed}", "cms.version")
    return der[element[2]]


def _algorithm(der: bytes, kids: Children, element: Element, what: str) -> str:
    """AlgorithmIdentifier ::= SEQUENCE { algorithm OID, parameters ANY OPTIONAL } (RFC 5280 4.1.1.2)."""
    fields = kids(der, element[2], element[3]) if element[0] == 0x30 else []
    if not 1 <= len(fields) <= 2 or fields[0][0] != 0x06:
        raise _bad(f"{what} is not an AlgorithmIdentifier")
    return decode_oid(der[fields[0][2] : fields[0][3]])


def _name(der: bytes, kids: Children, element: Element, what: str) -> None:
    """Name ::= SEQUENCE OF SET SIZE (1..MAX) OF SEQUENCE { type OID, value ANY } (RFC 5280 4.1.2.4)."""
    if element[0] != 0x30:
        raise _bad(f"{what} is not a Name")
    for rdn in kids(der, element[2], element[3]):
        atvs = kids(der, rdn[2], rdn[3]) if rdn[0] == 0x31 else []
        if not atvs:
            raise _bad(f"{what} holds a RelativeDistinguishedName that is not a non-empty SET")
        for atv in atvs:
            pair = kids(der, atv[2], atv[3]) if atv[0] == 0x30 else []
            if len(pair) != 2 or pair[0][0] != 0x06:
                raise _bad(f"{what} holds an AttributeTypeAndValue that is not a type and a value")


def _octets(der: bytes, kids: Children, element: Element, *, plain: bool) -> bytes:
    """An OCTET STRING's value: primitive, or (BER, X.690 section 8.7.3)
    constructed of OCTET STRING segments, joined; the plain reader leaves
    that form to the BER path."""
    if element[0] == 0x04:
        return der[element[2] : element[3]]
    if element[0] != 0x24:
        raise _bad("eContent is not an OCTET STRING (RFC 5652 section 5.2)")
    if plain:
        raise NotPlainDer
    return b"".join(_octets(der, kids, s, plain=False) for s in kids(der, element[2], element[3]))


def _encap(der: bytes, kids: Children, element: Element, *, plain: bool) -> tuple[str, bytes | None]:
    """EncapsulatedContentInfo (RFC 5652 section 5.2): (eContentType, eContent or None)."""
    encap = kids(der, element[2], element[3])
    if not 1 <= len(encap) <= 2 or encap[0][0] != 0x06 or (len(encap) == 2 and encap[1][0] != 0xA0):
        raise _bad("EncapsulatedContentInfo must be eContentType and an optional [0] eContent")
    e_content_type = decode_oid(der[encap[0][2] : encap[0][3]])
    if len(encap) == 1:
        return e_content_type, None
    inner = kids(der, encap[1][2], encap[1][3])
    if len(inner) != 1:
        raise _bad(f"eContent [0] holds {len(inner)} elements, not one OCTET STRING")
    return e_content_type, _octets(der, kids, inner[0], plain=plain)


def _certificates(der: bytes, kids: Children, element: Element, *, plain: bool) -> tuple[bytes, ...]:
    """CertificateSet (RFC 5652 section 10.2.3), limited to X.509 Certificates:
    a voucher carries the signer's chain (RFC 8366 section 5.4), and any other
    choice (attribute or extended certificates) is nothing we could use."""
    out: list[bytes] = []
    for cert in kids(der, element[2], element[3]):
        if cert[0] != 0x30:
            raise _bad(
                f"certificates holds a non-certificate element (identifier 0x{cert[0]:02x})",
                "cms.certificates",
            )
        if not plain:
            require_der(der[cert[1] : cert[4]], CERT_NOT_DER, "cms.certificate-not-der")
        out.append(der[cert[1] : cert[4]])
    return tuple(out)


def require_der(data: bytes, detail: str, check: str) -> None:
    """Refuse BER indefinite lengths inside ``data`` with a CMS-level name.

    Used where BER may wrap an element but not reach inside it: a carried
    certificate (DER, RFC 5280 section 4.1; on the plain path
    cms._load_certificates asks only once a certificate fails to load), and
    the IssuerAndSerialNumber (asn1crypto misreads indefinite lengths inside
    a CHOICE, and no producer we know streams a few dozen octets)."""
    try:
        check_der(data, max_size=len(data), allow_indefinite=False)
    except MalformedInput as exc:
        raise MalformedInput(detail, check=check) from exc


def _crls(der: bytes, kids: Children, element: Element) -> tuple[bytes, ...]:
    """RevocationInfoChoices (RFC 5652 section 10.2.1): CertificateList, or
    other [1] SEQUENCE { format OID, info ANY }. CertificateLists are parsed
    by the checks (cms._check_parts)."""
    out: list[bytes] = []
    for choice in kids(der, element[2], element[3]):
        if choice[0] == 0x30:
            out.append(der[choice[1] : choice[4]])
            continue
        other = kids(der, choice[2], choice[3]) if choice[0] == 0xA1 else []
        if len(other) != 2 or other[0][0] != 0x06:
            raise _bad("crls holds an element that is no RevocationInfoChoice", "cms.crls")
    return tuple(out)


def _unsigned_attrs(der: bytes, kids: Children, element: Element) -> None:
    """UnsignedAttributes ::= SET SIZE (1..MAX) OF Attribute (RFC 5652 section 5.3)."""
    attributes = kids(der, element[2], element[3])
    if not attributes:
        raise _bad("unsignedAttrs is empty (SIZE (1..MAX))", "cms.unsigned-attrs")
    for attribute in attributes:
        fields = kids(der, attribute[2], attribute[3]) if attribute[0] == 0x30 else []
        if (
            len(fields) != 2
            or fields[0][0] != 0x06
            or fields[1][0] != 0x31
            or not kids(der, fields[1][2], fields[1][3])
        ):
            raise _bad("unsignedAttrs holds an element that is not an Attribute", "cms.unsigned-attrs")
        decode_oid(der[fields[0][2] : fields[0][3]])


@dataclass(frozen=True, kw_only=True)
class _Signer:
    digest_oid: str
    signed_attrs: bytes | None
    sid: Sid
    signature_algorithm: bytes
    signature: bytes


def _signer_info(der: bytes, kids: Children, element: Element, *, plain: bool) -> _Signer:
    """SignerInfo (RFC 5652 section 5.3), every field and nothing else."""
    si = kids(der, element[2], element[3]) if element[0] == 0x30 else []
    if len(si) < 5:
        raise _bad("SignerInfo lacks mandatory fields")
    sid: Sid
    if si[1][0] == 0x30:
        # RFC 5652 section 5.3: version 1 with issuerAndSerialNumber.
        _version(der, si[0], "SignerInfo version with issuerAndSerialNumber", (1,))
        if not plain:
            require_der(
                der[si[1][1] : si[1][4]],
                "IssuerAndSerialNumber uses BER indefinite lengths; send it in DER",
                "cms.ber-unsupported",
            )
        ias = kids(der, si[1][2], si[1][3])
        if len(ias) != 2:
            raise _bad("IssuerAndSerialNumber must be exactly an issuer and a serial number")
        _name(der, kids, ias[0], "IssuerAndSerialNumber issuer")
        sid = (der[ias[0][1] : ias[0][4]], _integer(der, ias[1], "IssuerAndSerialNumber serial"))
    elif si[1][0] == 0x80:
        # ... and version 3 with subjectKeyIdentifier.
        _version(der, si[0], "SignerInfo version with subjectKeyIdentifier", (3,))
        sid = der[si[1][2] : si[1][3]]
    else:
        raise _bad("SignerIdentifier is neither issuerAndSerialNumber nor subjectKeyIdentifier")
    digest_oid = _algorithm(der, kids, si[2], "SignerInfo digestAlgorithm")
    pos = 3
    signed_attrs: bytes | None = None
    if si[pos][0] == 0xA0:
        signed_attrs = der[si[pos][2] : si[pos][3]]
        pos += 1
    if len(si) < pos + 2 or si[pos + 1][0] != 0x04:
        raise _bad("SignerInfo lacks signatureAlgorithm and a primitive signature OCTET STRING")
    _algorithm(der, kids, si[pos], "SignerInfo signatureAlgorithm")
    extra = si[pos + 2 :]
    if extra:
        if len(extra) != 1 or extra[0][0] != 0xA1:
            raise _bad("SignerInfo has elements after signature other than [1] unsignedAttrs")
        _unsigned_attrs(der, kids, extra[0])
    return _Signer(
        digest_oid=digest_oid,
        signed_attrs=signed_attrs,
        sid=sid,
        signature_algorithm=der[si[pos][1] : si[pos][4]],
        signature=der[si[pos + 1][2] : si[pos + 1][3]],
    )


def _walk(der: bytes, kids: Children, *, plain: bool) -> Parts:
    """The whole ContentInfo > SignedData grammar (RFC 5652 sections 3, 5),
    strictly: every element of the unsigned structure is where the module
    puts it and nothing else is there, as OpenSSL's template decoder demands,
    so that no unsigned byte of a message goes unexamined.

    ``kids`` lists an element's children: the plain DER reader (which raises
    NotPlainDer for any BER form) or :func:`brski.asn1.ber_children`.
    """
    top = kids(der, 0, len(der))
    if len(top) != 1 or top[0][0] != 0x30:
        raise _bad("ContentInfo is not a SEQUENCE")
    info = kids(der, top[0][2], top[0][3])
    if len(info) != 2 or info[0][0] != 0x06 or info[1][0] != 0xA0:
        raise _bad("ContentInfo must be exactly contentType and [0] content (RFC 5652 section 3)")
    content_type = decode_oid(der[info[0][2] : info[0][3]])
    explicit = kids(der, info[1][2], info[1][3])
    if len(explicit) != 1:
        raise _bad(f"ContentInfo [0] holds {len(explicit)} elements, not one")
    if content_type != oids.ID_SIGNED_DATA:
        return Parts(content_type=content_type)
    fields = kids(der, explicit[0][2], explicit[0][3]) if explicit[0][0] == 0x30 else []
    if len(fields) < 4 or fields[1][0] != 0x31 or fields[2][0] != 0x30:
        raise _bad("SignedData must start with version, digestAlgorithms, encapContentInfo")
    _version(der, fields[0], "SignedData version", (1, 3, 4, 5))
    digest_algorithms = tuple(
        _algorithm(der, kids, a, "SignedData digestAlgorithms member")
        for a in kids(der, fields[1][2], fields[1][3])
    )
    e_content_type, content = _encap(der, kids, fields[2], plain=plain)
    rest = fields[3:]
    certificates: tuple[bytes, ...] = ()
    crls: tuple[bytes, ...] = ()
    if rest and rest[0][0] == 0xA0:
        certificates = _certificates(der, kids, rest[0], plain=plain)
        rest = rest[1:]
    if rest and rest[0][0] == 0xA1:
        crls = _crls(der, kids, rest[0])
        rest = rest[1:]
    if len(rest) != 1 or rest[0][0] != 0x31:
        raise _bad("SignedData must end with certificates, crls (both optional) and signerInfos")
    signers = [_signer_info(der, kids, si, plain=plain) for si in kids(der, rest[0][2], rest[0][3])]
    signer = signers[0] if len(signers) == 1 else None
    return Parts(
        content_type=content_type,
        e_content_type=e_content_type,
        content=content,
        certificates=certificates,
        crls=crls,
        digest_algorithms=digest_algorithms,
        signer_count=len(signers),
        digest_oid=signer.digest_oid if signer else "",
        signed_attrs=signer.signed_attrs if signer else None,
        sid=signer.sid if signer else b"",
        signature_algorithm=signer.signature_algorithm if signer else b"",
        signature=signer.signature if signer else b"",
    )


def extract_plain_der(der: bytes) -> Parts:
    """Read plain DER directly. A BER form (indefinite length, constructed
    OCTET STRING, high tag number) raises NotPlainDer; a structure RFC 5652
    does not allow raises MalformedInput, exactly as the other path would."""
    return _walk(der, _plain_children, plain=True)


def extract_asn1crypto(der: bytes) -> Parts:
    """The values through asn1crypto, for any BER form, after the same strict
    grammar walk as the plain reader (asn1crypto itself skips elements a
    SEQUENCE does not define, and those are exactly what must be refused)."""
    walked = _walk(der, ber_children, plain=False)
    content_info = asn1_cms.ContentInfo.load(der, strict=True)
    content_type = content_info["content_type"].dotted
    if content_type != oids.ID_SIGNED_DATA:
        return Parts(content_type=content_type)
    signed_data = content_info["content"]
    encap = signed_data["encap_content_info"]
    content: bytes | None
    try:
        e_content = encap["content"]
    except ValueError:
        # asn1crypto reads a constructed OCTET STRING only in the indefinite
        # form; the definite one is BER as well (X.690 section 8.7.3.2), so
        # the walk's joined segments stand in.
        if walked.content is None:
            raise
        content = walked.content
    else:
        detached = isinstance(e_content, asn1_core.Void) or e_content.contents is None
        if not detached and not isinstance(e_content, asn1_core.OctetString | asn1_core.ParsableOctetString):
            # RFC 5652 section 5.2: eContent is an OCTET STRING whatever its type.
            raise MalformedInput(
                f"eContent for {encap['content_type'].dotted} is not an OCTET STRING",
                check="cms.content-type",
            )
        content = None if detached else bytes(e_content)  # joins BER constructed chunks
    cert_set = signed_data["certificates"]
    certificates = () if isinstance(cert_set, asn1_core.Void) else tuple(
        choice.chosen.dump() for choice in cert_set if choice.name == "certificate"
    )
    crl_set = signed_data["crls"]
    crls = () if isinstance(crl_set, asn1_core.Void) else tuple(
        choice.chosen.dump() for choice in crl_set if choice.name == "crl"
    )
    signer_infos = signed_data["signer_infos"]
    parts = Parts(
        content_type=content_type,
        e_content_type=encap["content_type"].dotted,
        content=content,
        certificates=certificates,
        crls=crls,
        digest_algorithms=tuple(a["algorithm"].dotted for a in signed_data["digest_algorithms"]),
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
    return dataclasses.replace(
        parts,
        digest_oid=si["digest_algorithm"]["algorithm"].dotted,
        signed_attrs=None
        if isinstance(signed_attrs, asn1_core.Void) or signed_attrs.contents is None
        else signed_attrs.contents,
        sid=sid,
        signature_algorithm=si["signature_algorithm"].dump(),
        signature=bytes(si["signature"]),
    )
