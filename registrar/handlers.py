"""Thin HTTP handlers: parse the request, call the service, serialise.

Routes are the BRSKI (RFC 8995 section 8.2 well-known URIs) and EST
(RFC 7030 section 3.2.2) operations.
"""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from brski import est
from brski.admission import Park
from brski.errors import Pending, UnsupportedMediaType
from brski.oids import MT_CSRATTRS, MT_JSON, MT_PKCS7_CERTS_ONLY, MT_PKCS7_MIME, MT_PKCS10
from brski_web.identity import peer_identity
from brski_web.middleware import problem_response
from registrar.service import RegistrarService

__all__ = ["add_routes"]


def _require_type(request: web.Request, expected: str, *, check: str) -> None:
    media, _ = est.parse_media_type(request.headers.get("Content-Type"))
    if media != expected:
        raise UnsupportedMediaType(
            f"Content-Type must be {expected}, got {request.headers.get('Content-Type') or '(none)'}",
            check=check,
        )


def _est_response(body: bytes, content_type: str) -> web.Response:
    # RFC 7030 4.1.3/4.2.3: base64 body; Content-Transfer-Encoding is sent for
    # older clients (RFC 8951 says receivers must not depend on it).
    return web.Response(
        body=body,
        headers={"Content-Type": content_type, "Content-Transfer-Encoding": "base64"},
    )


def add_routes(app: web.Application, service_key: web.AppKey[RegistrarService]) -> None:
    def svc(request: web.Request) -> RegistrarService:
        return request.app[service_key]

    async def request_voucher(request: web.Request) -> web.Response:
        body = await request.read()
        answer = await svc(request).vouchers.request_voucher(
            body=body,
            content_type=request.headers.get("Content-Type"),
            accept=request.headers.get("Accept"),
            peer=peer_identity(request),
            now=datetime.now(UTC),
        )
        if isinstance(answer, Park):
            # RFC 8995 5.6: 202 + Retry-After while an operator decides; the
            # plan's event is already stored with its state change, so this
            # is answered here rather than recorded again as a refusal.
            return problem_response(request, Pending(answer.detail, retry_after=answer.retry_after_s, check=answer.rule))
        raw, media = answer
        return web.Response(body=raw, content_type=media)

    async def voucher_status(request: web.Request) -> web.Response:
        _require_type(request, MT_JSON, check="voucher-status.content-type")
        await svc(request).vouchers.voucher_status(body=await request.read(), peer=peer_identity(request), now=datetime.now(UTC))
        return web.Response(status=200)

    async def enroll_status(request: web.Request) -> web.Response:
        _require_type(request, MT_JSON, check="enroll-status.content-type")
        await svc(request).est.enroll_status(body=await request.read(), peer=peer_identity(request), now=datetime.now(UTC))
        return web.Response(status=200)

    async def cacerts(request: web.Request) -> web.Response:
        return _est_response(svc(request).est.cacerts(), MT_PKCS7_MIME)

    async def csrattrs(request: web.Request) -> web.Response:
        body = await svc(request).est.csrattrs(peer=peer_identity(request), now=datetime.now(UTC))
        return _est_response(body, MT_CSRATTRS)

    async def simpleenroll(request: web.Request) -> web.Response:
        _require_type(request, MT_PKCS10, check="est.content-type")
        out = await svc(request).est.simpleenroll(
            body=await request.read(),
            cte=request.headers.get("Content-Transfer-Encoding"),
            peer=peer_identity(request),
            now=datetime.now(UTC),
        )
        return _est_response(out, MT_PKCS7_CERTS_ONLY)

    async def simplereenroll(request: web.Request) -> web.Response:
        _require_type(request, MT_PKCS10, check="est.content-type")
        out = await svc(request).est.simplereenroll(
            body=await request.read(),
            cte=request.headers.get("Content-Transfer-Encoding"),
            peer=peer_identity(request),
            now=datetime.now(UTC),
        )
        return _est_response(out, MT_PKCS7_CERTS_ONLY)

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "role": "registrar"})

    r = app.router
    r.add_post("/.well-known/brski/requestvoucher", request_voucher)
    r.add_post("/.well-known/brski/voucher_status", voucher_status)
    r.add_post("/.well-known/brski/enrollstatus", enroll_status)
    r.add_get("/.well-known/est/cacerts", cacerts)
    r.add_get("/.well-known/est/csrattrs", csrattrs)
    r.add_post("/.well-known/est/simpleenroll", simpleenroll)
    r.add_post("/.well-known/est/simplereenroll", simplereenroll)
    r.add_get("/healthz", health)
