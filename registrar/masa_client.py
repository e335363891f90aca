"""The registrar's client for MASA services (RFC 8995 sections 5.5, 5.8).

Split like an ACME client: :class:`MasaTransport` owns the HTTP session
(one pooled, keep-alive connection set per MASA, so a busy registrar pays a
TLS handshake per MASA rather than per pledge) and turns HTTP failures into
project errors; :class:`MasaClient` speaks the protocol on top of it.

A MASA refusal keeps its meaning on the way back to the pledge: a 404 from
the MASA is a 404 from the registrar, with the MASA's reason quoted; a MASA
that is down or answers 5xx is a 502 of ours.
"""

from __future__ import annotations

import json
import logging
import re
import ssl
from dataclasses import dataclass

import aiohttp

from brski.auditlog import AuditLog
from brski.errors import (
    BadGateway,
    BrskiError,
    Forbidden,
    MalformedInput,
    NotAcceptable,
    NotFound,
    RateLimited,
    UnsupportedMediaType,
)
from brski_web.logs import kv

__all__ = ["MasaClient", "MasaResponse", "MasaTransport"]

log = logging.getLogger("brski.registrar.masa")

# A voucher is a few KiB; refuse to buffer more than this from any MASA.
_MAX_RESPONSE = 256 * 1024
# The check name at the end of our plain-text error form (brski_web.middleware).
_TEXT_CHECK = re.compile(r"\s*\(check: ([A-Za-z0-9_.\-]+)\)\s*$")

_STATUS_ERRORS: dict[int, type[BrskiError]] = {
    403: Forbidden,
    404: NotFound,
    406: NotAcceptable,
    415: UnsupportedMediaType,
    429: RateLimited,
}


@dataclass(frozen=True, kw_only=True)
class MasaResponse:
    status: int
    content_type: str
    body: bytes


class MasaTransport:
    def __init__(self, *, ssl_context: ssl.SSLContext, timeout_s: float, max_connections: int = 64) -> None:
        self._ssl = ssl_context
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._max = max_connections
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                ssl=self._ssl, limit_per_host=self._max, keepalive_timeout=60, enable_cleanup_closed=True
            )
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def post(self, url: str, *, body: bytes, content_type: str, accept: str) -> MasaResponse:
        try:
            async with self._get_session().post(
                url,
                data=body,
                headers={"Content-Type": content_type, "Accept": accept},
                allow_redirects=False,
            ) as resp:
                data = await resp.content.read(_MAX_RESPONSE + 1)
                if len(data) > _MAX_RESPONSE:
                    raise BadGateway(f"MASA {url} sent more than {_MAX_RESPONSE} bytes", check="masa.response-too-large")
                result = MasaResponse(status=resp.status, content_type=resp.content_type, body=data)
        except BrskiError:
            raise
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.warning(kv("masa-unreachable", url=url, error=repr(exc)))
            raise BadGateway(f"MASA {url} unreachable: {exc!r}", check="masa.unreachable") from exc
        if result.status >= 300:
            self._raise_for(url, result)
        return result

    @staticmethod
    def _raise_for(url: str, resp: MasaResponse) -> None:
        reason = resp.body[:500].decode("utf-8", "replace").strip()
        check = "masa.refused"
        if resp.content_type.endswith("json"):
            try:
                problem = json.loads(resp.body)
                reason = str(problem.get("detail", reason))
                check = f"masa.{problem.get('check', 'refused')}"
            except (ValueError, AttributeError):
                pass
        elif m := _TEXT_CHECK.search(reason):
            # RFC 8995 5.6 plain text, ours ending in "(check: NAME)".
            reason, check = reason[: m.start()].rstrip(), f"masa.{m.group(1)}"
        log.info(kv("masa-refused", url=url, status=resp.status, check=check, reason=reason))
        cls = _STATUS_ERRORS.get(resp.status)
        if cls is not None:
            raise cls(f"MASA refused: {reason}", check=check)
        raise BadGateway(f"MASA answered {resp.status}: {reason}", check=check)


class MasaClient:
    """BRSKI's two registrar-to-MASA calls."""

    def __init__(self, transport: MasaTransport) -> None:
        self.transport = transport

    @staticmethod
    def _url(base: str, path: str) -> str:
        return base.rstrip("/") + path

    async def request_voucher(self, masa_url: str, *, body: bytes, media_type: str, accept: str) -> MasaResponse:
        """RFC 8995 section 5.5: POST the registrar voucher-request."""
        resp = await self.transport.post(
            self._url(masa_url, "/.well-known/brski/requestvoucher"),
            body=body,
            content_type=media_type,
            accept=accept,
        )
        if resp.status != 200:
            raise BadGateway(f"MASA answered {resp.status} without a voucher", check="masa.no-voucher")
        return resp

    async def request_audit_log(self, masa_url: str, *, body: bytes, media_type: str) -> AuditLog:
        """RFC 8995 section 5.8: POST the same registrar voucher-request again."""
        resp = await self.transport.post(
            self._url(masa_url, "/.well-known/brski/requestauditlog"),
            body=body,
            content_type=media_type,
            accept="application/json",
        )
        try:
            return AuditLog.from_json(resp.body)
        except MalformedInput as exc:
            raise BadGateway(f"MASA {exc.detail}", check="masa.auditlog-malformed") from exc
