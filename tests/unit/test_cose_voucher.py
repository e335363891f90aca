"""COSE_Sign1 vouchers, the SID mapping and the bounded CBOR decoder.

Vectors: tests/vectors/cbrski-draft31 (draft-ietf-anima-constrained-voucher-31
examples) and tests/vectors/interop-minerva (see tests/vectors/README.md).
"""
from __future__ import annotations

import base64
from typing import Any

import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from brski import cose_voucher, sid
from brski.cbor import Tagged, decode_cbor
from brski.errors import (
    MalformedInput,
    SignatureInvalid,
    VoucherInvalid,
)
from tests import VECTORS
from tests.cose_helpers import (
    CB,
    EXPECTED_ALG,
    KINDS,
    _der_cert,
    _same_key,
)
from tests.signer_helpers import (
    IDS,
    OTHER_CERT,
    REQUEST_OBJ,
    VOUCHER_OBJ,
    DictPayload,
    b64,
    voucher_models,
)

# --- published vectors ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "cert"),
    [("pvr", "pledge.crt.der"), ("rvr", "registrar.crt.der"), ("voucher", "masa_ca.crt.der")],
)
def test_draft31_vectors_verify_and_payload_equals_nonsigned(name: str, cert: str) -> None:
    signer_cert = _der_cert(CB / cert)
    payload, signer, _ = cose_voucher.verify_cose_sign1(
        (CB / f"{name}.cbor").read_bytes(), candidates=[signer_cert]
    )
    assert payload == (CB / f"{name}-nonsigned.cbor").read_bytes()
    assert _same_key(signer, signer_cert)


def test_draft31_pvr_does_not_verify_with_the_wrong_certificate() -> None:
    with pytest.raises(SignatureInvalid) as exc:
        cose_voucher.verify_cose_sign1(
            (CB / "pvr.cbor").read_bytes(), candidates=[_der_cert(CB / "registrar.crt.der")]
        )
    assert exc.value.check == "cose.signature"


def test_draft31_pvr_without_candidates_has_no_signer() -> None:
    # The PVR carries no certificate: the verifier must bring one.
    with pytest.raises(SignatureInvalid) as exc:
        cose_voucher.verify_cose_sign1((CB / "pvr.cbor").read_bytes())
    assert exc.value.check == "cose.no-signer"


def test_draft31_rvr_x5bag_alone_identifies_the_signer() -> None:
    # README caveat: the bag holds a different registrar cert with the same key.
    payload, signer, carried = cose_voucher.verify_cose_sign1((CB / "rvr.cbor").read_bytes())
    assert len(carried) == 2
    assert signer in carried
    assert _same_key(signer, _der_cert(CB / "registrar.crt.der"))
    assert payload == (CB / "rvr-nonsigned.cbor").read_bytes()


@pytest.mark.parametrize(
    ("name", "container", "leaves", "diag_snippets"),
    [
        (
            "pvr",
            sid.VOUCHER_REQUEST,
            {
                "serial-number": "JADA123456789",
                "assertion": "proximity",
                "nonce": bytes.fromhex("23BFBBC9C2BCF213"),
            },
            ['13: "JADA123456789"', "1: 2", "7: h'23BFBBC9C2BCF213'"],
        ),
        (
            "rvr",
            sid.VOUCHER_REQUEST,
            {
                "serial-number": "JADA123456789",
                "assertion": "proximity",
                "nonce": bytes.fromhex("23BFBBC9C2BCF213"),
                "created-on": "2022-12-06T20:04:15.754Z",
                "idevid-issuer": bytes.fromhex(
                    "041830168014CB8D98CA74C51B58DDE7ACEF869A9443A8D666A6"
                ),
            },
            [
                '13: "JADA123456789"',
                "1: 2",
                "7: h'23BFBBC9C2BCF213'",
                '2: "2022-12-06T20:04:15.754Z"',
            ],
        ),
        (
            "voucher",
            sid.VOUCHER,
            {
                "serial-number": "JADA123456789",
                "assertion": "proximity",
                "nonce": bytes.fromhex("57EED786AD404907"),
                "created-on": "2022-12-06T20:23:30.708Z",
                "domain-cert-revocation-checks": False,
            },
            ['11: "JADA123456789"', "1: 2", "7: h'57EED786", "3: false"],
        ),
    ],
)
def test_draft31_payloads_through_the_sid_layer(
    name: str, container: str, leaves: dict[str, Any], diag_snippets: list[str]
) -> None:
    diag = (CB / f"{name}-nonsigned.diag.txt").read_text()
    # The .diag.txt files wrap long lines at a fixed column, mid-token.
    flat_diag = diag.replace("\n", "")
    for snippet in diag_snippets:
        assert snippet in flat_diag, snippet
    obj = sid.decode_payload((CB / f"{name}-nonsigned.cbor").read_bytes(), container=container)
    members = obj[container]
    for leaf, expected in leaves.items():
        got = members[leaf]
        if isinstance(expected, bytes):
            assert base64.b64decode(got) == expected, leaf
        else:
            assert got == expected, leaf


