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
from brski.pki import load_cert
from brski_config import read_certs
from brski_hsm import load_key, probe_key, signing
from brski_storage import open_masa_store
from brski_web import refusals
from brski_web.evidence import check_store_evidence
from brski_web.metrics import METRICS
from brski_web.metrics import install as metrics_install
from brski_web.middleware import (
    BODY_READ_TIMEOUT,
    PLAINTEXT_ERROR_PATHS,
    REFUSAL_RECORDER,
    request_middleware,
)
from masa import handlers
from masa.config import MasaConfig
from masa.console import create_masa_console
from masa.mud import add_mud_routes
from masa.ratelimit import RateLimiter
from masa.service import MasaService, VoucherSigner

__all__ = ["CONFIG", "SERVICE", "create_app"]

CONFIG: web.AppKey[MasaConfig] = web.AppKey("masa_config", MasaConfig)
SERVICE: web.AppKey[MasaService] = web.AppKey("masa_service", MasaService)


async def _service_ctx(app: web.Application) -> AsyncIterator[None]:
    cfg = app[CONFIG]
    signer_cert = load_cert(cfg.signer_cert.read_bytes())
    signer = VoucherSigner(
        # A PEM file or a pkcs11: URI (the key then signs in the token, brski_hsm);
        # loaded before the store opens, so a bad key leaves nothing open.
        key=load_key(cfg.signer_key, pkcs11=cfg.pkcs11, cert=signer_cert),
        cert=signer_cert,
        chain=tuple(read_certs(cfg.signer_chain)),
    )
    store = await open_masa_store(cfg.database)
    try:
        # The tables against the state the event log implies (docs/evidence.md).
        await check_store_evidence(store, role="masa", now=datetime.now(UTC),
                                   allow_inconsistent=cfg.allow_inconsistent)
    except BaseException:
        await store.close()
        raise
    store.observe_writes(app[METRICS])
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
    metrics = request.config_dict.get(METRICS)  # config_dict: also from the console sub-app
    if metrics is not None:
        metrics.refused(err)
    service = request.config_dict.get(SERVICE)  # config_dict: also from the console sub-app
    if service is not None:
        await service.record_refusal(kind=f"refused {request.path}", err=err, now=datetime.now(UTC))


async def _store_ready(app: web.Application) -> None:
    await app[SERVICE].store.get_manufactured_device("-")  # a point read: the store answers


async def _signer_ready(app: web.Application) -> None:
    signer = app[SERVICE].signer
    await signing(signer.key, probe_key, signer.key, signer.cert)


def create_app(config: MasaConfig) -> web.Application:
    app = web.Application(middlewares=[request_middleware], client_max_size=config.max_body_bytes)
    app[CONFIG] = config
    app[REFUSAL_RECORDER] = _record_refusal
    app[BODY_READ_TIMEOUT] = config.body_read_timeout_s
    # RFC 8995 5.6: "the response data from the MASA MUST be a plaintext
    # human-readable (UTF-8) error message".
    app[PLAINTEXT_ERROR_PATHS] = frozenset({"/.well-known/brski/requestvoucher"})
    app.cleanup_ctx.append(_service_ctx)
    handshakes = refusals.install(app, lambda a: a[SERVICE].store if SERVICE in a else None)
    metrics = metrics_install(
        app, role="masa", host=config.metrics_host or config.host, port=config.metrics_port,
        checks={"store": _store_ready, "key:voucher-signer": _signer_ready},
    )
    handshakes.listeners.append(metrics.handshake_refused)
    handlers.add_routes(app, SERVICE)
    # The manufacturer's web console (masa/console.py).
    app.add_subapp("/console/", create_masa_console(SERVICE, config))
    if config.mud_dir is not None:
        add_mud_routes(app, config.mud_dir)
    return app
