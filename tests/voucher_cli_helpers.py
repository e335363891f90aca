"""Shared by test_voucher_cli.py and test_voucher_cli_process.py (helpers, not tests)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from brski import oids
from brski.artifact import sign_artifact
from brski.devpki import build_dev_pki
from brski.pki import cert_der
from brski.voucher import Assertion, Voucher, VoucherRequest
from tests import VECTORS

RFC8995 = VECTORS / "rfc8995"


APPENDIX_C_VOUCHER = RFC8995 / "voucher_00-D0-E5-F2-00-02.der"


NOW = datetime(2026, 11, 28, tzinfo=UTC)


NONCE = b"cli-test-nonce-16"


FORMATS = {"cms": oids.MT_VOUCHER_CMS_JSON, "cose": oids.MT_VOUCHER_COSE_CBOR, "jws": oids.MT_VOUCHER_JWS_JSON}


@pytest.fixture(scope="module")
def voucher_lab(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A dev PKI and, per format, a voucher signed by its MASA and a pledge request."""
    root = tmp_path_factory.mktemp("voucher-cli")
    pki = build_dev_pki(pledges=1, masa_url="https://masa.example", now=NOW - timedelta(days=1))
    (serial,) = pki.pledge_serials
    out = {"anchor": root / "root-ca.crt", "domain": root / "domain-ca.crt"}
    out["anchor"].write_bytes(pki.files["manufacturer/root-ca.crt"])
    out["domain"].write_bytes(pki.files["registrar/domain-ca.crt"])
    masa_cert, masa_key = pki.cert("masa/voucher-signer.crt"), pki.key("masa/voucher-signer.key")
    masa_chain = pki.certs("masa/voucher-signer.crt")[1:]
    pledge = pki.pledge_dir(serial)
    idevid, idevid_key = pki.cert(f"{pledge}/idevid.crt"), pki.key(f"{pledge}/idevid.key")
    idevid_ca = pki.cert("manufacturer/idevid-ca.crt")
    voucher = Voucher(
        created_on=NOW,
        assertion=Assertion.PROXIMITY,
        serial_number=serial,
        nonce=NONCE,
        pinned_domain_cert=cert_der(pki.cert("registrar/domain-ca.crt")),
    )
    request = VoucherRequest(
        created_on=NOW,
        assertion=Assertion.PROXIMITY,
        serial_number=serial,
        nonce=NONCE,
        proximity_registrar_cert=cert_der(pki.cert("registrar/tls.crt")),
    )
    for fmt, media in FORMATS.items():
        out[f"voucher.{fmt}"] = root / f"voucher.{fmt}"
        out[f"voucher.{fmt}"].write_bytes(
            sign_artifact(voucher, media_type=media, key=masa_key, cert=masa_cert, chain=masa_chain)
        )
        out[f"vr.{fmt}"] = root / f"vr.{fmt}"
        out[f"vr.{fmt}"].write_bytes(
            sign_artifact(request, media_type=media, key=idevid_key, cert=idevid, chain=[idevid_ca])
        )
    out["serial"] = Path(serial)  # carried as a Path to keep one dict type
    # A CMS voucher with one content byte changed: the messageDigest rule fails.
    raw = bytearray(out["voucher.cms"].read_bytes())
    at = bytes(raw).index(serial.encode())
    raw[at] ^= 0x01
    out["tampered"] = root / "tampered.cms"
    out["tampered"].write_bytes(bytes(raw))
    # The same voucher as base64 and as PEM armour, as operators paste it.
    out["voucher.b64"] = root / "voucher.b64"
    out["voucher.b64"].write_bytes(base64.encodebytes(out["voucher.cms"].read_bytes()))
    out["voucher.pem"] = root / "voucher.pem"
    out["voucher.pem"].write_bytes(
        b"-----BEGIN CMS-----\n" + base64.encodebytes(out["voucher.cms"].read_bytes()) + b"-----END CMS-----\n"
    )
    return out
