"""The registrar's admin HTTPS API (/admin/v1) and its CRL/OCSP publication routes.

Admin API: JSON over the registrar's own HTTPS listener, for operators'
tooling. The client authenticates with a TLS client certificate that chains
to the domain CA and is configured as an admin credential by SHA-256
fingerprint (``admin_fingerprints``) or RFC 4514 subject (``admin_subjects``);
an LDevID this registrar issued to a device is never one, whatever its
subject. No admin configured: the API answers 403 (check admin.disabled).
Errors are RFC 9457 problem bodies from the shared middleware, which also
records every refusal; every admin action that succeeds is an event naming
the admin. Routes::

    GET  /admin/v1/devices?state=S&manufacturer=M&after=SERIAL&limit=N
    GET  /admin/v1/devices/{serial}
    POST /admin/v1/devices/{serial}/revoke         {"reason": "keyCompromise"}
    POST /admin/v1/devices/{serial}/decommission   {"reason": "..."} (optional)
    POST /admin/v1/devices/{serial}/approve|reject {"reason": "..."} (optional; RFC 8995 5.6 queue)
    GET  /admin/v1/audit/verify

Publication (plain HTTP on ``http_port``, and also on HTTPS): ``GET /crl``
(RFC 5280 4.2.1.13, application/pkix-crl, DER) and OCSP (RFC 6960 A.1):
``POST /ocsp`` with application/ocsp-request, or ``GET /ocsp/{base64}``.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from aiohttp import web
from cryptography import x509

from brski.errors import (
    Forbidden,
    MalformedInput,
    NotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from brski.est import parse_media_type
from brski.ocsp import MAX_REQUEST
from brski.oids import MT_JSON, MT_OCSP_REQUEST, MT_OCSP_RESPONSE, MT_PKIX_CRL
from brski_storage.base import ApprovalDecision, CertificateRecord, DeviceRecord
from brski_web.admin_auth import admin_subject
from brski_web.evidence import audit_report, checkpoint_after
from brski_web.identity import peer_identity
from brski_web.metrics import METRICS
from brski_web.middleware import request_middleware
from registrar import actions
from registrar.config import RegistrarConfig
from registrar.evidence import record_event
from registrar.netaccess_api import session_json, start_enforcement
from registrar.revocation import (
    RevocationPublisher,
    crl_consistency,
    describe_disagreements,
)
from registrar.service import RegistrarService

__all__ = [
    "REVOCATION",
    "add_admin_routes",
    "add_revocation_routes",
    "authenticate_admin",
    "certificate_json",
    "create_revocation_app",
    "device_json",
]

LifecycleAction = Callable[..., Awaitable[list[CertificateRecord]]]
REVOCATION: web.AppKey[RevocationPublisher] = web.AppKey("registrar_revocation", RevocationPublisher)
MAX_PAGE = 1000


def device_json(d: DeviceRecord) -> dict[str, Any]:
    return {
        "serial": d.serial,
        "state": d.state,
        "manufacturer": d.manufacturer,
        "idevid_issuer": d.idevid_issuer,
        "idevid_fingerprint": d.idevid_fingerprint,
        "first_seen": d.first_seen.isoformat(),
        "updated_at": d.updated_at.isoformat(),
    }


def _ts(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def certificate_json(c: CertificateRecord) -> dict[str, Any]:
    return {
        "serial": c.cert_serial,
        "state": c.state,
        "not_before": _ts(c.not_before),
        "not_after": _ts(c.not_after),
        "issued_at": _ts(c.issued_at),
        "revoked_at": _ts(c.revoked_at),
        "revocation_reason": c.revocation_reason,
    }


async def authenticate_admin(request: web.Request, svc: RegistrarService, cfg: RegistrarConfig, now: datetime) -> str:
    """The admin's subject, or a refusal naming the failed check."""

    async def not_a_device(leaf: x509.Certificate) -> None:
        if await svc.store.get_certificate(leaf.serial_number) is not None:
            raise Forbidden("a device LDevID is not an admin credential", check="admin.device-cert")

    return await admin_subject(
        peer_identity(request).leaf, anchors=[svc.keys.ca_cert], subjects=cfg.admin_subjects,
        fingerprints=cfg.admin_fingerprints, now=now, role_check=not_a_device,
    )


