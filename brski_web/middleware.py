"""The one place where errors become HTTP responses.

Handlers and services raise :class:`brski.errors.BrskiError`; this middleware
(:func:`request_middleware`, every app's only one) turns each into one answer,
logs one line per request, hands every refusal to the app's recorder so that
it is stored as evidence as well as logged, and counts every answer in the
app's metrics.

One negotiation rule for every error body: an RFC 9457 problem document
(``application/problem+json``) only to a client whose Accept names
``application/problem+json`` explicitly; to every other client the same
problem as UTF-8 text, ``"<title>: <detail> (check: <name>)"``.  Paths an app
lists under :data:`PLAINTEXT_ERROR_PATHS` always get the text form: RFC 8995
section 5.6 says the MASA's voucher error "MUST be a plaintext
human-readable (UTF-8) error message".

Every 401 carries ``WWW-Authenticate`` (RFC 9110 15.5.2 MUST, RFC 7030
3.2.3): the app's :data:`AUTH_CHALLENGE` where it configures HTTP
authentication, otherwise :data:`DEFAULT_CHALLENGE`, which names the only
authentication our servers accept, a TLS client certificate (RFC 7030
3.3.2); no client can satisfy it with an Authorization header, so a client
stops instead of retrying with a password.  An error whose rule demands it
(``close_connection``) ends the connection after the answer.
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
from brski_web.metrics import METRICS
from brski_web.proxies import request_via

__all__ = [
    "AUTH_CHALLENGE",
    "BODY_READ_TIMEOUT",
    "DEFAULT_CHALLENGE",
    "PLAINTEXT_ERROR_PATHS",
    "REFUSAL_RECORDER",
    "RefusalRecorder",
    "problem_response",
    "request_middleware",
    "wants_problem_json",
]

log = logging.getLogger("brski.http")

RefusalRecorder = Callable[[web.Request, BrskiError], Awaitable[None]]
REFUSAL_RECORDER: web.AppKey[RefusalRecorder] = web.AppKey("refusal_recorder")
# Seconds a request body may take to arrive, set by each app from its config.
# aiohttp bounds the size (client_max_size) but not the time: a chunked body
# that never ends would hold a handler, a connection and a buffer forever.
BODY_READ_TIMEOUT: web.AppKey[float] = web.AppKey("body_read_timeout", float)
# The WWW-Authenticate challenge of the app's configured HTTP authentication.
AUTH_CHALLENGE: web.AppKey[str] = web.AppKey("auth_challenge", str)
# Paths whose errors are always plain text (RFC 8995 5.6 for the MASA).
PLAINTEXT_ERROR_PATHS: web.AppKey[frozenset[str]] = web.AppKey("plaintext_error_paths", frozenset)
# No HTTP authentication configured: the client certificate is the credential.
DEFAULT_CHALLENGE = 'TLS-Client-Certificate realm="brski"'


def wants_problem_json(accept: str | None) -> bool:
    """True when an Accept header names application/problem+json with q > 0."""
    for item in (accept or "").split(","):
        media, *params = (p.strip() for p in item.split(";"))
        if media.lower() != MT_PROBLEM_JSON:
            continue
        q = next((p[2:] for p in params if p.lower().startswith("q=")), "1")
        try:
            if float(q) > 0:
                return True
        except ValueError:
            continue
    return False


def problem_response(request: web.Request, err: BrskiError) -> web.Response:
    headers = {}
    if err.http_status == 202:
        headers["Retry-After"] = str(err.extra.get("retry_after", 60))
    elif err.http_status == 429 and "retry_after" in err.extra:  # RFC 6585 section 4
        headers["Retry-After"] = str(err.extra["retry_after"])
    elif err.http_status == 401:
        headers["WWW-Authenticate"] = request.app.get(AUTH_CHALLENGE, DEFAULT_CHALLENGE)
    plaintext_only = request.path in request.app.get(PLAINTEXT_ERROR_PATHS, frozenset())
    if not plaintext_only and wants_problem_json(request.headers.get("Accept")):
        response = web.Response(
            status=err.http_status,
            body=json.dumps(err.problem()).encode(),
            content_type=MT_PROBLEM_JSON,
            headers=headers,
        )
    else:
        # RFC 8995 section 5.6: a plaintext human-readable (UTF-8) error message.
        text = f"{err.title}: {err.detail} (check: {err.check})\n"
        response = web.Response(status=err.http_status, text=text, headers=headers)
    if err.close_connection:
        response.force_close()  # aiohttp sends "Connection: close" and closes after the body
    return response


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
async def request_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every request of an app, once: the body read bounded in time, the
    handler, its error turned into one answer and recorded, one log line, and
    the app's metrics (:data:`brski_web.metrics.METRICS`) counting the status
    the client got.  One middleware, not two (metrics outside errors): aiohttp
    wraps each middleware in a partial and a frame of its own per request."""
    started = time.perf_counter()
    app = request.app
    status = 500  # what the metrics count when an exception escapes (aiohttp then answers 500)
    try:
        err: BrskiError | None = None
        try:
            timeout = app.get(BODY_READ_TIMEOUT)
            if timeout is not None and request.can_read_body:
                # Read (and cache: request.read() returns it again) the body here,
                # bounded in time, before any handler runs.  A body that has
                # arrived in full (the parser saw its end) cannot keep the read
                # waiting, so it needs no timer.
                if request.content.is_eof():
                    await request.read()
                else:
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
            status = exc.status
            translated = _translate_http_exception(exc)
            if translated is None:
                raise
            err = translated
        except Exception:  # a bug of ours: log it with a traceback, answer 500
            log.exception(kv("unhandled", method=request.method, path=request.path))
            err = LocalError("internal error", check="internal")
        if err is not None:
            if isinstance(err, PeerError) or err.http_status == 202:
                recorder = app.get(REFUSAL_RECORDER)
                if recorder is not None:
                    try:
                        await recorder(request, err)
                    except Exception:
                        log.exception(kv("refusal-record-failed", check=err.check))
            response = problem_response(request, err)
        status = response.status
        if log.isEnabledFor(logging.INFO):
            via = request_via(request)
            log.info(
                kv(
                    "request",
                    method=request.method,
                    path=request.path,
                    status=status,
                    client=peer_identity(request).subject_text,
                    remote=request.remote,
                    **({"via": via} if via else {}),
                    check=err.check if err is not None else None,
                    detail=err.detail if err is not None else None,
                    ms=round((time.perf_counter() - started) * 1000, 1),
                )
            )
        return response
    finally:
        metrics = app.get(METRICS)
        if metrics is not None:
            metrics.observe(request, status, time.perf_counter() - started)
