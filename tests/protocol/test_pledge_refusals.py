"""Refusals 30 and 31: the reference pledge against a hostile registrar.

The real pledge driver (``pledge_sim.service.enroll_one``) talks over real TLS
to a registrar that misbehaves on purpose. In each refusal the pledge must
stop at the named check, report failure telemetry where RFC 8995 asks for it
(5.7), and never ask for a certificate. The registrar here records every
request it receives, which is how "does not enrol" is observed.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web

from brski.artifact import sign_artifact
from brski.devpki import build_dev_pki
from brski.oids import MT_VOUCHER_CMS_JSON
from brski.pki import cert_der
from brski.voucher import Assertion, Voucher, VoucherRequest
from tests.protocol.hostile import (
    Hostile,
    enroll_against,
    never_enrolled,
    refused_with_telemetry,
    serve_hostile,
)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Hostile, int]]:
    root = tmp_path_factory.mktemp("hostile")
    pki = build_dev_pki(pledges=1, masa_url="https://localhost:1", now=datetime.now(UTC))
    for rel, data in pki.files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    h = Hostile(pki=pki, root=root)
    port, loop = serve_hostile(h, root / "registrar/tls.crt", root / "registrar/tls.key")
    yield h, port
    loop.call_soon_threadsafe(loop.stop)


def test_30_voucher_not_from_the_manufacturer(hostile: tuple[Hostile, int]) -> None:
    h, port = hostile
    stranger = build_dev_pki(pledges=1, masa_url="https://localhost:1", now=datetime.now(UTC))

    def answer(req: VoucherRequest) -> web.Response:
        v = Voucher(
            created_on=datetime.now(UTC), assertion=Assertion.PROXIMITY, serial_number=req.serial_number or "",
            nonce=req.nonce, pinned_domain_cert=cert_der(h.pki.cert("registrar/domain-ca.crt")),
        )
        raw = sign_artifact(
            v, media_type=MT_VOUCHER_CMS_JSON,
            key=stranger.key("masa/voucher-signer.key"), cert=stranger.cert("masa/voucher-signer.crt"),
        )
        return web.Response(body=raw, content_type=MT_VOUCHER_CMS_JSON)

    h.answer = answer
    refused_with_telemetry(h, enroll_against(h, port), "pledge.voucher-signer-untrusted")


@pytest.mark.parametrize(
    ("case", "changes", "check"),
    [
        ("wrong serial", {"serial_number": "SOMEONE-ELSE"}, "pledge.voucher-serial-number"),
        ("wrong nonce", {"nonce": b"r" * 16}, "pledge.voucher-nonce"),
        ("idevid-issuer not its own", {"idevid_issuer": b"\x07" * 20}, "pledge.voucher-idevid-issuer"),
        (
            "expired",
            {"nonce": None, "created_on": datetime.now(UTC) - timedelta(days=2),
             "expires_on": datetime.now(UTC) - timedelta(days=1)},
            "pledge.voucher-nonce",
        ),
        ("assertion not allowed", {"assertion": Assertion.AGENT_PROXIMITY}, "pledge.voucher-assertion"),
    ],
)
def test_30_bad_vouchers(hostile: tuple[Hostile, int], case: str, changes: dict[str, Any], check: str) -> None:
    h, port = hostile
    h.answer = lambda req: h.voucher(req, **changes)
    refused_with_telemetry(h, enroll_against(h, port), check)


def test_30_replayed_voucher(hostile: tuple[Hostile, int]) -> None:
    """A voucher captured from an earlier run carries that run's nonce."""
    h, port = hostile
    first: list[bytes] = []

    def capture(req: VoucherRequest) -> web.Response:
        if not first:
            body = h.voucher(req).body
            assert isinstance(body, bytes)
            first.append(body)
        return web.Response(body=first[0], content_type=MT_VOUCHER_CMS_JSON)

    h.answer = capture
    enroll_against(h, port)  # the first run accepts its own voucher (then fails at EST here)
    refused_with_telemetry(h, enroll_against(h, port), "pledge.voucher-nonce")


def test_30_no_pinned_domain_cert(hostile: tuple[Hostile, int]) -> None:
    h, port = hostile
    other_pin = build_dev_pki(pledges=1, masa_url="https://localhost:1", now=datetime.now(UTC))
    # Pinned to a domain CA the registrar's TLS certificate does not chain to.
    h.answer = lambda req: h.voucher(req, pinned_domain_cert=cert_der(other_pin.cert("registrar/domain-ca.crt")))
    refused_with_telemetry(h, enroll_against(h, port), "pledge.registrar-cert-unpinned")


def test_31_retry_after_over_60_seconds_is_clamped(hostile: tuple[Hostile, int]) -> None:
    h, port = hostile
    h.answer = lambda _req: web.Response(status=202, headers={"Retry-After": "3600"})
    sleeps: list[float] = []
    result = enroll_against(h, port, sleeps=sleeps)
    assert not result.ok and result.failed_check == "pledge.voucher-retries-exhausted"
    assert sleeps == [60]
    never_enrolled(h)


def test_31_redirect_to_another_origin_is_not_followed(hostile: tuple[Hostile, int]) -> None:
    h, port = hostile
    h.answer = lambda _req: web.Response(
        status=307, headers={"Location": "https://elsewhere.example:8443/.well-known/brski/requestvoucher"}
    )
    result = enroll_against(h, port)
    assert not result.ok and result.failed_check == "pledge.redirect-cross-origin"
    assert [p for _, p in h.calls].count("/.well-known/brski/requestvoucher") == 1
    never_enrolled(h)
