"""``create_app(config)``: the registrar as an aiohttp application.

The store and the MASA connection pool are opened in ``cleanup_ctx`` and
closed in reverse order on shutdown.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from aiohttp import web

from brski.artifact import supported_media_types
from brski.errors import BrskiError
from brski.pki import load_cert, load_private_key
from brski.validation import domain_id
from brski_storage import open_registrar_store
from brski_web import refusals
from brski_web.identity import peer_identity
from brski_web.middleware import BODY_READ_TIMEOUT, REFUSAL_RECORDER, error_middleware
from brski_web.serve import client_ssl_context
from registrar import handlers
from registrar.admin import REVOCATION, add_admin_routes, add_revocation_routes, admin_subject
from registrar.config import RegistrarConfig
from registrar.context import RegistrarContext, RegistrarKeys
from registrar.est_service import EstService
from registrar.masa_client import MasaClient, MasaTransport
from registrar.mud_service import MudService
from registrar.netaccess import NetworkAccess
from registrar.netaccess_api import NETACCESS, add_netaccess_routes
from registrar.policy import RegistrarPolicy
from registrar.revocation import RevocationPublisher
from registrar.service import RegistrarService
from registrar.voucher_service import VoucherService

__all__ = ["CONFIG", "SERVICE", "create_app"]

CONFIG: web.AppKey[RegistrarConfig] = web.AppKey("registrar_config", RegistrarConfig)
SERVICE: web.AppKey[RegistrarService] = web.AppKey("registrar_service", RegistrarService)


async def _service_ctx(app: web.Application) -> AsyncIterator[None]:
    cfg = app[CONFIG]
    keys = RegistrarKeys(
        ca_cert=load_cert(cfg.ca_cert.read_bytes()),
        ca_key=load_private_key(cfg.ca_key.read_bytes()),
        ra_cert=load_cert(cfg.ra_cert.read_bytes()),
        ra_key=load_private_key(cfg.ra_key.read_bytes()),
        tls_cert=load_cert(cfg.tls_cert.read_bytes()),
    )
    # The registrar authenticates to the MASA with its RA certificate
    # (RFC 8995 5.5.4) and trusts only the configured MASA anchors.
    transport = MasaTransport(
        ssl_context=client_ssl_context(trust=cfg.masa_trust, cert=cfg.ra_cert, key=cfg.ra_key),
        timeout_s=cfg.masa_timeout_s,
    )
    store = await open_registrar_store(cfg.database)
    # CRL DP and AIA OCSP written into every LDevID (issue 5; see registrar/revocation.py).
    public = cfg.revocation_base
    policy = RegistrarPolicy(
        store=store,
        policy=replace(cfg.admission, manufacturers=tuple(cfg.manufacturers)),
        own_domain_id=base64.b64encode(domain_id(keys.ca_cert)).decode(),  # RFC 8995 5.8.2
    )
    ctx = RegistrarContext(store=store, keys=keys, manufacturer_anchors=policy.anchors)
    ctx.enroll_gate = lambda serial, now: policy.enroll_gate(serial, now=now)
    ctx.reonboard_decommissioned = cfg.reonboard_decommissioned
    app[REVOCATION] = RevocationPublisher(store, keys)
    mud = None
    if cfg.network_access.enabled:
        # RFC 8520: MUD files come from the manufacturer's server, trusted like its MASA.
        mud = MudService(store, anchors=policy.anchors, timeout_s=cfg.network_access.mud_timeout_s,
                         ssl_context=client_ssl_context(trust=cfg.masa_trust, cert=None, key=None))
        ctx.on_idevid = lambda serial, idevid, now: mud.note_idevid(serial, idevid, now=now)
    app[NETACCESS] = NetworkAccess(store, cfg.network_access, mud)
    assurance = (
        asyncio.get_running_loop().create_task(app[NETACCESS].assurance_loop(lambda: datetime.now(UTC)))
        if cfg.network_access.enabled else None
    )
    app[SERVICE] = RegistrarService(
        ctx=ctx,
        # RFC 8995 5.2: every voucher format the core can sign and verify.
        vouchers=VoucherService(
            ctx,
            policy=policy,
            masa=MasaClient(transport),
            masa_url_override=cfg.masa_url_override,
            supported_media=supported_media_types(),
        ),
        est=EstService(
            ctx,
            ldevid_validity=timedelta(days=cfg.ldevid_validity_days),
            crl_url=f"{public}/crl" if public else None,
            ocsp_url=f"{public}/ocsp" if public else None,
        ),
    )
    try:
        yield
    finally:
        if assurance is not None:
            assurance.cancel()
        await transport.close()
        await store.close()


async def _record_refusal(request: web.Request, err: BrskiError) -> None:
    service = request.app.get(SERVICE)
    if service is not None:
        await service.record_refusal(
            kind=f"refused {request.path}", err=err, peer=peer_identity(request), now=datetime.now(UTC)
        )


def create_app(config: RegistrarConfig) -> web.Application:
    app = web.Application(middlewares=[error_middleware], client_max_size=config.max_body_bytes)
    app[CONFIG] = config
    app[REFUSAL_RECORDER] = _record_refusal
    app[BODY_READ_TIMEOUT] = config.body_read_timeout_s
    app.cleanup_ctx.append(_service_ctx)
    refusals.install(app, lambda a: a[SERVICE].ctx.store if SERVICE in a else None)
    handlers.add_routes(app, SERVICE)
    add_admin_routes(app, service_key=SERVICE, config_key=CONFIG)
    add_revocation_routes(app, REVOCATION, app)
    add_netaccess_routes(
        app, ca_cert=lambda a: a[SERVICE].ctx.keys.ca_cert,
        admin=lambda request, now: admin_subject(request, request.app[SERVICE], request.app[CONFIG], now),
    )
    return app
