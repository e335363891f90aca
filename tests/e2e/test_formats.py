"""End to end: one pledge per voucher format, and the negotiation refusals.

RFC 8995 sections 5.2 and 5.5: the pledge's Content-Type names its
voucher-request format, its Accept the voucher format it can take; the
registrar asks the MASA in the pledge's format, and the voucher comes back
in the one the pledge asked for. Anything else is 415 (request format) or
406 (response format), named by the failed check.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from brski import oids
from brski.artifact import verify_artifact
from brski.pki import Role, load_cert, verify_chain
from brski.voucher import Voucher, VoucherRequest
from brski_cli.lab import Lab
from tests.e2e.labtools import enroll, pledge_dirs, post, rows

FORMATS = {"cms": oids.MT_VOUCHER_CMS_JSON, "cose": oids.MT_VOUCHER_COSE_CBOR, "jws": oids.MT_VOUCHER_JWS_JSON}


def test_one_pledge_per_format_onboards_and_the_voucher_is_in_that_format(lab: Lab, tmp_path: Path) -> None:
    dirs = pledge_dirs(lab)
    assert len(dirs) >= len(FORMATS)
    masa_anchor = load_cert((lab.certs / "manufacturer" / "root-ca.crt").read_bytes())
    for (fmt, media), pledge_dir in zip(sorted(FORMATS.items()), dirs, strict=False):
        proc = enroll(lab, pledge_dir, tmp_path / fmt, "--format", fmt)
        assert proc.returncode == 0, f"{fmt}: {proc.stdout}{proc.stderr}"
        serial = json.loads(proc.stdout)["serial"]

        # The registrar stored the voucher with the negotiated media type, and
        # asked the MASA in the pledge's own format.
        ((stored_media, blob),) = rows(
            lab.db_url("registrar"), "SELECT media_type, voucher FROM vouchers WHERE serial = ?", (serial,)
        )
        assert stored_media == media
        ((request_media, rvr),) = rows(
            lab.db_url("registrar"),
            "SELECT media_type, registrar_request FROM voucher_requests WHERE serial = ?",
            (serial,),
        )
        assert request_media == media
        assert isinstance(rvr, bytes)
        assert isinstance(verify_artifact(rvr, media_type=media, kind=VoucherRequest).payload, VoucherRequest)
        ((masa_media,),) = rows(lab.db_url("masa"), "SELECT media_type FROM vouchers WHERE serial = ?", (serial,))
        assert masa_media == media

        # The stored bytes are a voucher in that format, for that pledge, by the MASA.
        assert isinstance(blob, bytes)
        art = verify_artifact(blob, media_type=media, kind=Voucher)
        assert art.payload.serial_number == serial
        assert art.payload.created_on is not None
        verify_chain(
            art.signer, intermediates=art.certificates, anchors=[masa_anchor],
            now=art.payload.created_on, role=Role.MASA_SIGNER,
        )


@pytest.mark.parametrize("content_type", ["application/voucher-cms+xml", "application/cbor", "text/plain"])
def test_unknown_request_format_is_415(lab: Lab, tmp_path: Path, content_type: str) -> None:
    status, problem = post(lab, "/.well-known/brski/requestvoucher", b"\x30\x00", content_type, tmp_path)
    assert status == 415, problem
    assert problem["check"] == "http.content-type"


def test_unsatisfiable_accept_is_406(lab: Lab, tmp_path: Path) -> None:
    status, problem = post(
        lab, "/.well-known/brski/requestvoucher", b"\x30\x00", oids.MT_VOUCHER_CMS_JSON, tmp_path,
        accept="application/voucher-cms+xml, text/plain, application/problem+json",
    )
    assert status == 406, problem
    assert problem["check"] == "http.accept"


def test_draft31_cose_name_is_understood_as_input(lab: Lab, tmp_path: Path) -> None:
    # Not a 415: the body is parsed as COSE (and refused as a malformed COSE_Sign1).
    status, problem = post(
        lab, "/.well-known/brski/requestvoucher", b"\xd2\x80", oids.MT_VOUCHER_COSE_DRAFT, tmp_path,
        accept=f"{oids.MT_VOUCHER_COSE_DRAFT}, application/problem+json",
    )
    assert status == 400, problem
    assert str(problem["check"]).startswith(("cose.", "cbor.")), problem
