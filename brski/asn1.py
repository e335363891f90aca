"""A bounded TLV walker run over untrusted ASN.1 before any real decoder sees it.

Why a separate pass: asn1crypto parses lazily and recursively, so a hostile
message can make it recurse once per nesting level (a few kilobytes of
``30 80 30 80 ...`` is enough to exhaust the interpreter stack), and it only
notices a length that overruns the buffer when that field is finally touched,
possibly after we have acted on other fields. Walking the whole tag-length
skeleton first, iteratively and without decoding any value, lets every parser
of CMS, CSRs and certificate bags refuse such input up front, in time linear
in its size, with a ``MalformedInput``/``PayloadTooLarge`` naming the rule.

What is accepted is DER plus one BER concession (X.690 section 8.1.3.6):
indefinite-length *constructed* encodings, terminated by end-of-contents,
because some CMS producers stream SignedData that way (RFC 5652 section 5.1
only asks for BER on the outer layers; signed attributes are DER, section
5.3). Lengths must otherwise be minimal (X.690 section 10.1), as must
high-tag-number forms (X.690 section 8.1.2.4).
"""

from __future__ import annotations

import functools
from collections import OrderedDict

from brski.errors import MalformedInput, PayloadTooLarge

__all__ = [
    "DEFAULT_MAX_DEPTH",
    "DEFAULT_MAX_SIZE",
    "NotPlainDer",
    "ber_children",
    "ber_element",
    "check_der",
    "decode_oid",
    "der_children",
    "der_element",
    "encode_length",
    "encode_oid",
    "encode_tlv",
    "encode_unsigned",
    "forget_well_framed",
    "remember_well_framed",
]

DEFAULT_MAX_SIZE = 65536
# A CMS voucher with an embedded certificate chain nests about 12 levels
# (ContentInfo > [0] > SignedData > [0] > Certificate > TBS > [3] > Extensions
# > Extension ...); 32 leaves room without admitting stack-exhaustion tricks.
DEFAULT_MAX_DEPTH = 32

# A 4-byte length field already admits 4 GiB, far beyond any max_size we use.
_MAX_LENGTH_OCTETS = 4
# Tag numbers above 2**28 do not appear in any ASN.1 module we parse.
_MAX_TAG_OCTETS = 4
_CONSTRUCTED = 0x20
_HIGH_TAG = 0x1F
_INDEFINITE = 0x80


def _fail(detail: str, what: str, offset: int) -> MalformedInput:
    return MalformedInput(f"{detail} at offset {offset}", check=f"asn1.{what}", offset=offset)


def encode_length(length: int) -> bytes:
    """Minimal DER length octets (X.690 section 10.1), for re-tagging encoded values."""
    if length < 0x80:
        return bytes([length])
    body = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def encode_tlv(ident: int, contents: bytes) -> bytes:
    """One DER element with a single-octet identifier."""
    return bytes([ident]) + encode_length(len(contents)) + contents


def encode_unsigned(value: int) -> bytes:
    """A non-negative INTEGER element (X.690 section 8.3: minimal two's complement)."""
    if value < 0:
        raise ValueError("negative INTEGER")
    return encode_tlv(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))


@functools.lru_cache(maxsize=256)
def encode_oid(dotted: str) -> bytes:
    """An OBJECT IDENTIFIER element (X.690 section 8.19) from its dotted form.

    Remembered: a handful of OIDs are written on every signature (about 6 us
    each to encode)."""
    arcs = [int(a) for a in dotted.split(".")]
    if len(arcs) < 2 or arcs[0] > 2 or (arcs[0] < 2 and arcs[1] >= 40):
        raise ValueError(f"not an OID: {dotted}")
    body = bytearray()
    for arc in (arcs[0] * 40 + arcs[1], *arcs[2:]):
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body.extend(reversed(chunk))
    return encode_tlv(0x06, bytes(body))


