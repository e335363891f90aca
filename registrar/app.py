"""``create_app(config)``: the registrar as an aiohttp application.

The store and the MASA connection pool are opened in ``cleanup_ctx`` and
closed in reverse order on shutdown.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from aiohttp import web
from cryptography import x509

from brski.artifact import supported_media_types
from brski.errors import BrskiError, ConfigError
from brski.oids import ID_KP_CMC_RA
from brski.pki import load_cert
from brski.validation import domain_id
from brski_hsm import load_key, probe_key, signing
from brski_storage import open_registrar_store
from brski_web import refusals
from brski_web.evidence import check_store_evidence
from brski_web.identity import peer_identity
from brski_web.logs import kv
from brski_web.memory import bound_asyncio_ssl_buffers
from brski_web.metrics import METRICS
from brski_web.metrics import install as metrics_install
from brski_web.middleware import BODY_READ_TIMEOUT, REFUSAL_RECORDER, request_middleware
from brski_web.proxies import PROXY_NETWORKS, parse_proxy_addresses, request_via
from brski_web.serve import client_ssl_context
from registrar import handlers
from registrar.admin import REVOCATION, add_admin_routes, add_revocation_routes, authenticate_admin
from registrar.admission import AdmissionControl
from registrar.config import RegistrarConfig
from registrar.console import create_registrar_console
from registrar.est_service import EstService
from registrar.evidence import record_refusal
from registrar.identity import ClientIdentity, RegistrarKeys
from registrar.issuance import IssuancePolicy
from registrar.masa_client import MasaClient, MasaTransport
from registrar.mud_service import MudService
from registrar.netaccess import NetworkAccess
from registrar.netaccess_api import NETACCESS, add_netaccess_routes
from registrar.revocation import RevocationPublisher, check_published_crl
from registrar.service import RegistrarService
from registrar.voucher_service import VoucherService

__all__ = ["CONFIG", "SERVICE", "create_app"]

log = logging.getLogger("brski.registrar")

CONFIG: web.AppKey[RegistrarConfig] = web.AppKey("registrar_config", RegistrarConfig)
SERVICE: web.AppKey[RegistrarService] = web.AppKey("registrar_service", RegistrarService)


def _is_ra(cert: x509.Certificate) -> bool:
    try:
        return ID_KP_CMC_RA in cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return False


def _manufacturer_names(cfg: RegistrarConfig) -> dict[str, list[str]]:
    """Device rows name their manufacturer by anchor subject; profiles by entry name."""
    names: dict[str, list[str]] = {}
    for m in cfg.manufacturers:
        if m.anchor is not None:
            names.setdefault(load_cert(m.anchor.read_bytes()).subject.rfc4514_string(), []).append(m.name)
    return names


async def _service_ctx(app: web.Application) -> AsyncIterator[None]:
    cfg = app[CONFIG]
    ca_cert, ra_cert = load_cert(cfg.ca_cert.read_bytes()), load_cert(cfg.ra_cert.read_bytes())
    # Either key may be a pkcs11: URI: it then signs in the token (brski_hsm).
    keys = RegistrarKeys(
        ca_cert=ca_cert,
        ca_key=load_key(cfg.ca_key, pkcs11=cfg.pkcs11, cert=ca_cert),
        ra_cert=ra_cert,
        ra_key=load_key(cfg.ra_key, pkcs11=cfg.pkcs11, cert=ra_cert),
        tls_cert=load_cert(cfg.tls_cert.read_bytes()),
    )
    # The registrar authenticates to the MASA with its RA certificate
    # (RFC 8995 5.5.4), or another cmcRA one when the RA key is in a token,
    # and trusts only the configured MASA anchors.
    client_cert, client_key = cfg.masa_client
    bound_asyncio_ssl_buffers()  # the MASA pool's connections (brski_web.memory)
    transport = MasaTransport(
        ssl_context=client_ssl_context(trust=cfg.masa_trust, cert=client_cert, key=client_key),
        timeout_s=cfg.masa_timeout_s,
    )
    store = await open_registrar_store(cfg.database)
    metrics = app[METRICS]
    store.observe_writes(metrics)
    transport.observer = metrics.masa_round_trip
    # CRL DP and AIA OCSP written into every LDevID (RFC 5280 4.2.1.13, 4.2.2.1; see registrar/revocation.py).
    public = cfg.revocation_base
    admission = AdmissionControl(
        store=store,
        policy=replace(cfg.admission, manufacturers=tuple(cfg.manufacturers)),
        own_domain_id=base64.b64encode(domain_id(keys.ca_cert)).decode(),  # RFC 8995 5.8.2
    )
    clients = ClientIdentity(store=store, keys=keys)
    try:
        # RFC 5280 3.3: never serve on a store that contradicts its last CRL.
        await check_published_crl(store, keys, now=datetime.now(UTC), allow_mismatch=cfg.allow_crl_mismatch)
        # The tables against the state the event log implies (docs/evidence.md).
        await check_store_evidence(store, role="registrar", now=datetime.now(UTC),
                                   allow_inconsistent=cfg.allow_inconsistent)
    except BaseException:
        await transport.close()
        await store.close()
        raise
    if not _is_ra(keys.tls_cert):
        # Discovered pledges require it (RFC 7030 3.6.1, RFC 8995 5.6.2).
        log.warning(kv("registrar-tls-cert-lacks-cmcRA", subject=keys.tls_cert.subject.rfc4514_string(),
                       effect="pledges that discovered this registrar refuse it (pledge.registrar-not-ra)"))
    publisher = RevocationPublisher(store, keys)
    clients.listed_on_crl = publisher.listed_in
    app[REVOCATION] = publisher
    mud = None
    if cfg.network_access.enabled:
        # RFC 8520: MUD files come from the manufacturer's server, trusted like its MASA.
        mud = MudService(store, anchors=admission.anchors, timeout_s=cfg.network_access.mud_timeout_s,
                         ssl_context=client_ssl_context(trust=cfg.masa_trust, cert=None, key=None))
    app[NETACCESS] = NetworkAccess(store, cfg.network_access, mud)
    assurance = (
        asyncio.get_running_loop().create_task(app[NETACCESS].assurance_loop(lambda: datetime.now(UTC)))
        if cfg.network_access.enabled else None
    )
    vouchers = VoucherService(
        store=store,
        keys=keys,
        clients=clients,
        admission=admission,
        masa=MasaClient(transport),
        masa_url_override=cfg.masa_url_override,
        # RFC 8995 5.2: every voucher format the core can sign and verify.
        supported_media=supported_media_types(),
        accept_base64=cfg.accept_base64_voucher_requests,
        reonboard_decommissioned=cfg.reonboard_decommissioned,
    )
    if mud is not None:
        mud_service = mud
        vouchers.on_idevid = lambda serial, idevid, now: mud_service.note_idevid(serial, idevid, now=now)
    app[SERVICE] = RegistrarService(
        store=store,
        keys=keys,
        vouchers=vouchers,
        est=EstService(
            store=store,
            keys=keys,
            clients=clients,
            enroll_gate=admission.enroll_gate_on,
            ldevid_validity=timedelta(days=cfg.ldevid_validity_days),
            crl_url=f"{public}/crl" if public else None,
            ocsp_url=f"{public}/ocsp" if public else None,
            issuance=IssuancePolicy(
                profiles=cfg.ldevid,
                manufacturer_names=_manufacturer_names(cfg),
                supersede=cfg.ldevid_supersede,
                limit=cfg.ldevid_issuance_limit,
                window=timedelta(seconds=cfg.ldevid_issuance_window_s),
            ),
        ),
    )
    try:
        yield
    finally:
        if assurance is not None:
            assurance.cancel()
        await transport.close()
        await store.close()


async def _mdns_ctx(app: web.Application) -> AsyncIterator[None]:
    """RFC 8995 4.1 / Appendix B: announce _brski-registrar._tcp while serving."""
    from brski_net.mdns import SERVICE_REGISTRAR, Announcer

    cfg = app[CONFIG]
    announcer = Announcer(
        service=SERVICE_REGISTRAR, instance=cfg.mdns_instance, port=cfg.port, interfaces=cfg.mdns_interfaces
    )
    try:
        await announcer.start()
    except (LookupError, OSError) as exc:
        raise ConfigError(f"mdns_interfaces: cannot announce: {exc}", check="config.network") from exc
    try:
        yield
    finally:
        await announcer.stop()


async def _record_refusal(request: web.Request, err: BrskiError) -> None:
    metrics = request.config_dict.get(METRICS)  # config_dict: also from the console sub-app
    if metrics is not None:
        metrics.refused(err)
    service = request.config_dict.get(SERVICE)  # config_dict: also from the console sub-app
    if service is not None:
        await record_refusal(
            service.store, kind=f"refused {request.path}", err=err, peer=peer_identity(request), now=datetime.now(UTC),
            via=request_via(request),
        )


async def _store_ready(app: web.Application) -> None:
    await app[SERVICE].store.get_device("-")  # a point read: the store answers


async def _ca_key_ready(app: web.Application) -> None:
    keys = app[SERVICE].keys
    await signing(keys.ca_key, probe_key, keys.ca_key, keys.ca_cert)


async def _ra_key_ready(app: web.Application) -> None:
    keys = app[SERVICE].keys
    await signing(keys.ra_key, probe_key, keys.ra_key, keys.ra_cert)


def create_app(config: RegistrarConfig) -> web.Application:
    app = web.Application(middlewares=[request_middleware], client_max_size=config.max_body_bytes)
    app[CONFIG] = config
    app[REFUSAL_RECORDER] = _record_refusal
    app[BODY_READ_TIMEOUT] = config.body_read_timeout_s
    app[PROXY_NETWORKS] = parse_proxy_addresses(config.proxy_addresses)
    if config.mdns_interfaces:
        app.cleanup_ctx.append(_mdns_ctx)
    app.cleanup_ctx.append(_service_ctx)
    handshakes = refusals.install(app, lambda a: a[SERVICE].store if SERVICE in a else None)
    metrics = metrics_install(
        app, role="registrar", host=config.metrics_host or config.host, port=config.metrics_port,
        checks={"store": _store_ready, "key:domain-ca": _ca_key_ready, "key:ra": _ra_key_ready},
    )
    handshakes.listeners.append(metrics.handshake_refused)
    handlers.add_routes(app, SERVICE)
    add_admin_routes(app, service_key=SERVICE, config_key=CONFIG)
    add_revocation_routes(app, REVOCATION, app)
    # The operators' web console (registrar/console.py), same admin check as /admin/v1.
    add_netaccess_routes(
        app, ca_cert=lambda a: a[SERVICE].keys.ca_cert,
        admin=lambda request, now: authenticate_admin(request, request.app[SERVICE], request.app[CONFIG], now),
    )
    app.add_subapp("/console/", create_registrar_console(SERVICE, CONFIG))
    return app
