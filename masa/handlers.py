"""Thin HTTP handlers: parse the request, call the service, serialise."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from brski.oids import MT_JSON
from brski_web.identity import peer_identity
from masa.service import MasaService

__all__ = ["add_routes"]


def add_routes(app: web.Application, service_key: web.AppKey[MasaService]) -> None:
    async def request_voucher(request: web.Request) -> web.Response:
        body = await request.read()
        raw, media = await request.app[service_key].request_voucher(
            body=body,
            content_type=request.headers.get("Content-Type"),
            accept=request.headers.get("Accept"),
            now=datetime.now(UTC),
            peer=peer_identity(request),  # RFC 8995 5.5.4: nonceless needs the registrar's TLS identity
        )
        return web.Response(body=raw, content_type=media)

    async def request_audit_log(request: web.Request) -> web.Response:
        body = await request.read()
        log = await request.app[service_key].request_audit_log(
            body=body, content_type=request.headers.get("Content-Type"), now=datetime.now(UTC)
        )
        return web.Response(body=log.to_json(), content_type=MT_JSON)

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "role": "masa"})

    app.router.add_post("/.well-known/brski/requestvoucher", request_voucher)
    app.router.add_post("/.well-known/brski/requestauditlog", request_audit_log)
    app.router.add_get("/healthz", health)
