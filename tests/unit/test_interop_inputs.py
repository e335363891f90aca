"""Recognising what other implementations send instead of the standard form.

A CMS voucher-request is DER (RFC 8366 section 8.3); NIST SP 1800-36 Build 5
pledges send its base64 text.  The registrar must recognise the text (to
refuse it by name, or decode it for a lab) and never mistake DER for it.
The error-body negotiation rule lives in the middleware: problem+json only
when the Accept header names it.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from brski import cms
from brski.errors import ConfigError
from brski.oids import MT_VOUCHER_CMS_JSON, MT_VOUCHER_JWS_JSON
from brski.validation import base64_voucher_request
from brski_web.middleware import wants_problem_json
from registrar.config import load_config


def _signed() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "t")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(now).not_valid_after(now.replace(year=now.year + 1))
        .sign(key, hashes.SHA256())
    )
    return cms.sign(b'{"ietf-voucher-request:voucher":{}}', key=key, cert=cert, chain=())


def test_der_is_never_taken_for_base64() -> None:
    der = _signed()
    assert base64_voucher_request(der, media_type=MT_VOUCHER_CMS_JSON) is None


@pytest.mark.parametrize(
    "encode",
    [
        base64.b64encode,
        lambda d: base64.b64encode(d).rstrip(b"="),
        base64.urlsafe_b64encode,
        lambda d: b"\n".join(base64.b64encode(d)[i : i + 64] for i in range(0, 4 * len(d), 64)) + b"\n",
    ],
    ids=["standard", "unpadded", "urlsafe", "wrapped"],
)
def test_base64_text_of_der_is_recognised(encode: Callable[[bytes], bytes]) -> None:
    der = _signed()
    assert base64_voucher_request(encode(der), media_type=MT_VOUCHER_CMS_JSON) == der


def test_only_for_der_media_and_only_a_sequence() -> None:
    der = _signed()
    # JWS vouchers are JSON text by definition: never "decoded".
    assert base64_voucher_request(base64.b64encode(der), media_type=MT_VOUCHER_JWS_JSON) is None
    # Base64 of something that is not a DER SEQUENCE stays an ordinary parse error.
    assert base64_voucher_request(base64.b64encode(b"\x04" + bytes(40)), media_type=MT_VOUCHER_CMS_JSON) is None
    assert base64_voucher_request(b"short", media_type=MT_VOUCHER_CMS_JSON) is None


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, False),
        ("", False),
        ("*/*", False),
        ("application/json", False),
        ("application/voucher-cms+json", False),
        ("application/problem+json", True),
        ("application/voucher-cms+json, Application/Problem+JSON;q=0.5", True),
        ("application/problem+json;q=0", False),
        ("application/problem+json;q=bogus", False),
    ],
)
def test_problem_json_only_when_named(accept: str | None, expected: bool) -> None:
    assert wants_problem_json(accept) is expected


def test_base64_acceptance_is_off_by_default_and_strictly_boolean(tmp_path: Path) -> None:
    toml = tmp_path / "registrar.toml"
    base = ('[registrar]\nmanufacturer_anchors = ["m.crt"]\nmasa_trust = ["m.crt"]\nca_cert = "c"\nca_key = "k"\n'
            'ra_cert = "r"\nra_key = "rk"\n[server]\ntls_cert = "t"\ntls_key = "tk"\n')
    toml.write_text(base)
    assert load_config(toml, {}).accept_base64_voucher_requests is False
    toml.write_text(base.replace("[server]", "accept_base64_voucher_requests = true\n[server]"))
    assert load_config(toml, {}).accept_base64_voucher_requests is True
    toml.write_text(base.replace("[server]", 'accept_base64_voucher_requests = "yes"\n[server]'))
    with pytest.raises(ConfigError) as exc:
        load_config(toml, {})
    assert exc.value.check == "config.type"  # the declared schema checks the type, naming key and file
    assert "accept_base64_voucher_requests" in exc.value.detail and str(toml) in exc.value.detail
