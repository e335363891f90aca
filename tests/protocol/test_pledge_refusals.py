"""Refusals 30 and 31: the reference pledge against a hostile registrar.

The real pledge driver (``pledge_sim.service.enroll_one``) talks over real TLS
to a registrar that misbehaves on purpose. In each refusal the pledge must
stop at the named check, report failure telemetry where RFC 8995 asks for it
(5.7), and never ask for a certificate. The registrar here records every
request it receives, which is how "does not enrol" is observed.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from brski.artifact import sign_artifact
from brski.devpki import DevPki, build_dev_pki
from brski.oids import MT_VOUCHER_CMS_JSON
from brski.pki import cert_der
from brski.voucher import Assertion, Voucher, VoucherRequest
from pledge_sim.config import load_config
from pledge_sim.service import enroll_one

SERIAL = "PLG-000001"


@dataclass
class Hostile:
    """A registrar whose /requestvoucher answer the test chooses."""

    pki: DevPki
    root: Path
    answer: Callable[[VoucherRequest], web.Response] = lambda _req: web.Response(status=500)
    calls: list[tuple[str, str]] = field(default_factory=list)
    telemetry: list[dict[str, Any]] = field(default_factory=list)

    def voucher(self, req: VoucherRequest, **changes: Any) -> web.Response:
        """A voucher the real manufacturer's MASA signed, with ``changes``."""
        fields: dict[str, Any] = {
            "created_on": datetime.now(UTC),
            "assertion": Assertion.PROXIMITY,
            "serial_number": req.serial_number,
            "nonce": req.nonce,
            "pinned_domain_cert": cert_der(self.pki.cert("registrar/domain-ca.crt")),
        }
        fields.update(changes)
        raw = sign_artifact(
            Voucher(**fields),
            media_type=MT_VOUCHER_CMS_JSON,
            key=self.pki.key("masa/voucher-signer.key"),
            cert=self.pki.cert("masa/voucher-signer.crt"),
        )
        return web.Response(body=raw, content_type=MT_VOUCHER_CMS_JSON)


def _app(h: Hostile) -> web.Application:
    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        h.calls.append((request.method, request.path))
        return await handler(request)  # type: ignore[no-any-return]

    async def requestvoucher(request: web.Request) -> web.Response:
        from brski.artifact import verify_artifact

        art = verify_artifact(await request.read(), media_type=MT_VOUCHER_CMS_JSON, kind=VoucherRequest)
        assert isinstance(art.payload, VoucherRequest)
        return h.answer(art.payload)

    async def status(request: web.Request) -> web.Response:
        h.telemetry.append(json.loads(await request.read()))
        return web.Response()

    async def anything(request: web.Request) -> web.Response:
        return web.Response(status=500, text="a hostile registrar issues nothing")

    app = web.Application(middlewares=[record])
    app.router.add_post("/.well-known/brski/requestvoucher", requestvoucher)
    app.router.add_post("/.well-known/brski/voucher_status", status)
    app.router.add_route("*", "/{tail:.*}", anything)
    return app


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Hostile, int]]:
    root = tmp_path_factory.mktemp("hostile")
    pki = build_dev_pki(pledges=1, masa_url="https://localhost:1", now=datetime.now(UTC))
    for rel, data in pki.files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    h = Hostile(pki=pki, root=root)
    loop = asyncio.new_event_loop()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(root / "registrar/tls.crt"), str(root / "registrar/tls.key"))
    runner = web.AppRunner(_app(h))
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
    loop.run_until_complete(site.start())
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    import threading

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield h, port
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


def _enroll(h: Hostile, port: int, *, sleeps: list[float] | None = None) -> Any:
    h.calls.clear()
    h.telemetry.clear()
    cfg = load_config(
        None,
        {
            "registrar": f"https://127.0.0.1:{port}",
            "dir": str(h.root / "pledges" / SERIAL),
            "anchor": [str(h.root / "manufacturer/root-ca.crt")],
            "timeout": 10.0,
            "max_voucher_attempts": 2,
        },
    )

    async def no_sleep(seconds: float) -> None:
        if sleeps is not None:
            sleeps.append(seconds)

    return asyncio.run(enroll_one(cfg, sleep=no_sleep))


def _never_enrolled(h: Hostile) -> None:
    paths = {p for _, p in h.calls}
    assert "/.well-known/est/simpleenroll" not in paths, h.calls


def _refused_with_telemetry(h: Hostile, result: Any, check: str) -> None:
    assert not result.ok and result.failed_check == check, (result.failed_check, result.detail)
    _never_enrolled(h)
    # RFC 8995 5.7: the pledge reports why it rejected the voucher.
    assert h.telemetry and h.telemetry[-1]["status"] is False, h.telemetry


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
    _refused_with_telemetry(h, _enroll(h, port), "pledge.voucher-signer-untrusted")


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
    _refused_with_telemetry(h, _enroll(h, port), check)


def test_30_replayed_voucher(hostile: tuple[Hostile, int]) -> None:
    """A voucher captured from an earlier run carries that run's nonce."""
    h, port = hostile
    first: list[bytes] = []

    def capture(req: VoucherRequest) -> web.Response:
        if not first:
            first.append(h.voucher(req).body)  # type: ignore[arg-type]
        return web.Response(body=first[0], content_type=MT_VOUCHER_CMS_JSON)

    h.answer = capture
    _enroll(h, port)  # the first run accepts its own voucher (then fails at EST here)
    _refused_with_telemetry(h, _enroll(h, port), "pledge.voucher-nonce")


def test_30_no_pinned_domain_cert(hostile: tuple[Hostile, int]) -> None:
    h, port = hostile
    other_pin = build_dev_pki(pledges=1, masa_url="https://localhost:1", now=datetime.now(UTC))
    # Pinned to a domain CA the registrar's TLS certificate does not chain to.
    h.answer = lambda req: h.voucher(req, pinned_domain_cert=cert_der(other_pin.cert("registrar/domain-ca.crt")))
    _refused_with_telemetry(h, _enroll(h, port), "pledge.registrar-cert-unpinned")


def test_31_retry_after_over_60_seconds_is_clamped(hostile: tuple[Hostile, int]) -> None:
    h, port = hostile
    h.answer = lambda _req: web.Response(status=202, headers={"Retry-After": "3600"})
    sleeps: list[float] = []
    result = _enroll(h, port, sleeps=sleeps)
    assert not result.ok and result.failed_check == "pledge.voucher-retries-exhausted"
    assert sleeps == [60]
    _never_enrolled(h)


def test_31_redirect_to_another_origin_is_not_followed(hostile: tuple[Hostile, int]) -> None:
    h, port = hostile
    h.answer = lambda _req: web.Response(
        status=307, headers={"Location": "https://elsewhere.example:8443/.well-known/brski/requestvoucher"}
    )
    result = _enroll(h, port)
    assert not result.ok and result.failed_check == "pledge.redirect-cross-origin"
    assert [p for _, p in h.calls].count("/.well-known/brski/requestvoucher") == 1
    _never_enrolled(h)
