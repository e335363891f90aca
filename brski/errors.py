"""One error tree for the whole project.

Every failure the core can detect is a :class:`BrskiError` carrying the HTTP
status a server should answer with and the name of the *check* that failed, so
that exactly one middleware per app turns errors into RFC 9457 problem bodies
and an operator reading a log line knows which rule refused the request.

The tree is split by blame, as an ACME client splits server errors from its
own: :class:`PeerError` means the other side sent something we refuse (4xx);
:class:`LocalError` means we could not do our part (5xx).
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "BadGateway",
    "BrskiError",
    "ChainInvalid",
    "ConfigError",
    "Conflict",
    "Forbidden",
    "LocalError",
    "MalformedInput",
    "MethodNotAllowed",
    "NotAcceptable",
    "NotFound",
    "PayloadTooLarge",
    "PeerError",
    "Pending",
    "PolicyRefused",
    "ProximityRefused",
    "RateLimited",
    "RequestTimeout",
    "SignatureInvalid",
    "StorageError",
    "Unauthenticated",
    "UnsupportedMediaType",
    "VoucherInvalid",
]


class BrskiError(Exception):
    """Base of every error the project raises on purpose."""

    http_status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal error"
    # The server ends the connection after answering (RFC 9112 9.6
    # "Connection: close"), where a rule demands it.
    close_connection: ClassVar[bool] = False

    def __init__(self, detail: str, *, check: str | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        # Dotted name of the rule that failed, e.g. "voucher-request.serial-number".
        self.check = check or type(self).__name__
        self.extra = extra

    def problem(self) -> dict[str, Any]:
        """An RFC 9457 problem document (without the type URI registry)."""
        body: dict[str, Any] = {
            "type": f"urn:brski:problem:{self.check}",
            "title": self.title,
            "status": self.http_status,
            "detail": self.detail,
            "check": self.check,
        }
        body.update(self.extra)
        return body

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.detail!r}, check={self.check!r})"


# --- the peer's fault -------------------------------------------------------


class PeerError(BrskiError):
    """The other party sent something we refuse."""

    http_status = 400
    title = "Bad request"


class MalformedInput(PeerError):
    """Bytes that do not parse as what they claim to be."""

    title = "Malformed input"


class PayloadTooLarge(PeerError):
    http_status = 413
    title = "Payload too large"


class UnsupportedMediaType(PeerError):
    http_status = 415
    title = "Unsupported media type"


class NotAcceptable(PeerError):
    http_status = 406
    title = "Not acceptable"


class SignatureInvalid(PeerError):
    """A CMS, COSE or JWS signature (or a CSR self-signature) does not verify."""

    title = "Signature invalid"


class ChainInvalid(PeerError):
    """A certificate does not chain to the trust anchors at the given time."""

    http_status = 403
    title = "Certificate not trusted"


class VoucherInvalid(PeerError):
    """A voucher or voucher-request that breaks its YANG model or a protocol rule."""

    title = "Voucher or voucher-request invalid"


class Unauthenticated(PeerError):
    """No client certificate, or not one we can identify."""

    http_status = 401
    title = "Client not authenticated"


class ProximityRefused(Unauthenticated):
    """The pledge did not see this registrar: assertion not proximity, or its
    proximity-registrar-cert is not our certificate.

    RFC 8995 section 5.2: "there is an on-path attacker (MITM), and the
    connection MUST be closed after the returning of an HTTP 401 error code".
    """

    title = "Voucher-request not made for this registrar"
    close_connection = True


class Forbidden(PeerError):
    """Authenticated, but this client may not do this."""

    http_status = 403
    title = "Forbidden"


class PolicyRefused(Forbidden):
    """A configured policy rule said no."""

    title = "Refused by policy"


class MethodNotAllowed(PeerError):
    http_status = 405
    title = "Method not allowed"


class NotFound(PeerError):
    http_status = 404
    title = "Not found"


class Conflict(PeerError):
    http_status = 409
    title = "Conflict"


class RateLimited(PeerError):
    http_status = 429
    title = "Too many requests"


class RequestTimeout(PeerError):
    """The request body did not arrive in time (a slow or never-ending upload)."""

    http_status = 408
    title = "Request timeout"


class Pending(PeerError):
    """Not refused, not yet decided: come back after ``retry_after`` seconds.

    RFC 8995 section 5.6 lets a registrar answer 202 with Retry-After while an
    operator decides; the pledge must not wait more than 60 seconds at a time.
    """

    http_status = 202
    title = "Accepted, pending a decision"

    def __init__(self, detail: str, *, retry_after: int, check: str | None = None) -> None:
        super().__init__(detail, check=check, retry_after=retry_after)
        self.retry_after = retry_after


# --- our fault ----------------------------------------------------------------


class LocalError(BrskiError):
    """We could not do our part; the peer did nothing wrong."""

    http_status = 500
    title = "Internal error"


class ConfigError(LocalError):
    title = "Configuration error"


class StorageError(LocalError):
    """A durable write failed; nothing that depends on it may be returned."""

    http_status = 503
    title = "Storage unavailable"


class BadGateway(LocalError):
    """An upstream (the MASA, seen from the registrar) failed or refused."""

    http_status = 502
    title = "Upstream failure"
