"""A TLS server transport for asyncio on pyOpenSSL memory BIOs.

Why not the stdlib ``ssl`` module: a BRSKI MASA must accept TLS client
certificates from *any* registrar and decide at the application layer
(RFC 8995 section 5.5.4), and a registrar must answer an IDevID from an
untrusted manufacturer with an HTTP 403 problem body instead of a TLS alert.
``ssl`` has no verify callback, so an unknown client CA is either refused in
the handshake or its certificate is never requested; it has no TLS exporter
(RFC 9266 ``tls-exporter`` channel binding); and on Python 3.11 it exposes only
the peer's leaf, never the chain the client sent.

How it works: :class:`TlsServerProtocol` is a
:class:`brski_tls.protocol.TlsProtocol` (as is the pledge's client), the
memory-BIO protocol both sides share; this module adds what only a server
does: accept, and log and report each refused handshake.  The context it
serves with (policy, whom to ask for client certificates) is
:mod:`brski_web.tls_context`.

Wiring under aiohttp (``web.Server`` is itself a zero-argument protocol
factory)::

    runner = web.AppRunner(app)
    await runner.setup()
    server = await start_tls_server(runner.server, host="::", port=8443, cfg=cfg)
    ...
    server.close()            # stop accepting
    await runner.cleanup()    # aiohttp closes its open connections gracefully
    await server.wait_closed()

Handlers read the TLS facts with ``request.transport.get_extra_info(key)``;
see :data:`brski_tls.protocol.TLS_EXTRA_KEYS`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from OpenSSL import SSL

from brski.errors import ConfigError
from brski_tls.protocol import ProtocolFactory, TlsProtocol
from brski_web.logs import kv
from brski_web.tls_context import ClientAuth, TlsServerConfig, build_context

__all__ = [
    "ClientAuth",
    "RefusalHook",
    "TlsServerConfig",
    "TlsServerProtocol",
    "bound_port",
    "build_context",
    "start_tls_server",
]

log = logging.getLogger(__name__)

# (remote host or None, event name, error text): a handshake refused or timed out.
RefusalHook = Callable[["str | None", str, str], None]


def _host_port(peername: Any) -> str | None:
    if isinstance(peername, tuple) and len(peername) >= 2:
        return f"{peername[0]}:{peername[1]}"
    return None if peername is None else str(peername)


# --- server -------------------------------------------------------------------------


class TlsServerProtocol(TlsProtocol):
    """One accepted TCP connection; refused handshakes are logged and reported.

    Refusals are logged at info level, one line each, and handed to
    ``on_refused`` (scanners and misconfigured clients are routine, but a
    refused handshake has no HTTP request, so this is its only evidence).
    """

    def __init__(
        self,
        context: SSL.Context,
        inner_factory: ProtocolFactory,
        *,
        handshake_timeout: float = 10.0,
        on_refused: RefusalHook | None = None,
        live: set[TlsProtocol] | None = None,
    ) -> None:
        super().__init__(context, inner_factory, handshake_timeout=handshake_timeout, live=live)
        self._on_refused = on_refused

    def _new_connection(self) -> SSL.Connection:
        conn = SSL.Connection(self._context, None)
        conn.set_accept_state()
        return conn

    def _handshake_failed(self, exc: BaseException, *, event: str = "tls-handshake-refused") -> None:
        """A server refuses in the handshake (old protocol, no shared suite, a
        client chain refused) and says so in one line, like every other refusal."""
        error = repr(exc)[:300]
        log.info(kv(event, remote=_host_port(self._peername()), error=error))
        if self._on_refused is not None:
            peer = self._peername()
            host = str(peer[0]) if isinstance(peer, tuple) and peer else None
            try:
                self._on_refused(host, event, error)
            except Exception:  # the record is evidence, the transport must not depend on it
                log.exception(kv("tls-refusal-record-failed", refusal=event))


async def start_tls_server(
    handler_factory: ProtocolFactory,
    *,
    host: str | None,
    port: int,
    cfg: TlsServerConfig,
    reuse: bool = True,
    backlog: int = 128,
    on_refused: RefusalHook | None = None,
    reuse_port: bool = False,
    live: set[TlsProtocol] | None = None,
) -> asyncio.Server:
    """Listen on *host*:*port* and serve *handler_factory()* protocols over TLS.

    For aiohttp pass ``runner.server`` (a ``web.Server``) after ``runner.setup()``.
    ``port=0`` binds an ephemeral port; read it back with :func:`bound_port`.
    ``on_refused(remote_host, event, error)`` hears of every handshake the
    server refused or that timed out: those never become HTTP requests, so
    the error middleware cannot record them.
    """
    ctx = build_context(cfg)
    loop = asyncio.get_running_loop()

    def make_protocol() -> TlsServerProtocol:
        return TlsServerProtocol(
            ctx, handler_factory, handshake_timeout=cfg.handshake_timeout, on_refused=on_refused,
            live=live,
        )

    return await loop.create_server(
        make_protocol, host=host, port=port, reuse_address=reuse, backlog=backlog,
        reuse_port=reuse_port or None,
    )


def bound_port(server: asyncio.Server) -> int:
    """The TCP port *server* listens on (useful after ``port=0``)."""
    for sock in server.sockets:
        port: int = sock.getsockname()[1]
        return port
    raise ConfigError("server has no listening socket", check="tls.not-listening")