@pytest.mark.parametrize("name", ["pvr", "rvr", "voucher"])
def test_sid_layer_re_encodes_the_vectors_byte_for_byte(name: str) -> None:
    raw = (CB / f"{name}-nonsigned.cbor").read_bytes()
    assert sid.encode_payload(sid.decode_payload(raw)) == raw


def test_rvr_prior_signed_voucher_request_is_the_pvr() -> None:
    obj = sid.decode_payload(
        (CB / "rvr-nonsigned.cbor").read_bytes(), container=sid.VOUCHER_REQUEST
    )
    prior = base64.b64decode(obj[sid.VOUCHER_REQUEST]["prior-signed-voucher-request"])
    assert prior == (CB / "pvr.cbor").read_bytes()


def test_voucher_vector_is_not_taken_for_a_voucher_request() -> None:
    with pytest.raises(VoucherInvalid) as exc:
        sid.decode_payload(
            (CB / "voucher-nonsigned.cbor").read_bytes(), container=sid.VOUCHER_REQUEST
        )
    assert exc.value.check == "sid.container-kind"


def test_strip_unprotected_certs_keeps_the_signature_valid() -> None:
    stripped = cose_voucher.strip_unprotected_certs((CB / "rvr.cbor").read_bytes())
    assert cbor2.loads(stripped).value[1] == {}
    _, _signer, carried = cose_voucher.verify_cose_sign1(
        stripped, candidates=[_der_cert(CB / "registrar.crt.der")]
    )
    assert carried == ()
    with pytest.raises(SignatureInvalid):
        cose_voucher.verify_cose_sign1(stripped)


# --- the Minerva .vrq: COSE fine, payload in an older encoding -------------------------


def test_minerva_vrq_verifies_at_the_cose_level_but_the_sid_layer_refuses_it() -> None:
    raw = (VECTORS / "interop-minerva" / "vr_00-D0-E5-F2-00-02.vrq").read_bytes()
    idevid = x509.load_pem_x509_certificate(
        (VECTORS / "rfc8995" / "idevid_00-D0-E5-F2-00-02.crt").read_bytes()
    )
    payload, signer, carried = cose_voucher.verify_cose_sign1(raw, candidates=[idevid])
    assert signer is idevid and carried == ()
    # What is true of this payload: created-on is a tag-1 epoch date, so the
    # bounded decoder refuses it outright (YANG-CBOR dates are text) ...
    with pytest.raises(MalformedInput) as exc:
        sid.decode_payload(payload)
    assert exc.value.check == "cbor.tag"
    # ... and even admitting the tag, the assertion is the text "proximity",
    # not the enum integer, and serial-number (delta 13) is a byte string.
    decoded = decode_cbor(payload, allowed_tags=(1,))
    inner = decoded[2501]
    assert inner[1] == "proximity" and isinstance(inner[13], bytes)
    assert isinstance(inner[2], Tagged) and inner[2].tag == 1
    with pytest.raises(VoucherInvalid):
        sid.cbor_to_json(decoded)


# --- SID mapping on dicts ---------------------------------------------------------------


