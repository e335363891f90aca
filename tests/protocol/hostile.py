"""A hostile registrar for the reference pledge (helpers, not tests).

A real aiohttp app over real TLS on loopback whose /requestvoucher answer the
test chooses; it records every request it receives, which is how "the pledge
does not enrol" is observed (test_pledge_refusals.py, test_pledge_registrar_ra.py).
"""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from brski.artifact import sign_artifact
from brski.devpki import DevPki
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


def hostile_app(h: Hostile) -> web.Application:
    @web.middleware
    async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
        h.calls.append((request.method, request.path))
        return await handler(request)

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


def serve_hostile(h: Hostile, cert_pem: Path, key_path: Path) -> tuple[int, asyncio.AbstractEventLoop]:
    """``h`` over TLS with this certificate on a loopback port, on a loop of its own thread."""
    loop = asyncio.new_event_loop()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(cert_pem), str(key_path))
    runner = web.AppRunner(hostile_app(h))
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
    loop.run_until_complete(site.start())
    port: int = runner.addresses[0][1]
    threading.Thread(target=loop.run_forever, daemon=True).start()
    return port, loop


def enroll_against(h: Hostile, port: int, *, sleeps: list[float] | None = None) -> Any:
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


def never_enrolled(h: Hostile) -> None:
    paths = {p for _, p in h.calls}
    assert "/.well-known/est/simpleenroll" not in paths, h.calls


def refused_with_telemetry(h: Hostile, result: Any, check: str) -> None:
    assert not result.ok and result.failed_check == check, (result.failed_check, result.detail)
    never_enrolled(h)
    # RFC 8995 5.7: the pledge reports why it rejected the voucher.
    assert h.telemetry and h.telemetry[-1]["status"] is False, h.telemetry
