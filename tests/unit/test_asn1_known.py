"""check_der steps over elements it walked before (brski.asn1.remember_well_framed),
and must answer exactly as if it had walked them again."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from brski import asn1
from brski.asn1 import check_der, encode_length, forget_well_framed, remember_well_framed
from brski.cms_parts import extract_plain_der
from brski.errors import MalformedInput, PayloadTooLarge
from tests import VECTORS
from tests.cms_mutations import mutations

VOUCHER = (VECTORS / "rfc8995" / "voucher_00-D0-E5-F2-00-02.der").read_bytes()
REQUEST = (VECTORS / "rfc8995" / "vr_00-D0-E5-F2-00-02.der").read_bytes()


def _outcome(data: bytes, **kwargs: int) -> tuple[str, object]:
    try:
        check_der(data, **kwargs)  # type: ignore[arg-type]
    except (MalformedInput, PayloadTooLarge) as exc:
        return exc.check, exc.extra.get("offset")
    return "ok", None


def _certificates(der: bytes) -> tuple[bytes, ...]:
    return extract_plain_der(der).certificates


def _remembered(*ders: bytes) -> None:
    for der in ders:
        remember_well_framed(der)
        remember_well_framed(der)  # from the second sighting on


def _nest(levels: int, inner: bytes) -> bytes:
    for _ in range(levels):
        inner = b"\x30" + encode_length(len(inner)) + inner
    return inner


def _damaged(der: bytes, seed: int) -> Iterator[bytes]:
    """Bit flips anywhere (certificates included), truncations, appended bytes."""
    rng = random.Random(seed)
    for _ in range(150):
        blob = bytearray(der)
        blob[rng.randrange(len(der))] ^= 1 << rng.randrange(8)
        yield bytes(blob)
    for cut in (1, 2, 7, len(der) // 3, len(der) // 2):
        yield der[:-cut]
    yield der + b"\x00"
    yield der + b"\x05\x00"


@pytest.fixture(autouse=True)
def _isolated() -> Iterator[None]:
    forget_well_framed()
    yield
    forget_well_framed()


def test_remembered_on_the_second_sighting_only() -> None:
    (cert, *_) = _certificates(VOUCHER)
    remember_well_framed(cert)
    assert cert not in asn1._known
    remember_well_framed(cert)
    assert cert in asn1._known


def test_an_element_that_fails_alone_is_not_remembered() -> None:
    (cert, *_) = _certificates(VOUCHER)
    broken = cert[:-1] + b""  # contents end early: a truncated certificate
    _remembered(broken)
    assert broken not in asn1._known
    # Indefinite lengths inside: refused as plain DER, so never stepped over.
    ber = b"\x30\x80" + cert[4:] + b"\x00\x00"
    _remembered(ber)
    assert ber not in asn1._known


@pytest.mark.parametrize("message", [VOUCHER, REQUEST], ids=["voucher", "voucher-request"])
def test_same_answer_with_and_without_the_memo(message: bytes) -> None:
    inputs = [message, *(m for _, m in mutations(message)), *_damaged(message, 8995)]
    without = [_outcome(m) for m in inputs]
    _remembered(*_certificates(message))
    assert asn1._known, "the carried certificates were not remembered"
    with_memo = [_outcome(m) for m in inputs]
    assert with_memo == without
    assert without[0] == ("ok", None)


def test_depth_still_counts_inside_a_remembered_element() -> None:
    (cert, *_) = _certificates(VOUCHER)
    _remembered(cert)
    # Deep enough that the certificate's own levels go past max_depth: the
    # walk must still reach the refusal, at the same place.
    for levels in range(18, 32):
        data = _nest(levels, cert)
        forget_well_framed()
        expected = _outcome(data)
        _remembered(cert)
        assert _outcome(data) == expected, levels
    assert _outcome(_nest(31, cert))[0] == "asn1.depth"


def test_a_smaller_max_depth_is_respected() -> None:
    (cert, *_) = _certificates(VOUCHER)
    _remembered(cert)
    for depth in range(1, 16):
        forget_well_framed()
        expected = _outcome(cert, max_depth=depth)
        _remembered(cert)
        assert _outcome(cert, max_depth=depth) == expected, depth
