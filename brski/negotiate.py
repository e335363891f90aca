"""Voucher media type negotiation (RFC 8995 sections 5.2, 5.3, 5.5).

The request body's Content-Type says which format the voucher-request is in;
the Accept header says which voucher formats the client can take. An unknown
Content-Type is 415 and an Accept the server cannot satisfy is 406 (RFC 8995
section 5.6). Without Accept, the voucher comes back in the request's format.

Alternative names of a supported format (``brski.oids.VOUCHER_MEDIA_ALIASES``,
e.g. constrained-voucher-31's ``application/voucher+cose``) are understood in
both headers and resolved to the name this project signs and labels with.
"""

from __future__ import annotations

from collections.abc import Sequence

from brski.errors import NotAcceptable, UnsupportedMediaType
from brski.oids import VOUCHER_MEDIA_ALIASES

__all__ = ["negotiate_voucher_media"]


def _media(value: str) -> tuple[str, float]:
    parts = [p.strip() for p in value.split(";")]
    q = 1.0
    for p in parts[1:]:
        if p.lower().startswith("q="):
            try:
                q = float(p[2:])
            except ValueError:
                q = 0.0
    name = parts[0].lower()
    return VOUCHER_MEDIA_ALIASES.get(name, name), q


def negotiate_voucher_media(
    content_type: str | None, accept: str | None, supported: Sequence[str]
) -> tuple[str, str]:
    """Return (request media type, response media type)."""
    req = _media(content_type or "")[0]
    if req not in supported:
        raise UnsupportedMediaType(
            f"Content-Type {content_type or '(none)'!r} is not a supported voucher-request type; "
            f"supported: {', '.join(supported)}",
            check="http.content-type",
        )
    if accept is None or not accept.strip():
        return req, req
    ranked = sorted((_media(a) for a in accept.split(",") if a.strip()), key=lambda m: -m[1])
    for media, q in ranked:
        if q <= 0:
            continue
        if media in ("*/*", "application/*"):
            return req, req
        if media in supported:
            return req, media
    raise NotAcceptable(
        f"none of the accepted types ({accept}) can be issued; available: {', '.join(supported)}",
        check="http.accept",
    )