def _read_tag(data: bytes, pos: int, limit: int) -> tuple[int, bool, int]:
    """Return (tag number, constructed, offset after the identifier octets)."""
    first = data[pos]
    constructed = bool(first & _CONSTRUCTED)
    number = first & _HIGH_TAG
    pos += 1
    if number != _HIGH_TAG:
        return number, constructed, pos
    # X.690 section 8.1.2.4: base-128 tag number, no leading 0x80 octet,
    # and only for numbers that do not fit the low form.
    number = 0
    for count in range(_MAX_TAG_OCTETS):
        if pos >= limit:
            raise _fail("identifier octets run past the end", "truncated", pos)
        octet = data[pos]
        pos += 1
        if count == 0 and octet == 0x80:
            raise _fail("non-minimal high tag number", "tag", pos - 1)
        number = (number << 7) | (octet & 0x7F)
        if not octet & 0x80:
            if number < _HIGH_TAG:
                raise _fail("high tag form used for a low tag number", "tag", pos - 1)
            return number, constructed, pos
    raise _fail("tag number too large", "tag", pos)


def _read_length(
    data: bytes, pos: int, limit: int, *, constructed: bool, allow_indefinite: bool
) -> tuple[int | None, int]:
    """Return (content length or None for indefinite, offset of the contents)."""
    if pos >= limit:
        raise _fail("length octets run past the end", "truncated", pos)
    first = data[pos]
    pos += 1
    if first < 0x80:
        return first, pos
    if first == _INDEFINITE:
        # X.690 section 8.1.3.6.1: only constructed encodings may be indefinite.
        if not constructed:
            raise _fail("indefinite length on a primitive encoding", "length", pos - 1)
        if not allow_indefinite:
            raise _fail("indefinite length where DER is required", "indefinite", pos - 1)
        return None, pos
    count = first & 0x7F
    if first == 0xFF or count > _MAX_LENGTH_OCTETS:
        raise _fail(f"length field of {count} octets", "length", pos - 1)
    if pos + count > limit:
        raise _fail("length octets run past the end", "truncated", pos)
    body = data[pos : pos + count]
    # X.690 section 10.1: the definite form uses the fewest octets possible.
    if body[0] == 0 or (count == 1 and body[0] < 0x80):
        raise _fail("non-minimal length encoding", "length", pos - 1)
    return int.from_bytes(body, "big"), pos + count


def check_der(
    data: bytes,
    *,
    max_size: int = DEFAULT_MAX_SIZE,
    max_depth: int = DEFAULT_MAX_DEPTH,
    allow_indefinite: bool = True,
) -> None:
    """Refuse anything that is not exactly one well-framed, bounded ASN.1 element.

    Only the framing is checked (tags, lengths, nesting, end-of-contents, the
    end of the buffer); values are never decoded, so this is safe on any input
    and costs O(len(data)) with O(max_depth) memory. ``max_depth`` counts
    constructed encodings only; the outermost element is depth 1.
    ``allow_indefinite=False`` demands definite lengths throughout, as for
    CMS signed attributes (RFC 5652 section 5.3).
    """
    if len(data) > max_size:
        raise PayloadTooLarge(
            f"ASN.1 input of {len(data)} bytes exceeds {max_size}",
            check="asn1.size",
            limit=max_size,
        )
    total = len(data)
    if total == 0:
        raise _fail("empty input", "truncated", 0)

    known = _known if _known and type(data) is bytes else None
    # Each open constructed element: (end offset, or None while indefinite;
    # the offset it may not run past, inherited from the nearest definite end).
    stack: list[tuple[int | None, int]] = []
    pos = 0
    while True:
        if stack:
            end, limit = stack[-1]
            if end is not None:
                if pos == end:
                    stack.pop()
                    if not stack:
                        break
                    continue
            else:
                if pos + 2 <= limit and data[pos] == 0 and data[pos + 1] == 0:
                    stack.pop()  # end-of-contents, X.690 section 8.1.5
                    pos += 2
                    if not stack:
                        break
                    continue
                if pos >= limit:
                    raise _fail("indefinite-length element lacks end-of-contents", "length", pos)
        else:
            limit = total

        start = pos
        first = data[pos]
        if first == 0:
            # Universal 0 is reserved for end-of-contents (X.690 section 8.1.5).
            raise _fail("unexpected end-of-contents or tag 0", "tag", start)
        length: int | None
        second = data[pos + 1] if pos + 1 < limit else 0xFF
        if first & _HIGH_TAG != _HIGH_TAG and second < 0x80:
            # The common cases, inlined: low tag number, short definite length ...
            constructed = bool(first & _CONSTRUCTED)
            length = second
            pos += 2
        elif first & _HIGH_TAG != _HIGH_TAG and second == 0x81 and pos + 2 < limit and data[pos + 2] >= 0x80:
            # ... one length octet (minimal: X.690 section 10.1) ...
            constructed = bool(first & _CONSTRUCTED)
            length = data[pos + 2]
            pos += 3
        elif first & _HIGH_TAG != _HIGH_TAG and second == 0x82 and pos + 3 < limit and data[pos + 2] != 0:
            # ... or two, the first non-zero.
            constructed = bool(first & _CONSTRUCTED)
            length = (data[pos + 2] << 8) | data[pos + 3]
            pos += 4
        else:
            _number, constructed, pos = _read_tag(data, pos, limit)
            length, pos = _read_length(
                data, pos, limit, constructed=constructed, allow_indefinite=allow_indefinite
            )
        if length is not None and length > limit - pos:
            raise _fail(f"length {length} runs past the enclosing element", "length", start)

        if constructed:
            if len(stack) + 1 > max_depth:
                raise _fail(f"nesting deeper than {max_depth}", "depth", start)
            if length is None:
                stack.append((None, limit))
            elif length == 0:
                if not stack:
                    break
            elif (
                known is not None
                and first == 0x30
                and _KNOWN_MIN <= length <= _KNOWN_MAX
                and len(stack) + _KNOWN_DEPTH <= max_depth
                and pos + length - start in _known_sizes  # before slicing and hashing
                and data[start : pos + length] in known
            ):
                # Walked before as plain DER within _KNOWN_DEPTH levels: the
                # walk inside would pass again (see remember_well_framed).
                pos += length
                if not stack:
                    break
            else:
                stack.append((pos + length, pos + length))
        else:
            assert length is not None  # primitive indefinite refused above
            pos += length
            if not stack:
                break

    if pos != total:
        raise _fail(f"{total - pos} bytes after the outer element", "trailing-data", pos)


