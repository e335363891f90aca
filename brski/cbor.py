"""Bounded decoding of untrusted CBOR (RFC 8949), on cbor2.

cbor2 does the decoding; this module fixes the options and adds what cbor2
leaves to its caller, so every voucher parser gets the same guarantees:

* the input is refused above ``max_size`` bytes before any work is done;
* nesting is bounded by cbor2's ``max_depth``; duplicate map keys are refused
  (``allow_duplicate_keys=False``: two parsers must not disagree about what a
  signed payload says);
* tags stay inert: an allowed tag becomes :class:`Tagged`, any other tag is
  refused, including those cbor2 would turn into live objects (datetimes,
  bignums, and the value-sharing tags 28/29 that can build cycles);
* exactly one item: trailing bytes are refused;
* the result holds only ``int``, ``bytes``, ``str``, ``float``, ``bool``,
  ``None``, ``list``, ``dict`` and :class:`Tagged`; map keys are scalars (or a
  tag around one, as the absolute-SID tag 47 of RFC 9254 needs); simple values
  other than false/true/null are refused;
* every failure is a :class:`brski.errors.MalformedInput` or
  :class:`brski.errors.PayloadTooLarge` with a ``cbor.*`` check name.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

import cbor2

from brski.errors import MalformedInput, PayloadTooLarge

__all__ = ["DEFAULT_MAX_DEPTH", "DEFAULT_MAX_SIZE", "Tagged", "check_cbor", "decode_cbor"]

DEFAULT_MAX_SIZE = 65536
# A COSE_Sign1 with an x5bag needs 4 levels, a SID-keyed voucher 3 (4 with a
# tag 47 key); 16 leaves room for extensions without admitting abuse.
DEFAULT_MAX_DEPTH = 16

# Tags cbor2 decodes itself (RFC 8949 3.4 and the IANA registry entries it
# implements). Each is overridden so that none turns into a live object; a
# tag cbor2 adds later and is not listed here is still caught by the type
# check of the result.
_BUILTIN_TAGS = (0, 1, 2, 3, 4, 5, 25, 28, 29, 30, 35, 36, 37, 100, 256, 258, 260, 261,
                 262, 263, 270, 1004, 55799)
_SCALARS = (int, bytes, str, float, bool, type(None))


@dataclass(frozen=True, kw_only=True)
class Tagged:
    """A CBOR tag and its content, kept inert (no semantic decoding)."""

    tag: int
    value: Any


class _Refused(Exception):
    def __init__(self, error: MalformedInput) -> None:
        super().__init__(error.detail)
        self.error = error


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
            f"CBOR item of {len(buf)} bytes exceeds the {max_size}-byte limit", check="cbor.size"
        )
    if not buf:
        raise _fail("empty CBOR input", "truncated")
    tags = frozenset(allowed_tags or ())

    def on_tag(tag: cbor2.CBORTag, immutable: bool) -> Tagged:
        return _tagged(tag.tag, tag.value, tags)

    def builtin(number: int) -> Callable[[Any, bool], Tagged]:
        return lambda value, immutable: _tagged(number, value, tags)

    fp = io.BytesIO(buf)
    decoder = cbor2.CBORDecoder(
        fp,
        tag_hook=on_tag,
        semantic_decoders={number: builtin(number) for number in _BUILTIN_TAGS},
        max_depth=max_depth,
        allow_duplicate_keys=False,
    )
    try:
        value = decoder.decode()
    except cbor2.CBORDecodeEOF as exc:
        raise _fail(f"CBOR input ends inside an item: {exc}", "truncated") from exc
    except cbor2.CBORDecodeError as exc:
        raise _translate(exc) from exc
    except (ValueError, TypeError, OverflowError, RecursionError, MemoryError) as exc:
        raise _fail(f"malformed CBOR: {exc}", "malformed") from exc
    if fp.tell() != len(buf):
        raise _fail(f"{len(buf) - fp.tell()} trailing bytes after the CBOR item", "trailing")
    return _plain(value)


def _tagged(number: int, value: Any, allowed: frozenset[int]) -> Tagged:
    if number not in allowed:
        raise _Refused(_fail(f"CBOR tag {number} is not allowed here", "tag"))
    return Tagged(tag=number, value=value)


def _translate(exc: cbor2.CBORDecodeError) -> MalformedInput:
    """Name the check cbor2 failed; its messages are the only handle it gives."""
    cause = exc.__cause__ or exc.__context__
    while cause is not None:
        if isinstance(cause, _Refused):
            return cause.error
        cause = cause.__cause__ or cause.__context__
    text = str(exc)
    if "nesting depth" in text:
        return _fail(f"CBOR nesting deeper than allowed: {text}", "depth")
    if "uplicate" in text:
        return _fail(f"duplicate map key: {text}", "duplicate-key")
    if "text string" in text:
        return _fail(f"CBOR text string is not valid UTF-8: {text}", "utf8")
    return _fail(f"malformed CBOR: {text}", "malformed")


def _plain(value: Any) -> Any:
    """Only the plain types listed in the module docstring; depth is already bounded.

    cbor2 decodes a tag's content as immutable (an array becomes a tuple); the
    callers get lists, whatever the context.
    """
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, Tagged):
        return Tagged(tag=value.tag, value=_plain(value.value))
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, Mapping):  # cbor2 gives a frozendict inside a tag
        for key in value:
            _check_key(key)
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, cbor2.CBORSimpleValue) or value is cbor2.undefined:
        raise _fail(f"CBOR simple value {value!r} is not allowed", "simple")
    raise _fail(f"CBOR item decodes to an unexpected {type(value).__name__}", "type")


def _check_key(key: Any) -> None:
    """Map keys must be scalars; a tag may wrap a scalar (tag 47)."""
    inner = key.value if isinstance(key, Tagged) else key
    if not isinstance(inner, _SCALARS):
        raise _fail("CBOR map keys must be scalars", "key-type")
    if isinstance(inner, float) and inner != inner:
        raise _fail("NaN is not a usable map key", "key-type")