def test_sid_mapping_uses_deltas_and_enum_integers() -> None:
    cb = sid.json_to_cbor(VOUCHER_OBJ)
    assert set(cb) == {2451}
    inner = cb[2451]
    assert inner[1] == 2  # assertion 2452, proximity
    assert inner[11] == "JADA123456789"  # serial-number 2462
    assert inner[7] == b"0123456789abcdef"  # nonce 2458, bytes not base64
    assert inner[2] == "2024-05-01T10:00:00Z"
    assert sid.cbor_to_json(cb) == VOUCHER_OBJ
    rq = sid.json_to_cbor(REQUEST_OBJ)[2501]
    assert rq[13] == "JADA123456789" and rq[10] == OTHER_CERT.public_bytes(Encoding.DER)


def test_sid_accepts_names_and_absolute_sids_mixed() -> None:
    mixed = {2451: {"serial-number": "X1", Tagged(tag=47, value=2452): 0, 7: b"12345678"}}
    out = sid.cbor_to_json(mixed)["ietf-voucher:voucher"]
    assert out == {"serial-number": "X1", "assertion": "verified", "nonce": b64(b"12345678")}


@pytest.mark.parametrize(
    ("inner", "check"),
    [
        ({40: "x"}, "sid.unknown-leaf"),
        ({1: "proximity"}, "sid.assertion"),
        ({1: 9}, "sid.assertion"),
        ({7: "AAAAAAAAAAA="}, "sid.leaf-type"),
        ({3: 1}, "sid.leaf-type"),
        ({11: b"JADA"}, "sid.leaf-type"),
        ({"nonsense": 1}, "sid.unknown-leaf"),
        ({7: b"12345678", "nonce": b"12345678"}, "sid.duplicate-leaf"),
    ],
)
def test_sid_refusals(inner: dict[Any, Any], check: str) -> None:
    with pytest.raises(VoucherInvalid) as exc:
        sid.cbor_to_json({2451: inner})
    assert exc.value.check == check


def test_sid_refuses_unknown_json_leaves() -> None:
    with pytest.raises(VoucherInvalid) as exc:
        sid.json_to_cbor({"ietf-voucher:voucher": {"serial-number": "x", "colour": "red"}})
    assert exc.value.check == "sid.unknown-leaf"


# --- round trips with throwaway keys ----------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("include", ["x5bag", "kid", "x5chain"])
@pytest.mark.parametrize("obj", [VOUCHER_OBJ, REQUEST_OBJ], ids=["voucher", "request"])
def test_round_trip_dict_level(kind: str, include: Any, obj: dict[str, Any]) -> None:
    key, cert = IDS[kind]
    raw = cose_voucher.sign(
        DictPayload(obj), key=key, cert=cert, chain=[OTHER_CERT], include=include
    )
    tag = cbor2.loads(raw)
    assert tag.tag == 18
    assert cbor2.loads(tag.value[0]) == {1: EXPECTED_ALG[kind]}
    extra = [cert] if include == "kid" else []
    payload, signer, carried = cose_voucher.verify_cose_sign1(raw, candidates=[OTHER_CERT, *extra])
    assert signer == cert
    assert sid.decode_payload(payload) == obj
    if include == "kid":
        assert carried == () and tag.value[1] == {4: cose_voucher.key_identifier(cert)}
    else:
        assert carried == (cert, OTHER_CERT)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("which", ["voucher", "request"])
def test_round_trip_model_level(kind: str, which: str) -> None:
    models = voucher_models()
    cls = models.Voucher if which == "voucher" else models.VoucherRequest
    model = cls.from_obj(VOUCHER_OBJ if which == "voucher" else REQUEST_OBJ)
    key, cert = IDS[kind]
    raw = cose_voucher.sign(model, key=key, cert=cert)
    art = cose_voucher.verify(raw, kind=cls)
    assert art.payload == model
    assert art.signer == cert
    assert art.media_type == "application/voucher-cose+cbor"
    assert art.raw == raw
    other = models.VoucherRequest if which == "voucher" else models.Voucher
    with pytest.raises(VoucherInvalid):
        cose_voucher.verify(raw, kind=other)