def _int_param(request: web.Request, name: str, default: int, *, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise MalformedInput(f"{name} must be an integer", check="admin.query") from None
    if not low <= value <= high:
        raise MalformedInput(f"{name} must be {low}..{high}", check="admin.query")
    return value


async def _json_body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    media, _ = parse_media_type(request.headers.get("Content-Type"))
    if media != MT_JSON:
        raise UnsupportedMediaType("admin requests carry application/json", check="admin.content-type")
    try:
        body = json.loads(raw)
    except ValueError:
        raise MalformedInput("body is not JSON", check="admin.body") from None
    if not isinstance(body, dict):
        raise MalformedInput("body must be a JSON object", check="admin.body")
    return body


def _reason(body: dict[str, Any]) -> str | None:
    reason = body.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise MalformedInput("reason must be a string", check="admin.body")
    return reason


def add_admin_routes(
    app: web.Application,
    *,
    service_key: web.AppKey[RegistrarService],
    config_key: web.AppKey[RegistrarConfig],
) -> None:
    async def begin(request: web.Request) -> tuple[RegistrarService, str, datetime]:
        svc, now = request.app[service_key], datetime.now(UTC)
        return svc, await authenticate_admin(request, svc, request.app[config_key], now), now

    async def list_devices(request: web.Request) -> web.Response:
        svc, admin, now = await begin(request)
        limit = _int_param(request, "limit", 100, low=1, high=MAX_PAGE)
        state, manufacturer = request.query.get("state"), request.query.get("manufacturer")
        after = request.query.get("after")
        rows = await svc.store.list_devices(state=state, manufacturer=manufacturer, after_serial=after, limit=limit)
        await record_event(
            svc.store, now=now, kind="admin.devices-listed", serial=None, outcome="allow", check="admin.list",
            admin=admin, state=state, manufacturer=manufacturer, after=after, returned=len(rows),
        )
        return web.json_response({
            "devices": [device_json(d) for d in rows],
            # Keyset paging: pass this back as ?after= (None: last page).
            "next_after": rows[-1].serial if len(rows) == limit else None,
        })

    async def show_device(request: web.Request) -> web.Response:
        svc, admin, now = await begin(request)
        serial = request.match_info["serial"]
        device = await svc.store.get_device(serial)
        if device is None:
            raise NotFound(f"unknown device {serial!r}", check="admin.unknown-device", serial=serial)
        out = device_json(device)
        out["transitions"] = [
            {"from": t.from_state, "to": t.to_state, "at": t.at.isoformat(), "reason": t.reason}
            for t in await svc.store.device_transitions(serial)
        ]
        out["certificates"] = [certificate_json(c) for c in await svc.store.list_certificates(serial)]
        out["network_sessions"] = [session_json(s) for s in await svc.store.network_sessions(device_serial=serial)]
        await record_event(
            svc.store, now=now, kind="admin.device-shown", serial=serial, outcome="allow", check="admin.show", admin=admin,
        )
        return web.json_response(out)

    async def _lifecycle(request: web.Request, op: LifecycleAction) -> web.Response:
        svc, admin, now = await begin(request)
        serial = request.match_info["serial"]
        reason = _reason(await _json_body(request))
        revoked = await op(svc.store, request.app[REVOCATION], serial, reason=reason, now=now, admin=admin)
        start_enforcement(request.app, serial, now)  # RFC 5176: cut its sessions off
        device = await svc.store.get_device(serial)
        assert device is not None
        return web.json_response({"device": device_json(device), "revoked": [certificate_json(c) for c in revoked]})

    async def revoke(request: web.Request) -> web.Response:
        return await _lifecycle(request, actions.revoke)

    async def decommission(request: web.Request) -> web.Response:
        return await _lifecycle(request, actions.decommission)

    async def decide(request: web.Request) -> web.Response:
        # RFC 8995 5.6: release or refuse a device parked in the approval queue.
        svc, admin, now = await begin(request)
        serial = request.match_info["serial"]
        reason = _reason(await _json_body(request))
        decision: ApprovalDecision = "approved" if request.match_info["verb"] == "approve" else "rejected"
        rec = await actions.decide_approval(
            svc.store, serial, decision=decision, now=now, by=admin, reason=reason, require_device=True
        )
        return web.json_response({"serial": rec.serial, "decision": rec.decision, "decided_by": rec.decided_by})

    async def audit_verify(request: web.Request) -> web.Response:
        svc, admin, now = await begin(request)
        # The whole chain, and every evidenced table against the state the log implies.
        audit = await audit_report(svc.store)
        # RFC 5280 3.3: the store must still back every entry of its last CRL.
        crl = describe_disagreements(await crl_consistency(svc.store, ca_cert=svc.keys.ca_cert, now=now))
        ok = audit.ok and not crl
        await record_event(
            svc.store, now=now, kind="admin.audit-verified", serial=None, outcome="allow", check="admin.audit",
            admin=admin, ok=ok, count=audit.chain.count, crl_disagreements=len(crl),
            state_disagreements=len(audit.state.disagreements),
        )
        # Keeps the next verify (and start-up) replay short; derived from the log only.
        await checkpoint_after(svc.store, audit, audit.state, now=now)
        return web.json_response({**audit.as_json(), "ok": ok, "crl_disagreements": crl})

    r = app.router
    r.add_get("/admin/v1/devices", list_devices)
    r.add_get("/admin/v1/devices/{serial}", show_device)
    r.add_post("/admin/v1/devices/{serial}/revoke", revoke)
    r.add_post("/admin/v1/devices/{serial}/decommission", decommission)
    r.add_post("/admin/v1/devices/{serial}/{verb:approve|reject}", decide)
    r.add_get("/admin/v1/audit/verify", audit_verify)


def add_revocation_routes(app: web.Application, publisher: web.AppKey[RevocationPublisher], owner: web.Application) -> None:
    """GET /crl, POST /ocsp, GET /ocsp/{b64}; ``owner`` is the app holding the publisher."""

    async def crl(request: web.Request) -> web.Response:
        der = await owner[publisher].crl_der(now=datetime.now(UTC))
        return web.Response(body=der, content_type=MT_PKIX_CRL)

    async def _ocsp(der: bytes) -> web.Response:
        result = await owner[publisher].ocsp(der, now=datetime.now(UTC))
        # RFC 6960 A.1: the answer is always an OCSPResponse, errors included.
        return web.Response(body=result.der, content_type=MT_OCSP_RESPONSE)

    async def ocsp_post(request: web.Request) -> web.Response:
        media, _ = parse_media_type(request.headers.get("Content-Type"))
        if media != MT_OCSP_REQUEST:
            raise UnsupportedMediaType(f"Content-Type must be {MT_OCSP_REQUEST}", check="ocsp.content-type")
        body = await request.content.read(MAX_REQUEST + 1)
        if len(body) > MAX_REQUEST:
            raise PayloadTooLarge("OCSP request too large", check="ocsp.too-large")
        return await _ocsp(body)

    async def ocsp_get(request: web.Request) -> web.Response:
        # RFC 6960 A.1: {url}/{url-encoding of base64 encoding of the DER request}.
        text = unquote(request.match_info["req"])
        if len(text) > 2 * MAX_REQUEST:
            raise PayloadTooLarge("OCSP request too large", check="ocsp.too-large")
        try:
            der = base64.b64decode(text.replace("-", "+").replace("_", "/") + "=" * (-len(text) % 4), validate=True)
        except (binascii.Error, ValueError):
            der = b""
        return await _ocsp(der)

    r = app.router
    r.add_get("/crl", crl)
    r.add_post("/ocsp", ocsp_post)
    r.add_get("/ocsp/{req:.+}", ocsp_get)


def create_revocation_app(main: web.Application) -> web.Application:
    """The plain-HTTP app for ``http_port``: CRL and OCSP only, nothing else."""
    app = web.Application(middlewares=[request_middleware], client_max_size=MAX_REQUEST * 2)
    if METRICS in main:
        app[METRICS] = main[METRICS]  # /crl and /ocsp counted with the registrar's requests
    add_revocation_routes(app, REVOCATION, main)
    return app
