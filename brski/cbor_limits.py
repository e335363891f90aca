"""A bounded, iterative CBOR decoder for untrusted bytes (RFC 8949).

Why not ``cbor2.loads``: it recurses once per nesting level (10,000 nested
arrays end in ``RecursionError`` or a crash), silently keeps the last of two
duplicate map keys (so two parsers can disagree about what a signed payload
says), and turns tags into live objects (value-sharing tags 28/29 can even
build cyclic structures). Voucher artifacts are small and use a tiny subset of
CBOR, so this module decodes that subset itself, with an explicit stack:

* the input is refused above ``max_size`` bytes before any work is done;
* container nesting (arrays, maps, tags) is refused beyond ``max_depth``;
* duplicate map keys, trailing bytes, reserved encodings, tags outside an
  allow-list and simple values other than false/true/null are refused;
* every failure is a :class:`brski.errors.MalformedInput` or
  :class:`brski.errors.PayloadTooLarge` with a ``cbor.*`` check name.

Decoded values are plain Python: ``int``, ``bytes``, ``str``, ``float``,
``bool``, ``None``, ``list``, ``dict`` and :class:`Tagged` for tags. Map keys
must be scalars (or a tagged scalar, as the absolute-SID tag 47 of RFC 9254
needs); array or map keys never appear in vouchers and are refused.
"""

from __future__ import annotations

import struct
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from brski.errors import MalformedInput, PayloadTooLarge

__all__ = [
    "DEFAULT_MAX_DEPTH",
    "DEFAULT_MAX_SIZE",
    "Tagged",
    "check_cbor",
    "decode_cbor",
]

DEFAULT_MAX_SIZE = 65536
# A COSE_Sign1 with an x5bag needs 4 levels, a SID-keyed voucher 3 (4 with a
# tag 47 key); 16 leaves room for extensions without admitting abuse.
DEFAULT_MAX_DEPTH = 16


@dataclass(frozen=True, kw_only=True)
class Tagged:
    """A CBOR tag and its content, kept inert (no semantic decoding)."""

    tag: int
    value: Any


class _Break:
    """Marker for the 0xFF "break" stop code of indefinite-length items."""


_BREAK = _Break()
_FLOAT_FORMATS = {2: ">e", 4: ">f", 8: ">d"}
_NO_KEY = object()


class _Frame:
    """One open container on the decoding stack."""

    __slots__ = ("chunks", "items", "key", "kind", "remaining", "tag")

    def __init__(self, kind: str, remaining: int | None, *, tag: int = 0) -> None:
        self.kind = kind  # "array", "map", "tag", "bytes", "text"
        self.remaining = remaining  # None: indefinite length
        self.tag = tag
        self.items: list[Any] | dict[Any, Any] | None = (
            [] if kind == "array" else {} if kind == "map" else None
        )
        self.key: Any = _NO_KEY
        self.chunks: list[Any] = []


def _fail(detail: str, what: str) -> MalformedInput:
    return MalformedInput(detail, check=f"cbor.{what}")


def check_cbor(
    data: bytes,
    *,
    max_size: int = DEFAULT_MAX_SIZE,
    max_depth: int = DEFAULT_MAX_DEPTH,
    allowed_tags: Collection[int] | None = None,
) -> None:
    """Refuse ``data`` unless it is exactly one well-formed, bounded CBOR item."""
    decode_cbor(data, max_size=max_size, max_depth=max_depth, allowed_tags=allowed_tags)


