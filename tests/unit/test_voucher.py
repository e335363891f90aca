"""brski.voucher: the published examples, every YANG rule as a named refusal, fuzzing."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from brski.errors import BrskiError, MalformedInput, PayloadTooLarge, VoucherInvalid
from brski.voucher import (
    MAX_JSON_SIZE,
    VOUCHER_CONTAINER,
    VOUCHER_REQUEST_CONTAINER,
    Assertion,
    Voucher,
    VoucherRequest,
)
from tests import VECTORS

APPENDIX_C_NONCE = base64.urlsafe_b64decode("-_XE9zK9q8Ll1qylMtLKeg==")
T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def _obj(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_bytes())
    return data


def _voucher_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "created-on": "2024-05-01T12:00:00Z",
        "assertion": "logged",
        "serial-number": "JADA123456789",
        "pinned-domain-cert": base64.b64encode(b"\x30\x03\x02\x01\x01").decode(),
        "nonce": base64.b64encode(b"0123456789abcdef").decode(),
    }
    for key, value in changes.items():
        wire = key.replace("_", "-")
        if value is None:
            body.pop(wire, None)
        else:
            body[wire] = value
    return body


def _voucher_json(**changes: Any) -> bytes:
    return json.dumps({VOUCHER_CONTAINER: _voucher_body(**changes)}).encode()


def _refused(data: bytes, check: str, kind: type[Voucher] | type[VoucherRequest] = Voucher) -> None:
    with pytest.raises(BrskiError) as info:
        kind.from_json(data)
    assert info.value.check == check, repr(info.value)


# --- the published examples ---------------------------------------------------------

GOOD_VOUCHERS = [
    "rfc8366/ex1-ephemeral-logged.json",
    "rfc8366/bis-ex1-ephemeral-logged.json",
    "rfc8366/bis-ex2-nonceless-verified.json",
    "rfc8366/bis-ex3-extension.json",
    "rfc8366bis/ex-file-voucher-ephemeral.json",
    "rfc8366bis/voucher.content.json",
    "rfc8995/voucher.content.json",
]
GOOD_REQUESTS = [
    "rfc8366bis/vr.content.json",
    "rfc8995/vr.content.json",
    "rfc8995/parboiled_vr.content.json",
]
# Both write the boolean domain-cert-revocation-checks as the string "true"
# (the shared vectors README notes it for RFC 8366 example 2; the 8366bis repo's
# ex-file-voucher-long-lived.json copies the same error).
BOOLEAN_AS_STRING = [
    "rfc8366/ex2-nonceless-verified.json",
    "rfc8366bis/ex-file-voucher-long-lived.json",
]


@pytest.mark.parametrize("name", GOOD_VOUCHERS)
def test_published_vouchers_parse_and_round_trip(name: str) -> None:
    raw = (VECTORS / name).read_bytes()
    voucher = Voucher.from_json(raw)
    again = Voucher.from_json(voucher.to_json())
    assert again == voucher
    assert again.to_json() == voucher.to_json()
    # The re-emitted object says what the original said, leaf for leaf, except
    # that binary leaves are re-encoded as padded base64.
    original = _obj(VECTORS / name)[VOUCHER_CONTAINER]
    emitted = json.loads(voucher.to_json())[VOUCHER_CONTAINER]
    assert set(emitted) == set(original)
    for key in ("serial-number", "assertion"):
        assert emitted[key] == original[key]


@pytest.mark.parametrize("name", GOOD_REQUESTS)
def test_published_voucher_requests_parse_and_round_trip(name: str) -> None:
    request = VoucherRequest.from_json((VECTORS / name).read_bytes())
    assert request.serial_number is not None
    assert VoucherRequest.from_json(request.to_json()) == request
    assert set(json.loads(request.to_json())[VOUCHER_REQUEST_CONTAINER]) == set(
        _obj(VECTORS / name)[VOUCHER_REQUEST_CONTAINER]
    )


@pytest.mark.parametrize("name", BOOLEAN_AS_STRING)
def test_string_true_for_a_boolean_is_refused_by_name(name: str) -> None:
    _refused((VECTORS / name).read_bytes(), "voucher.boolean-as-string")


def test_the_fixed_rfc8366bis_example_two_carries_a_real_boolean() -> None:
    voucher = Voucher.from_json((VECTORS / "rfc8366/bis-ex2-nonceless-verified.json").read_bytes())
    assert voucher.domain_cert_revocation_checks is True
    assert voucher.assertion is Assertion.VERIFIED
    assert voucher.expires_on == datetime(2016, 10, 21, 19, 31, 42, tzinfo=UTC)
    assert voucher.last_renewal_date == datetime(2017, 10, 7, 19, 31, 42, tzinfo=UTC)
    assert voucher.nonce is None


def test_appendix_c_voucher_fields() -> None:
    voucher = Voucher.from_json((VECTORS / "rfc8995/voucher.content.json").read_bytes())
    assert voucher.serial_number == "00-D0-E5-F2-00-02"
    assert voucher.assertion is Assertion.LOGGED
    # base64url, unpadded, as the appendix writes it
    assert voucher.nonce == APPENDIX_C_NONCE
    # "-04:00" offset kept, and equal to the same instant in UTC
    assert voucher.created_on.utcoffset() == timedelta(hours=-4)
    assert voucher.created_on == datetime(2021, 4, 13, 21, 43, 24, 589000, tzinfo=UTC)
    assert voucher.pinned_domain_cert is not None
    assert voucher.pinned_domain_cert[:2] == b"\x30\x82"
    emitted = json.loads(voucher.to_json())[VOUCHER_CONTAINER]
    assert emitted["created-on"] == "2021-04-13T17:43:24.589-04:00"
    # emitted in standard base64
    assert emitted["nonce"] == base64.b64encode(APPENDIX_C_NONCE).decode()


def test_appendix_c_registrar_request_carries_the_pledge_request() -> None:
    pledge = VoucherRequest.from_json((VECTORS / "rfc8995/vr.content.json").read_bytes())
    registrar = VoucherRequest.from_json(
        (VECTORS / "rfc8995/parboiled_vr.content.json").read_bytes()
    )
    assert pledge.assertion is Assertion.PROXIMITY
    assert pledge.proximity_registrar_cert is not None
    assert registrar.nonce == pledge.nonce == APPENDIX_C_NONCE
    assert (
        registrar.prior_signed_voucher_request
        == (VECTORS / "rfc8995/vr_00-D0-E5-F2-00-02.der").read_bytes()
    )
    assert registrar.created_on == datetime(2021, 4, 13, 21, 43, 23, 787000, tzinfo=UTC)


def test_extension_member_is_kept_and_re_emitted() -> None:
    voucher = Voucher.from_json((VECTORS / "rfc8366/bis-ex3-extension.json").read_bytes())
    assert voucher.extension_names == ("example-my-extension",)
    assert dict(voucher.extensions) == {
        "extension:example-my-extension": {"my-ext-leaf1": "my-ext-leaf1-data"}
    }
    emitted = json.loads(voucher.to_json())[VOUCHER_CONTAINER]
    assert emitted["extension:example-my-extension"] == {"my-ext-leaf1": "my-ext-leaf1-data"}
    assert emitted["extensions"] == ["example-my-extension"]


def test_kinds_are_not_interchangeable() -> None:
    _refused((VECTORS / "rfc8995/vr.content.json").read_bytes(), "voucher.container")
    _refused(
        (VECTORS / "rfc8995/voucher.content.json").read_bytes(),
        "voucher-request.container",
        VoucherRequest,
    )


# --- construction -----------------------------------------------------------------------


def _voucher(**changes: Any) -> Voucher:
    args: dict[str, Any] = {
        "created_on": T0,
        "assertion": Assertion.LOGGED,
        "serial_number": "SN1",
        "pinned_domain_cert": b"\x30\x00",
        "nonce": b"n" * 16,
    }
    args.update(changes)
    return Voucher(**args)


def test_constructed_voucher_emits_deterministic_json() -> None:
    voucher = _voucher(idevid_issuer=b"\x04\x01\x02")
    assert voucher.to_json() == (
        b'{"ietf-voucher:voucher":{"created-on":"2024-05-01T12:00:00Z","assertion":"logged",'
        b'"serial-number":"SN1","idevid-issuer":"BAEC","pinned-domain-cert":"MAA=",'
        b'"nonce":"bm5ubm5ubm5ubm5ubm5ubg=="}}'
    )
    assert Voucher.from_json(voucher.to_json()) == voucher


def test_non_utc_created_on_is_emitted_with_its_offset_and_utc_with_z() -> None:
    east = timezone(timedelta(hours=5, minutes=30))
    voucher = _voucher(created_on=datetime(2024, 5, 1, 17, 30, 0, 120000, tzinfo=east))
    assert b'"created-on":"2024-05-01T17:30:00.120+05:30"' in voucher.to_json()
    assert b'"created-on":"2024-05-01T12:00:00Z"' in _voucher().to_json()


def test_assertion_given_as_a_string_is_coerced() -> None:
    assert _voucher(assertion="agent-proximity").assertion is Assertion.AGENT_PROXIMITY


def test_pubk_pin_may_replace_the_certificate_pin() -> None:
    voucher = _voucher(pinned_domain_cert=None, pinned_domain_pubk=b"\x30\x59" + b"k" * 10)
    assert Voucher.from_json(voucher.to_json()) == voucher


def test_every_request_leaf_is_optional() -> None:
    empty = VoucherRequest()
    assert empty.to_json() == b'{"ietf-voucher-request:voucher":{}}'
    assert VoucherRequest.from_json(empty.to_json()) == empty


def test_request_agent_and_pubk_leaves_round_trip() -> None:
    request = VoucherRequest(
        assertion=Assertion.AGENT_PROXIMITY,
        serial_number="SN1",
        nonce=b"\x01" * 8,
        proximity_registrar_pubk=b"pk",
        proximity_registrar_pubk_sha256=b"\x02" * 32,
        agent_signed_data=b"jws",
        agent_provided_proximity_registrar_cert=b"\x30\x00",
        agent_sign_cert=b"\x30\x01",
        est_domain="https://est.example.com:8443/.well-known/est",
        additional_configuration="https://config.example.com/",
    )
    assert VoucherRequest.from_json(request.to_json()) == request
    wire = json.loads(request.to_json())[VOUCHER_REQUEST_CONTAINER]
    assert wire["additional-configuration-url"] == "https://config.example.com/"


def test_extensions_mapping_is_read_only() -> None:
    voucher = _voucher(extensions={"vendor-x:thing": [1, {"a": True}]})
    with pytest.raises(TypeError):
        voucher.extensions["vendor-x:other"] = 1  # type: ignore[index]
    assert json.loads(voucher.to_json())[VOUCHER_CONTAINER]["vendor-x:thing"] == [1, {"a": True}]


# --- each rule, refused by name (parse) -------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "check"),
    [
        ({"created_on": None}, "voucher.mandatory"),
        ({"assertion": None}, "voucher.mandatory"),
        ({"serial_number": None}, "voucher.mandatory"),
        ({"pinned_domain_cert": None}, "voucher.pinned-domain"),
        ({"assertion": "trusted"}, "voucher.assertion"),
        ({"assertion": "Logged"}, "voucher.assertion"),
        ({"nonce": None, "expires_on": "2024-06-01T00:00:00Z"}, None),  # allowed
        ({"expires_on": "2024-06-01T00:00:00Z"}, "voucher.expires-on-with-nonce"),
        (
            {"last_renewal_date": "2025-01-01T00:00:00Z"},
            "voucher.last-renewal-date-without-expires-on",
        ),
        ({"pinned_domain_cert": "not*base64"}, "voucher.base64"),
        ({"pinned_domain_cert": "QUJD"[:3]}, "voucher.base64"),
        ({"pinned_domain_cert": "-_-_"}, "voucher.base64"),  # base64url only for the nonce
        ({"nonce": "+-XE9zK9q8Ll1qylMtLKeg"}, "voucher.base64"),  # mixed alphabets
        ({"nonce": base64.b64encode(b"short").decode()}, "voucher.nonce-length"),
        ({"nonce": base64.b64encode(b"x" * 33).decode()}, "voucher.nonce-length"),
        ({"created_on": "2024-05-01 12:00:00Z"}, "voucher.date-and-time"),
        ({"created_on": "2024-05-01T12:00:00"}, "voucher.date-and-time"),  # no offset
        ({"created_on": "2024-02-30T12:00:00Z"}, "voucher.date-and-time"),
        ({"created_on": "2024-05-01T12:00:00+24:00"}, "voucher.date-and-time"),
        ({"created_on": 1714564800}, "voucher.type"),
        ({"serial_number": 12345}, "voucher.type"),
        ({"serial_number": ""}, "voucher.serial-number"),
        ({"domain_cert_revocation_checks": 1}, "voucher.type"),
        ({"domain_cert_revocation_checks": "false"}, "voucher.boolean-as-string"),
        ({"pinned_domain_cert": ["MAA="]}, "voucher.type"),
        ({"pinned_domain_pubk_sha256": "AAAA"}, "voucher.sha256-length"),
        ({"est_domain": "not a uri"}, "voucher.uri"),
        ({"extensions": "example"}, "voucher.type"),
        ({"color": "blue"}, "voucher.unknown-leaf"),
        ({"proximity_registrar_cert": "MAA="}, "voucher.unknown-leaf"),  # request-only leaf
        ({"ietf-voucher:nonce": "MAA="}, "voucher.unknown-leaf"),  # own module, qualified
        ({"vendor:": 1}, "voucher.unknown-leaf"),
    ],
)
def test_voucher_rule(changes: dict[str, Any], check: str | None) -> None:
    data = _voucher_json(**changes)
    if check is None:
        Voucher.from_json(data)
    else:
        _refused(data, check)


def test_unknown_leaf_in_request_is_refused() -> None:
    data = json.dumps({VOUCHER_REQUEST_CONTAINER: {"serial-number": "x", "colour": 1}}).encode()
    _refused(data, "voucher-request.unknown-leaf", VoucherRequest)


def test_request_keeps_last_renewal_date_without_expires_on() -> None:
    # RFC 8995 3.4: the leaf "MUST be ignored" in a request, so it is not a refusal.
    data = json.dumps({VOUCHER_REQUEST_CONTAINER: {"last-renewal-date": "2024-01-01T00:00:00Z"}})
    assert VoucherRequest.from_json(data.encode()).last_renewal_date is not None


def test_request_expires_on_with_nonce_is_refused() -> None:
    data = json.dumps(
        {VOUCHER_REQUEST_CONTAINER: {"expires-on": "2024-01-01T00:00:00Z", "nonce": "AAAAAAAAAAA="}}
    )
    _refused(data.encode(), "voucher-request.expires-on-with-nonce", VoucherRequest)


# --- each rule, refused by name (construction) ------------------------------------------


@pytest.mark.parametrize(
    ("changes", "check"),
    [
        ({"created_on": datetime(2024, 5, 1, 12, 0, 0)}, "voucher.naive-datetime"),
        ({"expires_on": datetime(2024, 6, 1), "nonce": None}, "voucher.naive-datetime"),
        ({"assertion": "owned"}, "voucher.assertion"),
        ({"expires_on": T0 + timedelta(days=1)}, "voucher.expires-on-with-nonce"),
        ({"last_renewal_date": T0, "nonce": None}, "voucher.last-renewal-date-without-expires-on"),
        ({"pinned_domain_cert": None}, "voucher.pinned-domain"),
        ({"pinned_domain_cert": "MAA="}, "voucher.type"),  # str is not bytes
        ({"nonce": b"1234567"}, "voucher.nonce-length"),
        ({"serial_number": None}, "voucher.mandatory"),
        ({"serial_number": "\ud800"}, "voucher.string"),
        ({"extensions": {"unqualified": 1}}, "voucher.unknown-leaf"),
        ({"extensions": {"v:x": float("nan")}}, "voucher.extension"),
        ({"extensions": {"v:x": b"bytes"}}, "voucher.extension"),
    ],
)
def test_voucher_construction_rule(changes: dict[str, Any], check: str) -> None:
    with pytest.raises(VoucherInvalid) as info:
        _voucher(**changes)
    assert info.value.check == check


def test_request_construction_refuses_naive_datetime() -> None:
    with pytest.raises(VoucherInvalid) as info:
        VoucherRequest(created_on=datetime(2024, 1, 1))
    assert info.value.check == "voucher-request.naive-datetime"


# --- bytes-level bounds -------------------------------------------------------------------


def test_duplicate_key_is_refused() -> None:
    data = (
        b'{"ietf-voucher:voucher":{"created-on":"2024-05-01T12:00:00Z","assertion":"logged",'
        b'"assertion":"verified","serial-number":"x","pinned-domain-cert":"MAA="}}'
    )
    with pytest.raises(MalformedInput) as info:
        Voucher.from_json(data)
    assert info.value.check == "voucher.duplicate-key"


def test_over_deep_json_is_refused_before_parsing() -> None:
    data = b'{"ietf-voucher:voucher":{"v:x":' + b"[" * 15 + b"]" * 15 + b"}}"
    with pytest.raises(MalformedInput) as info:
        Voucher.from_json(data)
    assert info.value.check == "voucher.json-depth"
    # far deeper than Python's recursion limit: still a clean refusal
    with pytest.raises(MalformedInput):
        Voucher.from_json(b"[" * 50000)


def test_brackets_inside_strings_do_not_count_as_depth() -> None:
    data = _voucher_json(serial_number='[[[[[[[[[[[[[[[[[[[[\\"{{{{{{{{{{{{{{{{{{{{')
    assert Voucher.from_json(data).serial_number.startswith("[[[[")


def test_depth_sixteen_is_allowed() -> None:
    body = _voucher_body()
    body["v:x"] = json.loads("[" * 14 + "]" * 14)
    Voucher.from_json(json.dumps({VOUCHER_CONTAINER: body}).encode())


def test_oversize_input_is_refused() -> None:
    data = _voucher_json(manufacturer_private="A" * MAX_JSON_SIZE)
    with pytest.raises(PayloadTooLarge) as info:
        Voucher.from_json(data)
    assert info.value.check == "voucher.size"


@pytest.mark.parametrize(
    ("data", "check"),
    [
        (b"[]", "voucher.container"),
        (b'"ietf-voucher:voucher"', "voucher.container"),
        (b"{}", "voucher.container"),
        (b'{"ietf-voucher:voucher":[]}', "voucher.container"),
        (b'{"ietf-voucher:voucher":{},"x":1}', "voucher.container"),
        (b"{", "voucher.json"),
        (b"\xff\xfe{}", "voucher.json"),
        (b'{"ietf-voucher:voucher":{"v:x":NaN}}', "voucher.json"),
    ],
)
def test_malformed_documents(data: bytes, check: str) -> None:
    _refused(data, check)


def test_from_obj_refuses_non_json_values() -> None:
    with pytest.raises(VoucherInvalid) as info:
        Voucher.from_obj({VOUCHER_CONTAINER: {**_voucher_body(), "serial-number": b"SN"}})
    assert info.value.check == "voucher.type"


# --- fuzzing: only BrskiError escapes -----------------------------------------------------

_json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=30),
    st.sampled_from(["MAA=", "-_XE9zK9q8Ll1qylMtLKeg", "2024-05-01T12:00:00Z", "logged", ""]),
)
_json_value = st.recursive(
    _json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)
_leaf_names = st.sampled_from(
    [
        "created-on", "expires-on", "assertion", "serial-number", "idevid-issuer",
        "pinned-domain-cert", "pinned-domain-pubk", "pinned-domain-pubk-sha256",
        "domain-cert-revocation-checks", "nonce", "last-renewal-date", "est-domain",
        "extensions", "prior-signed-voucher-request", "proximity-registrar-cert",
        "agent-sign-cert", "x:y", "bad",
    ]
)  # fmt: skip


def _parse_both(data: bytes) -> None:
    for kind in (Voucher, VoucherRequest):
        try:
            parsed = kind.from_json(data)
        except BrskiError:
            continue
        assert kind.from_json(parsed.to_json()) == parsed


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_brski_errors(data: bytes) -> None:
    _parse_both(data)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_leaf_names, _json_value, max_size=8), st.booleans())
def test_random_voucher_members_raise_only_brski_errors(
    body: dict[str, Any], request: bool
) -> None:
    container = VOUCHER_REQUEST_CONTAINER if request else VOUCHER_CONTAINER
    _parse_both(json.dumps({container: body}).encode())


@settings(max_examples=300, deadline=None)
@given(
    st.integers(min_value=0),
    st.integers(min_value=0, max_value=255),
    st.sampled_from(GOOD_VOUCHERS + GOOD_REQUESTS),
)
def test_mutated_vectors_raise_only_brski_errors(pos: int, byte: int, name: str) -> None:
    data = bytearray((VECTORS / name).read_bytes())
    data[pos % len(data)] = byte
    _parse_both(bytes(data))


def test_many_shallow_brackets_are_not_depth() -> None:
    """More openers than MAX_JSON_DEPTH, none deeper than three: the scan (not
    the opener count that lets most input skip it) decides, and allows it."""
    body = _voucher_body()
    body["v:x"] = [[i] for i in range(40)]
    assert Voucher.from_json(json.dumps({VOUCHER_CONTAINER: body}).encode()).serial_number


# --- RFC 7950 section 9.4: YANG strings --------------------------------------------


@pytest.mark.parametrize("text", ["\x1b[2J", "A\x00B", "A\x07", "A\uffff", "A\ufffe", "A\x1f"])
def test_control_characters_and_nonchars_in_string_leaves_are_refused(text: str) -> None:
    _refused(_voucher_json(serial_number=text), "voucher.string")
    request = json.dumps({VOUCHER_REQUEST_CONTAINER: {"serial-number": text}}).encode()
    _refused(request, "voucher-request.string", VoucherRequest)
    _refused(_voucher_json(manufacturer_private=text), "voucher.string")
    _refused(_voucher_json(extensions=[f"ext{text}"]), "voucher.string")


def test_tab_line_breaks_and_non_ascii_are_yang_string_characters() -> None:
    for text in ("A\tB", "A\nB\r", "Gerät-7", "\U0001f600", "\ud7ff\ue000\ufffd"):
        assert Voucher.from_json(_voucher_json(serial_number=text)).serial_number == text
