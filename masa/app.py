"""``create_app(config)``: the MASA as an aiohttp application.

Resources (the store, the signing key) are opened in ``cleanup_ctx`` so that
a test or a process gets a fully built app and shutdown closes everything in
reverse order.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

from aiohttp import web

from brski.artifact import supported_media_types
from brski.errors import BrskiError
from brski.pki import load_cert, load_private_key
from brski_storage import open_masa_store
from brski_web import refusals
from brski_web.configfile import read_certs
from brski_web.evidence import check_store_evidence
from brski_web.middleware import (
    BODY_READ_TIMEOUT,
    PLAINTEXT_ERROR_PATHS,
    REFUSAL_RECORDER,
    error_middleware,
)
from masa import handlers
from masa.config import MasaConfig
from masa.ratelimit import RateLimiter
from masa.service import MasaService, VoucherSigner

__all__ = ["CONFIG", "SERVICE", "create_app"]

CONFIG: web.AppKey[MasaConfig] = web.AppKey("masa_config", MasaConfig)
SERVICE: web.AppKey[MasaService] = web.AppKey("masa_service", MasaService)


async def _service_ctx(app: web.Application) -> AsyncIterator[None]:
    cfg = app[CONFIG]
    store = await open_masa_store(cfg.database)
    try:
        # The tables against the state the event log implies (docs/evidence.md).
        await check_store_evidence(store, role="masa", now=datetime.now(UTC),
                                   allow_inconsistent=cfg.allow_inconsistent)
    except BaseException:
        await store.close()
        raise
    signer = VoucherSigner(
        key=load_private_key(cfg.signer_key.read_bytes()),
        cert=load_cert(cfg.signer_cert.read_bytes()),
        chain=tuple(read_certs(cfg.signer_chain)),
    )
    app[SERVICE] = MasaService(
        store=store,
        signer=signer,
        manufacturer_anchors=read_certs(cfg.manufacturer_anchors),
        ownership=cfg.ownership,
        nonceless_validity=timedelta(days=cfg.nonceless_voucher_days),
        # RFC 8995 5.5/5.6: answer in any format the core can sign and verify.
        supported_media=supported_media_types(),
        rate_limiter=RateLimiter(per_minute=cfg.rate_limit_per_minute, burst=cfg.rate_limit_burst),
    )
    try:
        yield
    finally:
        await store.close()


async def _record_refusal(request: web.Request, err: BrskiError) -> None:
    service = request.app.get(SERVICE)
    if service is not None:
        await service.record_refusal(kind=f"refused {request.path}", err=err, now=datetime.now(UTC))


def create_app(config: MasaConfig) -> web.Application:
    app = web.Application(middlewares=[error_middleware], client_max_size=config.max_body_bytes)
    app[CONFIG] = config
    app[REFUSAL_RECORDER] = _record_refusal
    app[BODY_READ_TIMEOUT] = config.body_read_timeout_s
    # RFC 8995 5.6: "the response data from the MASA MUST be a plaintext
    # human-readable (UTF-8) error message".
    app[PLAINTEXT_ERROR_PATHS] = frozenset({"/.well-known/brski/requestvoucher"})
    app.cleanup_ctx.append(_service_ctx)
    refusals.install(app, lambda a: a[SERVICE].store if SERVICE in a else None)
    handlers.add_routes(app, SERVICE)
    return app
