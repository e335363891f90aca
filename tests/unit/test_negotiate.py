"""brski.negotiate: Content-Type -> 415, Accept -> 406 (RFC 8995 sections 5.2, 5.6)."""

from __future__ import annotations

import pytest

from brski import oids
from brski.errors import NotAcceptable, UnsupportedMediaType
from brski.negotiate import negotiate_voucher_media

ALL = (oids.MT_VOUCHER_CMS_JSON, oids.MT_VOUCHER_COSE_CBOR, oids.MT_VOUCHER_JWS_JSON)
CMS, COSE, JWS = ALL


@pytest.mark.parametrize(
    ("content_type", "accept", "expected"),
    [
        (CMS, None, (CMS, CMS)),
        (CMS, "", (CMS, CMS)),
        (JWS, "*/*", (JWS, JWS)),
        (COSE, "application/*", (COSE, COSE)),
        (CMS, f"{JWS}", (CMS, JWS)),
        ("Application/Voucher-CMS+JSON; charset=x", f"{COSE};q=0.5, {JWS}", (CMS, JWS)),
        (CMS, f"{JWS};q=0, {COSE}", (CMS, COSE)),
        # constrained-voucher-31's name for the COSE format, in either header.
        (oids.MT_VOUCHER_COSE_DRAFT, None, (COSE, COSE)),
        (CMS, oids.MT_VOUCHER_COSE_DRAFT, (CMS, COSE)),
        (CMS, f"application/problem+json, {JWS}", (CMS, JWS)),
    ],
)
def test_negotiated(content_type: str, accept: str | None, expected: tuple[str, str]) -> None:
    assert negotiate_voucher_media(content_type, accept, ALL) == expected


@pytest.mark.parametrize("content_type", [None, "", "text/plain", "application/json", COSE])
def test_unsupported_request_type_is_415(content_type: str | None) -> None:
    with pytest.raises(UnsupportedMediaType) as info:
        negotiate_voucher_media(content_type, None, (CMS, JWS))
    assert info.value.check == "http.content-type" and info.value.http_status == 415


@pytest.mark.parametrize("accept", ["text/plain", f"{COSE}", f"{JWS};q=0", "application/problem+json"])
def test_unsatisfiable_accept_is_406(accept: str) -> None:
    with pytest.raises(NotAcceptable) as info:
        negotiate_voucher_media(CMS, accept, (CMS, JWS))
    assert info.value.check == "http.accept" and info.value.http_status == 406
