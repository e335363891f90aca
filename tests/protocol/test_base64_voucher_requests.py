"""A registrar configured for labs decodes base64 voucher-requests (RFC 8366 8.3 says DER).

``accept_base64_voucher_requests = true`` lets a lab onboard a pledge that
sends the base64 of its CMS voucher-request (NIST SP 1800-36 Build 5's): the
registrar decodes it, forwards the DER as prior-signed-voucher-request, and
records the decoding in the voucher.requested event.  The default refuses it
(tests/protocol/test_interop_answers.py).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import pytest

from brski.artifact import verify_artifact
from brski.oids import MT_VOUCHER_CMS_JSON
from brski.voucher import Voucher
from tests.protocol.helpers import post_vr
from tests.protocol.net import VR_HEADERS, Net, pledge_request, running_net


@pytest.fixture(scope="module")
def net(
    tmp_path_factory: pytest.TempPathFactory, engine: str, request: pytest.FixtureRequest
) -> Iterator[Net]:
    with running_net(tmp_path_factory.mktemp("b64"), engine, request,
                     pledges=2, registrar={"accept_base64_voucher_requests": True}) as n:
        yield n


def test_base64_voucher_request_is_decoded_when_configured(net: Net) -> None:
    me = net.pledge(net.fresh_serial())
    der = pledge_request(net, me)
    reply = post_vr(net, me, base64.b64encode(der), VR_HEADERS)
    assert reply.status == 200, reply.body[:300]
    voucher = verify_artifact(reply.body, media_type=MT_VOUCHER_CMS_JSON, kind=Voucher).payload
    assert isinstance(voucher, Voucher) and voucher.serial_number == me.label
    # What is stored (and was forwarded to the MASA) is the DER, not the text.
    stored = net.rows("registrar", "SELECT pledge_request FROM voucher_requests")
    assert [bytes(r[0]) for r in stored] == [der]
    details = [json.loads(d) for (d,) in net.rows(
        "registrar", "SELECT detail FROM events WHERE kind = 'voucher.requested'")]
    assert [d.get("body_encoding") for d in details] == ["base64"]
