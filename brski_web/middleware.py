"""The one place where errors become HTTP responses.

Handlers and services raise :class:`brski.errors.BrskiError`; this middleware
turns each into an RFC 9457 problem body (or, for a client that did not ask
for JSON, the plain UTF-8 text RFC 8995 section 5.6 asks the MASA for),
logs one line per request, and hands every refusal to the app's recorder so
that it is stored as evidence as well as logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from brski.errors import (
    BrskiError,
    LocalError,
    MalformedInput,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    PeerError,
    RequestTimeout,
)
from brski.oids import MT_PROBLEM_JSON
from brski_web.identity import peer_identity
from brski_web.logs import kv
from brski_web.proxies import request_via

__all__ = ["BODY_READ_TIMEOUT", "REFUSAL_RECORDER", "RefusalRecorder", "error_middleware", "problem_response"]

log = logging.getLogger("brski.http")

RefusalRecorder = Callable[[web.Request, BrskiError], Awaitable[None]]
REFUSAL_RECORDER: web.AppKey[RefusalRecorder] = web.AppKey("refusal_recorder", RefusalRecorder)  # type: ignore[arg-type]
# Seconds a request body may take to arrive, set by each app from its config.
# aiohttp bounds the size (client_max_size) but not the time: a chunked body
# that never ends would hold a handler, a connection and a buffer forever.
BODY_READ_TIMEOUT: web.AppKey[float] = web.AppKey("body_read_timeout", float)


def _wants_json(request: web.Request) -> bool:
    accept = request.headers.get("Accept", "*/*").lower()
    return "json" in accept or "*/*" in accept or accept.strip() == ""


def problem_response(request: web.Request, err: BrskiError) -> web.Response:
    headers = {}
    if err.http_status == 202:
        headers["Retry-After"] = str(err.extra.get("retry_after", 60))
    elif err.http_status == 429 and "retry_after" in err.extra:  # RFC 6585 section 4
        headers["Retry-After"] = str(err.extra["retry_after"])
    if _wants_json(request):
        return web.Response(
            status=err.http_status,
            body=json.dumps(err.problem()).encode(),
            content_type=MT_PROBLEM_JSON,
            headers=headers,
        )
    # RFC 8995 section 5.6: a plaintext human-readable (UTF-8) error message.
    text = f"{err.title}: {err.detail} (check: {err.check})\n"
    return web.Response(status=err.http_status, text=text, headers=headers)


def _translate_http_exception(exc: web.HTTPException) -> BrskiError | None:
    if exc.status == 404:
        return NotFound("no such resource", check="http.not-found")
    if exc.status == 405:
        return MethodNotAllowed("method not allowed", check="http.method-not-allowed")
    if exc.status == 413:
        return PayloadTooLarge("request body too large", check="http.body-too-large")
    if 400 <= exc.status < 500:
        return MalformedInput(exc.text or exc.reason, check="http.bad-request")
    return None


@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    started = time.perf_counter()
    err: BrskiError | None = None
    try:
        timeout = request.app.get(BODY_READ_TIMEOUT)
        if timeout is not None and request.can_read_body:
            # Read (and cache: request.read() returns it again) the body here,
            # bounded in time, before any handler runs.
            try:
                async with asyncio.timeout(timeout):
                    await request.read()
            except TimeoutError:
                raise RequestTimeout(
                    f"request body not received within {timeout:g} s", check="http.body-timeout"
                ) from None
        response = await handler(request)
    except BrskiError as exc:
        err = exc
    except web.HTTPException as exc:
        translated = _translate_http_exception(exc)
        if translated is None:
            raise
        err = translated
    except Exception:  # a bug of ours: log it with a traceback, answer 500
        log.exception(kv("unhandled", method=request.method, path=request.path))
        err = LocalError("internal error", check="internal")
    if err is not None:
        if isinstance(err, PeerError) or err.http_status == 202:
            recorder = request.app.get(REFUSAL_RECORDER)
            if recorder is not None:
                try:
                    await recorder(request, err)
                except Exception:
                    log.exception(kv("refusal-record-failed", check=err.check))
        response = problem_response(request, err)
    peer = peer_identity(request)
    log.info(
        kv(
            "request",
            method=request.method,
            path=request.path,
            status=response.status,
            client=peer.leaf.subject.rfc4514_string() if peer.leaf is not None else None,
            remote=request.remote,
            **({"via": via} if (via := request_via(request)) else {}),
            check=err.check if err is not None else None,
            detail=err.detail if err is not None else None,
            ms=round((time.perf_counter() - started) * 1000, 1),
        )
    )
    return response
