"""brski.asn1.check_der: the framing walker that guards every ASN.1 parser."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from brski.asn1 import check_der, encode_length
from brski.errors import MalformedInput, PayloadTooLarge
from tests import VECTORS

RFC8995_VOUCHER = VECTORS / "rfc8995" / "voucher_00-D0-E5-F2-00-02.der"


def _refused(data: bytes, check: str, **kwargs: Any) -> MalformedInput:
    with pytest.raises(MalformedInput) as info:
        check_der(data, **kwargs)
    assert info.value.check == check, info.value
    return info.value


def _nest(levels: int, inner: bytes = b"\x05\x00") -> bytes:
    """``levels`` definite-length SEQUENCEs around ``inner``."""
    data = inner
    for _ in range(levels):
        data = b"\x30" + encode_length(len(data)) + data
    return data


# --- accepted ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"\x05\x00",  # NULL
        b"\x30\x00",  # empty SEQUENCE
        b"\x30\x06\x02\x01\x01\x04\x01\xff",
        b"\x04\x81\x80" + b"a" * 128,  # long form where it is needed
        b"\x04\x82\x01\x00" + b"a" * 256,
        b"\x9f\x1f\x00",  # [31] in the high-tag-number form
        b"\xbf\x81\x00\x02\x05\x00",  # [128] constructed
    ],
)
def test_well_formed_der_is_accepted(data: bytes) -> None:
    check_der(data)


def test_published_cms_voucher_is_accepted() -> None:
    check_der(RFC8995_VOUCHER.read_bytes())


@pytest.mark.parametrize(
    "data",
    [
        b"\x30\x80\x02\x01\x01\x00\x00",
        b"\x30\x80\x30\x80\x05\x00\x00\x00\x00\x00",
        # indefinite inside definite, EOC before the parent's end
        b"\x30\x06\x30\x80\x05\x00\x00\x00",
        # constructed OCTET STRING in chunks, as streaming CMS producers write eContent
        b"\xa0\x80\x24\x80\x04\x02ab\x04\x01c\x00\x00\x00\x00",
    ],
)
def test_ber_indefinite_length_is_accepted(data: bytes) -> None:
    check_der(data)


def test_depth_limit_counts_constructed_levels_only() -> None:
    check_der(_nest(32))  # the NULL inside is primitive and does not count
    check_der(_nest(5), max_depth=5)
    _refused(_nest(6), "asn1.depth", max_depth=5)


def test_input_of_exactly_max_size_is_accepted() -> None:
    data = b"\x04\x81\xfc" + b"x" * 252
    assert len(data) == 255
    check_der(data, max_size=255)


# --- refused ----------------------------------------------------------------------


def test_oversized_input_is_payload_too_large() -> None:
    data = b"\x04\x82\x01\x00" + b"a" * 256
    with pytest.raises(PayloadTooLarge) as info:
        check_der(data, max_size=259)
    assert info.value.check == "asn1.size"
    with pytest.raises(PayloadTooLarge):
        check_der(b"\x00" * 65537)


def test_empty_input() -> None:
    _refused(b"", "asn1.truncated")


@pytest.mark.parametrize(
    ("data", "check"),
    [
        (b"\x30\x05\x02\x01\x01", "asn1.length"),  # runs past the buffer
        (b"\x30\x03\x02\x05\x00\x00\x00\x00", "asn1.length"),  # child overruns parent
        (b"\x04\x84\xff\xff\xff\xff", "asn1.length"),  # 4 GiB claimed
        (b"\x04\x85\x00\x00\x00\x00\x01\x00", "asn1.length"),  # 5-octet length field
        (b"\x04\xff\x00", "asn1.length"),  # reserved length octet
        (b"\x04\x81\x05abcde", "asn1.length"),  # long form for a short length
        (b"\x04\x82\x00\x05abcde", "asn1.length"),  # leading zero length octet
        (b"\x04\x80abc\x00\x00", "asn1.length"),  # primitive indefinite
        (b"\x30\x80\x05\x00", "asn1.length"),  # indefinite without end-of-contents
        (b"\x30\x04\x30\x80\x05\x00", "asn1.length"),  # EOC missing before parent end
        (b"\x30", "asn1.truncated"),
        (b"\x04\x82\x01", "asn1.truncated"),
        (b"\x9f", "asn1.truncated"),
        (b"\x00\x00", "asn1.tag"),  # end-of-contents at top level
        (b"\x30\x02\x00\x00", "asn1.tag"),  # end-of-contents inside a definite element
        (b"\x9f\x05\x00", "asn1.tag"),  # high-tag form for a low tag number
        (b"\x9f\x80\x1f\x00", "asn1.tag"),  # leading 0x80 in the tag number
        (b"\x9f\xff\xff\xff\xff\x7f\x00", "asn1.tag"),  # tag number beyond 28 bits
        (b"\x05\x00\x00", "asn1.trailing-data"),
        (b"\x05\x00\x05\x00", "asn1.trailing-data"),
        (b"\x30\x80\x05\x00\x00\x00\x00\x00", "asn1.trailing-data"),
    ],
)
def test_malformed_framing_is_refused(data: bytes, check: str) -> None:
    _refused(data, check)


def test_trailing_garbage_after_published_voucher() -> None:
    error = _refused(RFC8995_VOUCHER.read_bytes() + b"\x00", "asn1.trailing-data")
    assert error.extra["offset"] == len(RFC8995_VOUCHER.read_bytes())


def test_deep_nesting_definite_and_indefinite_1000_levels() -> None:
    _refused(_nest(1000), "asn1.depth")
    _refused(b"\x30\x80" * 1000 + b"\x00\x00" * 1000, "asn1.depth")


def test_der_only_mode_refuses_indefinite_lengths() -> None:
    _refused(b"\x30\x80\x05\x00\x00\x00", "asn1.indefinite", allow_indefinite=False)
    check_der(b"\x30\x02\x05\x00", allow_indefinite=False)


def test_every_truncation_of_a_published_voucher_is_refused() -> None:
    data = RFC8995_VOUCHER.read_bytes()
    for cut in range(len(data)):
        with pytest.raises(MalformedInput):
            check_der(data[:cut])


@pytest.mark.parametrize("length", [0, 1, 127, 128, 255, 256, 65535, 65536, 2**24])
def test_encode_length_is_minimal_and_reads_back(length: int) -> None:
    encoded = encode_length(length)
    if length < 128:
        assert encoded == bytes([length])
    else:
        assert encoded[0] & 0x7F == len(encoded) - 1
        assert encoded[1] != 0
        assert int.from_bytes(encoded[1:], "big") == length


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_brski_errors(data: bytes) -> None:
    try:
        check_der(data, max_size=256, max_depth=8)
    except (MalformedInput, PayloadTooLarge):
        pass


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_voucher_raises_only_brski_errors(data: st.DataObject) -> None:
    blob = bytearray(RFC8995_VOUCHER.read_bytes())
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(0, len(blob) - 1))
        blob[index] = data.draw(st.integers(0, 255))
    try:
        check_der(bytes(blob))
    except (MalformedInput, PayloadTooLarge):
        pass
