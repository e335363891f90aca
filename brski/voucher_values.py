"""Leaf values of the voucher model: RFC 7951 JSON text <-> Python, and their checks.

Each leaf's ``kind`` (declared in :mod:`brski.voucher_model`) picks how its
JSON value is decoded (:func:`decode_leaf`), emitted (:func:`encode_leaf`) and
checked on construction (:func:`normalise`). Refusals are
:class:`brski.errors.VoucherInvalid` with ``check="<prefix>.<rule>"``, where
the prefix is the structure's (``voucher`` or ``voucher-request``).
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from brski.errors import VoucherInvalid
from brski.voucher_model import Assertion, Leaf

__all__ = ["decode_leaf", "encode_leaf", "normalise"]

_DATE_RE = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r"(?:\.([0-9]{1,9}))?(Z|[+-][0-9]{2}:[0-9]{2})"
)
_B64_STD_RE = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_B64_ANY_RE = re.compile(r"[A-Za-z0-9+/_-]*={0,2}")
# RFC 3986 section 3.1 scheme, then no whitespace or controls (inet:uri, RFC 6991).
_URI_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:[^\s\x00-\x1f\x7f]*")


# --- leaf values: JSON -> Python -------------------------------------------------


def _parse_datetime(text: str, where: str, prefix: str) -> datetime:
    # RFC 6991 yang:date-and-time (RFC 3339 profile): 'Z' or a numeric offset,
    # e.g. RFC 8995 Appendix C writes "2021-04-13T17:43:24.589-04:00".
    m = _DATE_RE.fullmatch(text)
    if m is None:
        raise VoucherInvalid(
            f"{where} is not a yang:date-and-time: {text[:40]!r}", check=f"{prefix}.date-and-time"
        )
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    frac, offset = m.group(7), m.group(8)
    micro = int((frac or "0").ljust(6, "0")[:6])
    if offset == "Z":
        tz = UTC
    else:
        oh, om = int(offset[1:3]), int(offset[4:6])
        if oh > 23 or om > 59:
            raise VoucherInvalid(f"{where} has a bad UTC offset", check=f"{prefix}.date-and-time")
        sign = -1 if offset[0] == "-" else 1
        tz = timezone(sign * timedelta(hours=oh, minutes=om))
    try:
        # A leap second (:60) is legal RFC 3339 but not representable; refused.
        return datetime(year, month, day, hour, minute, second, micro, tzinfo=tz)
    except ValueError as exc:
        raise VoucherInvalid(f"{where}: {exc}", check=f"{prefix}.date-and-time") from None


def _parse_base64(text: str, where: str, prefix: str, *, lenient: bool) -> bytes:
    """RFC 7951 section 6.6 / RFC 8995 section 5: binary travels as RFC 4648 base64.

    ``lenient`` (nonces only) also takes the base64url, unpadded form that RFC
    8995 Appendix C uses ("-_XE9zK9q8Ll1qylMtLKeg"), since deployed pledges send it.
    """
    if lenient:
        mixed = ("-" in text or "_" in text) and ("+" in text or "/" in text)
        if _B64_ANY_RE.fullmatch(text) is None or mixed:
            raise VoucherInvalid(f"{where} is not base64", check=f"{prefix}.base64")
        body = text.rstrip("=")
        if len(body) % 4 == 1 or (text != body and len(text) % 4 != 0):
            raise VoucherInvalid(f"{where} has a bad base64 length", check=f"{prefix}.base64")
        text = body.replace("-", "+").replace("_", "/") + "=" * (-len(body) % 4)
    elif _B64_STD_RE.fullmatch(text) is None or len(text) % 4 != 0:
        raise VoucherInvalid(f"{where} is not padded base64", check=f"{prefix}.base64")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise VoucherInvalid(f"{where} is not base64", check=f"{prefix}.base64") from None


def decode_leaf(leaf: Leaf, value: Any, prefix: str) -> Any:
    where = leaf.name
    if leaf.kind == "boolean":
        if isinstance(value, str) and value in ("true", "false"):
            # RFC 8366 section 5.2 example 2 writes "true" as a string; the YANG type
            # is boolean (RFC 7951 section 6.3: a JSON literal). rfc8366bis fixes it.
            raise VoucherInvalid(
                f"{where} must be JSON true/false, not the string {value!r}",
                check=f"{prefix}.boolean-as-string",
            )
        if not isinstance(value, bool):
            raise VoucherInvalid(f"{where} must be a boolean", check=f"{prefix}.type", leaf=where)
        return value
    if leaf.kind == "names":
        # RFC 7951 section 5.3: a leaf-list is a JSON array.
        if not isinstance(value, list):
            raise VoucherInvalid(f"{where} must be an array", check=f"{prefix}.type", leaf=where)
        return tuple(value)
    if not isinstance(value, str):
        raise VoucherInvalid(f"{where} must be a JSON string", check=f"{prefix}.type", leaf=where)
    if leaf.kind == "datetime":
        return _parse_datetime(value, where, prefix)
    if leaf.kind in ("binary", "sha256", "nonce"):
        return _parse_base64(value, where, prefix, lenient=leaf.kind == "nonce")
    return value  # assertion, serial, uri, opaque: checked by the constructor


# --- leaf values: Python -> JSON -------------------------------------------------


def _format_datetime(value: datetime) -> str:
    offset = value.utcoffset() or timedelta(0)
    if offset.seconds % 60 or offset.microseconds:
        value, offset = value.astimezone(UTC), timedelta(0)
    text = (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d}"
        f"T{value.hour:02d}:{value.minute:02d}:{value.second:02d}"
    )
    if value.microsecond % 1000 == 0 and value.microsecond:
        text += f".{value.microsecond // 1000:03d}"
    elif value.microsecond:
        text += f".{value.microsecond:06d}"
    if offset == timedelta(0):
        return text + "Z"
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    return f"{text}{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def encode_leaf(leaf: Leaf, value: Any) -> Any:
    if leaf.kind == "datetime":
        return _format_datetime(value)
    if leaf.kind in ("binary", "sha256", "nonce"):
        return base64.b64encode(value).decode("ascii")
    if leaf.kind == "names":
        return list(value)
    if leaf.kind == "assertion":
        return str(value.value)
    return value


# --- construction-time checks ----------------------------------------------------

# RFC 7950 section 9.4: a YANG string holds tab, LF, CR and the characters
# %x20-D7FF / %xE000-FFFD / %x10000-10FFFF; no other control character, no
# surrogate, no U+FFFE or U+FFFF.
_NOT_YANG_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _check_yang_string(value: str, where: str, prefix: str) -> None:
    bad = _NOT_YANG_CHAR.search(value)
    if bad is not None:
        raise VoucherInvalid(
            f"{where} holds U+{ord(bad.group()):04X} at index {bad.start()}, "
            "not a YANG string character (RFC 7950 section 9.4)",
            check=f"{prefix}.string",
            leaf=where,
        )


def _bad_type(where: str, value: Any, prefix: str) -> VoucherInvalid:
    # Built only when raised: formatting it for every leaf cost more than the checks.
    return VoucherInvalid(f"{where} has the wrong type {type(value).__name__}", check=f"{prefix}.type", leaf=where)


def normalise(leaf: Leaf, value: Any, prefix: str) -> Any:
    """Check one field's Python value against its YANG type; return the stored form."""
    where = leaf.name
    kind = leaf.kind
    if kind == "datetime":
        if not isinstance(value, datetime):
            raise _bad_type(where, value, prefix)
        if value.tzinfo is None or value.utcoffset() is None:
            # yang:date-and-time always carries an offset; a naive datetime would
            # be emitted as local time of whichever host serialises it.
            raise VoucherInvalid(f"{where} is a naive datetime", check=f"{prefix}.naive-datetime")
        return value
    if kind == "assertion":
        if not isinstance(value, str):
            raise _bad_type(where, value, prefix)
        try:
            return Assertion(value)
        except ValueError:
            raise VoucherInvalid(
                f"assertion {value[:40]!r} is not in the enumeration", check=f"{prefix}.assertion"
            ) from None
    if kind in ("binary", "sha256", "nonce"):
        if not isinstance(value, bytes | bytearray):
            raise _bad_type(where, value, prefix)
        value = bytes(value)
        if kind == "nonce" and not 8 <= len(value) <= 32:
            # RFC 8366 section 5.3: nonce is binary { length "8..32" }.
            raise VoucherInvalid(
                f"nonce is {len(value)} bytes, not 8..32", check=f"{prefix}.nonce-length"
            )
        if kind == "sha256" and len(value) != 32:
            # rfc8366bis: the *-pubk-sha256 leaves hold a SHA-256 digest.
            raise VoucherInvalid(f"{where} is not 32 bytes", check=f"{prefix}.sha256-length")
        return value
    if kind == "boolean":
        if not isinstance(value, bool):
            raise _bad_type(where, value, prefix)
        return value
    if kind == "names":
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise _bad_type(where, value, prefix)
        for name in value:
            _check_yang_string(name, where, prefix)
            if not name:
                raise VoucherInvalid(f"empty name in {where}", check=f"{prefix}.extensions")
        return tuple(value)
    if not isinstance(value, str):
        raise _bad_type(where, value, prefix)
    _check_yang_string(value, where, prefix)
    if kind == "serial" and not value:
        # RFC 8366 section 5.3: the pledge MUST match its serial-number to this
        # value; an empty one can match no IDevID (RFC 8995 section 2.3.1).
        raise VoucherInvalid("serial-number is empty", check=f"{prefix}.serial-number")
    if kind == "uri" and _URI_RE.fullmatch(value) is None:
        raise VoucherInvalid(f"{where} is not a URI", check=f"{prefix}.uri")
    return value
