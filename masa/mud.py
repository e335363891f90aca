"""The manufacturer's MUD file server (RFC 8520), on the MASA's host.

``GET /mud/NAME.json`` answers the MUD file (application/mud+json, RFC 8520
15.2) and ``GET /mud/NAME.p7s`` its detached CMS signature
(application/pkcs7-signature, RFC 8520 13.2), from the configured
``mud_dir``. Names are one path segment of [A-Za-z0-9._-]: nothing outside
the directory can be named. Unauthenticated, like any MUD server: the
signature, not the channel, is what the registrar trusts.
"""

from __future__ import annotations

import re
from pathlib import Path

from aiohttp import web

from brski.errors import NotFound

__all__ = ["add_mud_routes"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\.(json|p7s)$")
_TYPES = {"json": "application/mud+json", "p7s": "application/pkcs7-signature"}


def add_mud_routes(app: web.Application, directory: Path) -> None:
    async def serve(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        match = _NAME.match(name)
        path = directory / name
        if match is None or not path.is_file():
            raise NotFound(f"no MUD file {name!r}", check="mud.not-found")
        return web.Response(body=path.read_bytes(), content_type=_TYPES[match.group(1)])

    app.router.add_get("/mud/{name}", serve)