# --- elements already walked ---------------------------------------------------
#
# The same certificates arrive in message after message (a registrar's chain in
# every voucher-request, the MASA's signer and root in every voucher), and
# walking one costs about 30 us. The walk inside an element depends only on its
# bytes, so once those bytes have passed it on their own as plain DER (no
# indefinite length) within _KNOWN_DEPTH levels, check_der steps over them
# wherever they appear with that many levels to spare: the same answer, without
# walking them again. Bounded; remembered on the second sighting, so elements
# seen once (a device's own certificate) cost nothing extra.
_KNOWN_DEPTH = 12
_KNOWN_MIN = 128
_KNOWN_MAX = 8192
_KNOWN_SIZE = 256
_known: OrderedDict[bytes, None] = OrderedDict()
_known_sizes: set[int] = set()  # len() of what _known holds or held
_sighted: OrderedDict[bytes, None] = OrderedDict()


def remember_well_framed(der: bytes) -> None:
    """Note a SEQUENCE seen inside input that passed :func:`check_der` (a carried
    certificate); from its second sighting on, check_der steps over it."""
    if type(der) is not bytes or not _KNOWN_MIN <= len(der) <= _KNOWN_MAX + 4 or der[:1] != b"\x30":
        return
    if der in _known:
        return
    if der not in _sighted:
        _remember(_sighted, der)
        return
    try:
        check_der(der, max_size=len(der), max_depth=_KNOWN_DEPTH, allow_indefinite=False)
    except (MalformedInput, PayloadTooLarge):
        return
    _known_sizes.add(len(der))  # never shrinks: bounded by the size range, a stale size costs a lookup
    _remember(_known, der)


def _remember(memo: OrderedDict[bytes, None], der: bytes) -> None:
    memo[der] = None
    while len(memo) > _KNOWN_SIZE:
        try:
            memo.popitem(last=False)
        except KeyError:  # emptied by another thread meanwhile
            break


def forget_well_framed() -> None:
    """Empty the memo (tests that measure or isolate)."""
    _known.clear()
    _known_sizes.clear()
    _sighted.clear()


# --- reading plain DER ----------------------------------------------------------


class NotPlainDer(Exception):
    """Internal signal: this element uses a form the plain-DER reader leaves to
    a full decoder (high tag numbers, indefinite lengths). Never escapes a
    parser: callers catch it and fall back."""