def decode_cbor(
    data: bytes,
    *,
    max_size: int = DEFAULT_MAX_SIZE,
    max_depth: int = DEFAULT_MAX_DEPTH,
    allowed_tags: Collection[int] | None = None,
) -> Any:
    """Decode exactly one CBOR data item from untrusted ``data``.

    ``allowed_tags`` lists the tag numbers accepted anywhere in the item;
    ``None`` admits none (the safest default for payloads that use no tags).
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise _fail("CBOR input must be bytes", "type")
    buf = bytes(data)
    if len(buf) > max_size:
        raise PayloadTooLarge(
            f"CBOR item of {len(buf)} bytes exceeds the {max_size}-byte limit",
            check="cbor.size",
        )
    if not buf:
        raise _fail("empty CBOR input", "truncated")
    tags = frozenset(allowed_tags or ())
    pos = 0
    end = len(buf)
    stack: list[_Frame] = []
    result: Any = _NO_KEY

    while True:
        # ---- read one head -------------------------------------------------
        if pos >= end:
            raise _fail("CBOR input ends inside an item", "truncated")
        initial = buf[pos]
        pos += 1
        major = initial >> 5
        info = initial & 0x1F
        item: Any
        value: int | None
        if info < 24:
            value = info
        elif info <= 27:
            width = 1 << (info - 24)
            if pos + width > end:
                raise _fail("CBOR head runs past the end of input", "truncated")
            value = int.from_bytes(buf[pos : pos + width], "big")
            pos += width
        elif info == 31:
            value = None
        else:
            raise _fail(f"reserved additional information {info}", "reserved")

        parent = stack[-1] if stack else None
        if parent is not None and parent.kind in ("bytes", "text"):
            # Inside an indefinite-length string only definite chunks of the
            # same major type, or the break code, may appear.
            want = 2 if parent.kind == "bytes" else 3
            if initial == 0xFF:
                item = _BREAK
            elif major != want or value is None:
                raise _fail("bad chunk inside an indefinite-length string", "chunk")
            else:
                item, pos = _read_string(buf, pos, value, major)
        elif major in (0, 1):
            if value is None:
                raise _fail("integers cannot have indefinite length", "reserved")
            item = value if major == 0 else -1 - value
        elif major in (2, 3):
            if value is None:
                if len(stack) >= max_depth:
                    raise _fail(f"CBOR nesting deeper than {max_depth}", "depth")
                stack.append(_Frame("bytes" if major == 2 else "text", None))
                continue
            item, pos = _read_string(buf, pos, value, major)
        elif major in (4, 5):
            if len(stack) >= max_depth:
                raise _fail(f"CBOR nesting deeper than {max_depth}", "depth")
            if value is not None and value > end - pos:
                # Every element takes at least one byte: a claimed count
                # larger than what is left is a lie, refuse before allocating.
                raise _fail("CBOR container count exceeds the input", "truncated")
            frame = _Frame("array" if major == 4 else "map", value)
            if value == 0:
                item = frame.items
            else:
                stack.append(frame)
                continue
        elif major == 6:
            if value is None:
                raise _fail("tags cannot have indefinite length", "reserved")
            if value not in tags:
                raise _fail(f"CBOR tag {value} is not allowed here", "tag")
            if len(stack) >= max_depth:
                raise _fail(f"CBOR nesting deeper than {max_depth}", "depth")
            stack.append(_Frame("tag", 1, tag=value))
            continue
        else:  # major 7
            if initial == 0xFF:
                item = _BREAK
            elif info == 20:
                item = False
            elif info == 21:
                item = True
            elif info == 22:
                item = None
            elif info in (25, 26, 27) and value is not None:
                width = 1 << (info - 24)
                item = struct.unpack(_FLOAT_FORMATS[width], value.to_bytes(width, "big"))[0]
            else:
                raise _fail(f"CBOR simple value {initial:#04x} is not allowed", "simple")

        # ---- attach the finished item, closing containers as they fill ----
        while True:
            if not stack:
                if item is _BREAK:
                    raise _fail("unexpected break code", "break")
                result = item
                break
            top = stack[-1]
            if item is _BREAK:
                if top.remaining is not None or top.kind == "tag":
                    raise _fail("break code inside a definite-length item", "break")
                if top.kind == "map" and top.key is not _NO_KEY:
                    raise _fail("map ends between a key and its value", "break")
                stack.pop()
                item = _close(top)
                continue
            if top.kind in ("bytes", "text"):
                top.chunks.append(item)
                break
            if top.kind == "tag":
                stack.pop()
                item = Tagged(tag=top.tag, value=item)
                continue
            if top.kind == "array":
                assert isinstance(top.items, list)
                top.items.append(item)
            else:
                assert isinstance(top.items, dict)
                if top.key is _NO_KEY:
                    top.key = _check_key(item)
                    break
                if top.key in top.items:
                    raise _fail(f"duplicate map key {top.key!r}", "duplicate-key")
                top.items[top.key] = item
                top.key = _NO_KEY
            if top.remaining is not None:
                top.remaining -= 1
                if top.remaining == 0:
                    stack.pop()
                    item = top.items
                    continue
            break
        if result is not _NO_KEY:
            break

    if pos != end:
        raise _fail(f"{end - pos} trailing bytes after the CBOR item", "trailing")
    return result


def _read_string(buf: bytes, pos: int, length: int, major: int) -> tuple[bytes | str, int]:
    if length > len(buf) - pos:
        raise _fail("CBOR string runs past the end of input", "truncated")
    raw = buf[pos : pos + length]
    if major == 2:
        return raw, pos + length
    try:
        return raw.decode("utf-8"), pos + length
    except UnicodeDecodeError as exc:
        raise _fail("CBOR text string is not valid UTF-8", "utf8") from exc


def _close(frame: _Frame) -> Any:
    """The value of an indefinite-length container that met its break code."""
    if frame.kind == "bytes":
        return b"".join(frame.chunks)
    if frame.kind == "text":
        return "".join(frame.chunks)
    return frame.items


def _check_key(key: Any) -> Any:
    """Map keys must be hashable scalars; a tag may wrap a scalar (tag 47)."""
    inner = key.value if isinstance(key, Tagged) else key
    if isinstance(inner, list | dict | Tagged):
        raise _fail("CBOR map keys must be scalars", "key-type")
    if isinstance(key, float) and key != key:
        raise _fail("NaN is not a usable map key", "key-type")
    return key
