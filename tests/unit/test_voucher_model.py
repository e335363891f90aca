"""The voucher YANG model is declared once (brski.voucher_model).

The JSON checks (brski.voucher), the SID map and the CBOR types (brski.sid)
all come from brski.voucher_model.LEAVES: a leaf added to that table alone
(here through a derived model) is accepted in JSON, checked by its kind, and
converted to CBOR under its SID without any edit to brski.sid; and every SID in
the published cbrski-draft31 vectors is a row of the table.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import cbor2
import pytest

from brski import sid, voucher_model
from brski.errors import VoucherInvalid
from brski.voucher import Assertion, Voucher, VoucherRequest, declared
from brski.voucher_model import LEAVES, Leaf, Must, Structure, structure

CB = Path(__file__).resolve().parent.parent / "vectors" / "cbrski-draft31"
T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
DIGEST = bytes(range(32))

# One new row, in both structures, with SIDs no published module assigns.
EXTRA = Leaf(
    name="example-digest",
    kind="sha256",
    sids={"ietf-voucher": 2490, "ietf-voucher-request": 2590},
    ref="test: a leaf declared only here",
)
EXT_VOUCHER = structure("ietf-voucher", sid=2451, check_prefix="voucher", leaves=(*LEAVES, EXTRA))
EXT_REQUEST = structure(
    "ietf-voucher-request", sid=2501, check_prefix="voucher-request", leaves=(*LEAVES, EXTRA)
)


@declared
@dataclass(frozen=True, kw_only=True)
class ExtVoucher(Voucher):
    _MODEL: ClassVar[Structure] = EXT_VOUCHER
    example_digest: bytes | None = None


@declared
@dataclass(frozen=True, kw_only=True)
class ExtRequest(VoucherRequest):
    _MODEL: ClassVar[Structure] = EXT_REQUEST
    example_digest: bytes | None = None


@pytest.fixture
def extended_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(voucher_model, "STRUCTURES", (EXT_VOUCHER, EXT_REQUEST))


def _request_json(digest: str) -> bytes:
    return (
        '{"ietf-voucher-request:voucher":{"serial-number":"JADA123456789",'
        f'"example-digest":"{digest}"}}}}'
    ).encode()


@pytest.mark.usefixtures("extended_model")
def test_a_leaf_added_to_the_table_is_read_checked_and_sid_encoded() -> None:
    data = _request_json(base64.b64encode(DIGEST).decode())
    req = ExtRequest.from_json(data)
    assert req.example_digest == DIGEST
    assert req.to_json() == data  # emitted after the table's other leaves, as declared

    # The SID map and the CBOR type come from the same row: key 2590 - 2501,
    # and a sha256-kind leaf travels as a byte string (RFC 9254 section 6.7).
    cbor = sid.encode_payload(req.to_obj())
    assert cbor2.loads(cbor) == {2501: {2590 - 2501: DIGEST, 2514 - 2501: "JADA123456789"}}
    assert ExtRequest.from_obj(sid.decode_payload(cbor)) == req

    voucher = ExtVoucher(
        created_on=T0,
        assertion=Assertion.LOGGED,
        serial_number="JADA123456789",
        pinned_domain_cert=b"\x30\x00",
        example_digest=DIGEST,
    )
    assert cbor2.loads(sid.encode_payload(voucher.to_obj()))[2451][2490 - 2451] == DIGEST


@pytest.mark.usefixtures("extended_model")
def test_the_added_leaf_gets_the_checks_of_its_kind() -> None:
    with pytest.raises(VoucherInvalid) as info:
        ExtRequest.from_json(_request_json(base64.b64encode(DIGEST[:31]).decode()))
    assert info.value.check == "voucher-request.sha256-length"
    with pytest.raises(VoucherInvalid) as info:
        ExtRequest.from_json(_request_json("not base64!"))
    assert info.value.check == "voucher-request.base64"


def test_without_the_row_neither_codec_knows_the_leaf() -> None:
    """The extended classes work above only because of the row: the base model refuses."""
    data = _request_json(base64.b64encode(DIGEST).decode())
    with pytest.raises(VoucherInvalid) as info:
        VoucherRequest.from_json(data)
    assert info.value.check == "voucher-request.unknown-leaf"
    obj = ExtRequest.from_json(data).to_obj()
    with pytest.raises(VoucherInvalid) as info:
        sid.encode_payload(obj)  # brski.sid reads the default table: no SID for it
    assert info.value.check == "sid.unknown-leaf"
    with pytest.raises(VoucherInvalid) as info:
        sid.decode_payload(cbor2.dumps({2501: {2590 - 2501: DIGEST}}))
    assert info.value.check == "sid.unknown-leaf"


def _sids(payload: Any) -> set[int]:
    ((container, members),) = payload.items()
    assert isinstance(container, int)
    return {container} | {container + delta for delta in members}


@pytest.mark.parametrize("name", ["pvr-nonsigned", "rvr-nonsigned", "voucher-nonsigned"])
def test_every_sid_in_the_draft31_vectors_is_a_row_of_the_table(name: str) -> None:
    payload = cbor2.loads((CB / f"{name}.cbor").read_bytes())
    declared_sids = {s.sid for s in voucher_model.STRUCTURES} | {
        n for leaf in LEAVES for n in leaf.sids.values()
    }
    used = _sids(payload)
    assert used <= declared_sids, used - declared_sids
    # ... and the conversion names each member by that row's name.
    ((container, members),) = payload.items()
    model = sid.module_for(container)
    names = set(sid.decode_payload((CB / f"{name}.cbor").read_bytes())[model.container])
    assert names == {model.by_sid[container + delta].name for delta in members}


def test_published_sids_and_enum_values_are_the_tables() -> None:
    """rfc8366bis 'ietf-voucher SID values' and assertion enum values, spot-checked."""
    assert (voucher_model.VOUCHER.sid, voucher_model.REQUEST.sid) == (2451, 2501)
    assert voucher_model.VOUCHER.by_name["serial-number"].sids == {
        "ietf-voucher": 2462,
        "ietf-voucher-request": 2514,
    }
    assert "prior-signed-voucher-request" not in voucher_model.VOUCHER.by_name
    assert [leaf.name for leaf in voucher_model.VOUCHER.mandatory] == [
        "created-on",
        "assertion",
        "serial-number",
    ]
    assert voucher_model.REQUEST.mandatory == ()
    assert dict(voucher_model.ASSERTION_CBOR) == {
        "verified": 0,
        "logged": 1,
        "proximity": 2,
        "agent-proximity": 3,
    }


def test_a_class_whose_fields_disagree_with_its_model_is_refused_at_definition() -> None:
    with pytest.raises(TypeError, match="fields disagree"):

        @declared
        @dataclass(frozen=True, kw_only=True)
        class Missing(VoucherRequest):  # the row without the attribute
            _MODEL: ClassVar[Structure] = EXT_REQUEST

    with pytest.raises(TypeError, match="fields disagree"):

        @declared
        @dataclass(frozen=True, kw_only=True)
        class Extra(VoucherRequest):  # the attribute without the row
            example_digest: bytes | None = None


def test_a_structure_refuses_a_repeated_sid() -> None:
    clash = Leaf(name="clash", kind="binary", sids={"ietf-voucher": 2462}, ref="test")
    with pytest.raises(ValueError, match="repeat"):
        structure("ietf-voucher", sid=2451, check_prefix="voucher", leaves=(*LEAVES, clash))
    with pytest.raises(ValueError, match="precedes"):
        structure("ietf-voucher", sid=2470, check_prefix="voucher")


def test_the_must_rules_are_read_from_the_model() -> None:
    """A YANG "must" added to a derived structure is enforced with its check name."""
    rule = Must(
        rule="requires", leaves=("example-digest", "nonce"), check="digest-needs-nonce", ref="test"
    )
    model = structure(
        "ietf-voucher-request",
        sid=2501,
        check_prefix="voucher-request",
        leaves=(*LEAVES, EXTRA),
        musts=(*voucher_model.REQUEST.musts, rule),
    )

    @declared
    @dataclass(frozen=True, kw_only=True)
    class Ruled(ExtRequest):
        _MODEL: ClassVar[Structure] = model

    with pytest.raises(VoucherInvalid) as info:
        Ruled(example_digest=DIGEST)
    assert info.value.check == "voucher-request.digest-needs-nonce"
    assert str(info.value).startswith("example-digest requires nonce")
    assert Ruled(example_digest=DIGEST, nonce=b"12345678").nonce == b"12345678"
    assert ExtRequest(example_digest=DIGEST).nonce is None  # the base model has no such rule
    with pytest.raises(ValueError, match="must names a leaf"):
        structure("ietf-voucher-request", sid=2501, check_prefix="x", musts=(rule,))


@pytest.mark.parametrize(
    ("kwargs", "check"),
    [
        ({"expires_on": T0, "nonce": b"12345678"}, "voucher.expires-on-with-nonce"),
        ({"pinned_domain_cert": None}, "voucher.pinned-domain"),
        ({"last_renewal_date": T0}, "voucher.last-renewal-date-without-expires-on"),
    ],
)
def test_the_voucher_musts_of_rfc8366_keep_their_check_names(
    kwargs: dict[str, Any], check: str
) -> None:
    base: dict[str, Any] = {
        "created_on": T0,
        "assertion": "logged",
        "serial_number": "JADA123456789",
        "pinned_domain_cert": b"\x30\x00",
    }
    with pytest.raises(VoucherInvalid) as info:
        Voucher(**{**base, **kwargs})
    assert info.value.check == check