def der_element(data: bytes, pos: int, end: int) -> tuple[int, int, int, int]:
    """(identifier octet, element start, contents start, contents end) at ``pos``.

    For input that already passed :func:`check_der`; bounds are re-checked so
    a misuse cannot read past ``end``.
    """
    if pos + 2 > end:
        raise _fail("element runs past its container", "truncated", pos)
    start = pos
    ident = data[pos]
    if ident & _HIGH_TAG == _HIGH_TAG:
        raise NotPlainDer
    first = data[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    elif first == _INDEFINITE:
        raise NotPlainDer
    else:
        count = first & 0x7F
        if count > _MAX_LENGTH_OCTETS or pos + count > end:
            raise _fail("length field runs past its container", "length", pos)
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    if pos + length > end:
        raise _fail("element runs past its container", "length", pos)
    return ident, start, pos, pos + length


def der_children(data: bytes, start: int, end: int) -> list[tuple[int, int, int, int]]:
    """The elements directly inside contents ``data[start:end]``."""
    out: list[tuple[int, int, int, int]] = []
    pos = start
    while pos < end:
        element = der_element(data, pos, end)
        out.append(element)
        pos = element[3]
    return out


def decode_oid(contents: bytes) -> str:
    """Dotted form of OBJECT IDENTIFIER contents (X.690 section 8.19), minimal arcs only."""
    cached = _OID_CACHE.get(contents)
    if cached is not None:
        return cached
    dotted = _decode_oid(contents)
    if len(_OID_CACHE) < 1024:  # the OIDs we meet are few; bound what a peer can add
        _OID_CACHE[bytes(contents)] = dotted
    return dotted


_OID_CACHE: dict[bytes, str] = {}


def _decode_oid(contents: bytes) -> str:
    if not contents or contents[-1] & 0x80:
        raise MalformedInput("OBJECT IDENTIFIER is empty or truncated", check="asn1.oid")
    arcs: list[int] = []
    value = 0
    fresh = True
    for octet in contents:
        if fresh and octet == 0x80:
            raise MalformedInput("non-minimal OBJECT IDENTIFIER arc", check="asn1.oid")
        value = (value << 7) | (octet & 0x7F)
        fresh = not octet & 0x80
        if fresh:
            arcs.append(value)
            value = 0
    first = arcs[0]
    head = [0, first] if first < 40 else [1, first - 40] if first < 80 else [2, first - 80]
    return ".".join(str(a) for a in (*head, *arcs[1:]))


# --- reading BER (indefinite lengths) -------------------------------------------

# (identifier octet, element start, contents start, contents end, element end):
# for a definite length the contents end where the element does; for an
# indefinite one the end-of-contents octets lie between the two.
BerElement = tuple[int, int, int, int, int]


def ber_element(data: bytes, pos: int, end: int) -> BerElement:
    """One element at ``pos``, definite or indefinite (X.690 section 8.1.3.6).

    For input that already passed :func:`check_der` (so nesting is bounded
    and every indefinite element is terminated); bounds are re-checked so a
    misuse cannot read past ``end``. A high tag number is reported by its
    first identifier octet (low five bits all ones), which matches no tag a
    caller expects, so such an element can be skipped but never mistaken.
    """
    start = pos
    if pos >= end:
        raise _fail("element runs past its container", "truncated", pos)
    _number, constructed, pos = _read_tag(data, pos, end)
    length, pos = _read_length(data, pos, end, constructed=constructed, allow_indefinite=True)
    if length is not None:
        if pos + length > end:
            raise _fail("element runs past its container", "length", pos)
        return data[start], start, pos, pos + length, pos + length
    contents = pos
    while True:
        if pos + 2 > end:
            raise _fail("indefinite-length element lacks end-of-contents", "length", pos)
        if data[pos] == 0 and data[pos + 1] == 0:
            return data[start], start, contents, pos, pos + 2
        pos = ber_element(data, pos, end)[4]


def ber_children(data: bytes, start: int, end: int) -> list[BerElement]:
    """The elements directly inside contents ``data[start:end]`` (BER or DER)."""
    out: list[BerElement] = []
    pos = start
    while pos < end:
        element = ber_element(data, pos, end)
        out.append(element)
        pos = element[4]
    return out
