"""Serving an app over TLS until SIGTERM, and the TLS contexts the roles use.

Contexts are built to the project's rules once, here: TLS 1.2 at least
(RFC 8995 section 5.1 and RFC 7030 section 3.3.1 require TLS 1.2+), ECDHE
with AEAD ciphers only (no anonymous, export or static-RSA suites), no
session tickets (they cost a ticket encryption per handshake and a pledge
never resumes), and only the CAs a role actually needs as client trust.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import ssl
from pathlib import Path
from typing import Any

from aiohttp import web

from brski.errors import ConfigError
from brski_tls.policy import POLICY
from brski_web.logs import kv
from brski_web.refusals import HANDSHAKE_REFUSALS
from brski_web.tls import TlsServerConfig, bound_port, start_tls_server

# stdlib ``ssl`` (OpenSSL verifies clients against the configured CAs and the
# app sees only verified leaves) or the pyOpenSSL transport (the app sees every
# client chain and decides, so refusals are HTTP problem bodies, not alerts).
ServerTls = ssl.SSLContext | TlsServerConfig

__all__ = ["ServerTls", "client_ssl_context", "run_server", "server_ssl_context", "server_tls"]

log = logging.getLogger("brski.server")


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}", check="config.file") from exc


def server_ssl_context(
    *, cert: Path, key: Path, client_cas: list[Path], client_auth: str = "optional"
) -> ssl.SSLContext:
    """A server context; ``client_auth`` is ``none``, ``optional`` or ``require``."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    POLICY.apply_stdlib(ctx, server=True)
    _read(cert, "certificate")
    _read(key, "private key")
    try:
        ctx.load_cert_chain(str(cert), str(key))
    except ssl.SSLError as exc:
        raise ConfigError(f"certificate {cert} and key {key} do not load: {exc}", check="config.tls") from exc
    if client_auth == "none":
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    if not client_cas:
        raise ConfigError("client authentication needs at least one client CA", check="config.tls")
    for path in client_cas:
        ctx.load_verify_locations(cadata=_read(path, "client CA").decode())
    ctx.verify_mode = ssl.CERT_REQUIRED if client_auth == "require" else ssl.CERT_OPTIONAL
    return ctx


def server_tls(
    backend: str,
    *,
    cert: Path,
    key: Path,
    client_cas: list[Path],
    client_auth: str = "optional",
) -> ServerTls:
    """The server TLS settings for ``backend`` ("pyopenssl" or "stdlib").

    With pyOpenSSL, client chains that do not verify against ``client_cas``
    still reach the application, flagged; every role re-checks the chain it
    cares about (RFC 8995 5.3 for IDevIDs, 5.5.2 for registrars unknown to
    the MASA), so an untrusted client gets a 403 naming the failed check.
    """
    if backend == "stdlib":
        return server_ssl_context(cert=cert, key=key, client_cas=client_cas, client_auth=client_auth)
    if backend != "pyopenssl":
        raise ConfigError(f"tls_backend must be pyopenssl or stdlib, not {backend!r}", check="config.tls-backend")
    trust = b"".join(_read(p, "client CA") for p in client_cas) or None
    return TlsServerConfig(
        cert_chain_pem=_read(cert, "certificate"),
        key_pem=_read(key, "private key"),
        client_auth=client_auth,  # type: ignore[arg-type]
        client_trust_pem=trust,
        accept_untrusted_clients=client_auth != "none",
    )


def client_ssl_context(
    *, trust: list[Path], cert: Path | None = None, key: Path | None = None, check_hostname: bool = True
) -> ssl.SSLContext:
    """A client context that trusts only ``trust`` and presents ``cert`` if given."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    POLICY.apply_stdlib(ctx, server=False)
    ctx.check_hostname = check_hostname
    ctx.verify_mode = ssl.CERT_REQUIRED
    for path in trust:
        ctx.load_verify_locations(cadata=_read(path, "trust anchor").decode())
    if cert is not None and key is not None:
        ctx.load_cert_chain(str(cert), str(key))
    return ctx


#: How long a stopping worker keeps its open connections for the requests
#: still to come on them (each answered with "Connection: close").
DRAIN_S = 10.0


async def _drain(runner: web.AppRunner, live: set[Any], seconds: float) -> None:
    """Wait until the worker's connections are gone, or ``seconds`` passed.

    The listener is closed already, so no connection comes in; each open one
    (``live``: TLS connections, those still in their handshake included;
    aiohttp's own list on the stdlib TLS path) ends after its next response
    (Connection: close) or when its client closes it. Whatever remains at
    the deadline is closed by the cleanup.
    """
    server = runner.server
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while (live or (server is not None and server.connections)) and loop.time() < deadline:
        await asyncio.sleep(0.05)


async def run_server(
    app: web.Application,
    *,
    host: str,
    port: int,
    tls: ServerTls,
    ready_file: Path | None = None,
    role: str,
    stop: asyncio.Event | None = None,
    plain_http: tuple[web.Application, int] | None = None,
    reuse_port: bool = False,
) -> None:
    """Serve until SIGTERM/SIGINT (or ``stop``), then drain and close cleanly.

    With ``port=0`` the kernel picks a free port; the bound address is logged
    and written to ``ready_file`` (JSON) so that tests and ``make demo`` can
    find the server without racing it.

    ``plain_http`` = (app, port) also serves a second, TLS-less app (the
    registrar's CRL and OCSP publication); it starts after the main app's
    startup hooks ran, so it may use what they opened.

    ``reuse_port``: listen with SO_REUSEPORT beside the other workers of one
    service (brski_web/workers.py).
    """
    share = reuse_port or None
    draining = asyncio.Event()
    if reuse_port:
        # A worker that stops while its siblings keep the port: every response
        # from here on says "Connection: close", so a client mid-onboarding
        # reconnects (to a sibling) instead of finding its connection gone.
        async def close_when_draining(request: web.Request, response: web.StreamResponse) -> None:
            if draining.is_set():
                # aiohttp has computed the headers when this hook runs: say
                # "close" here as well, or the client would reuse a
                # connection the server is about to close.
                response.force_close()
                response.headers["Connection"] = "close"

        app.on_response_prepare.append(close_when_draining)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    plain_runner: web.AppRunner | None = None
    plain_port: int | None = None
    if plain_http is not None:
        plain_runner = web.AppRunner(plain_http[0], access_log=None, handle_signals=False)
        await plain_runner.setup()
        plain_site = web.TCPSite(
            plain_runner, host, plain_http[1], backlog=1024, reuse_address=True, reuse_port=share
        )
        await plain_site.start()
        plain_sockets = getattr(plain_site._server, "sockets", None) or []
        plain_port = plain_sockets[0].getsockname()[1] if plain_sockets else plain_http[1]
    tls_server = None
    site_server: Any = None
    live: set[Any] = set()
    if isinstance(tls, TlsServerConfig):
        refusals = app.get(HANDSHAKE_REFUSALS)
        assert runner.server is not None  # set by runner.setup()
        tls_server = await start_tls_server(
            runner.server, host=host, port=port, cfg=tls, backlog=1024,
            on_refused=refusals.add if refusals is not None else None, reuse_port=reuse_port,
            live=live,
        )
        bound = bound_port(tls_server)
    else:
        site = web.TCPSite(
            runner, host, port, ssl_context=tls, backlog=1024, reuse_address=True, reuse_port=share
        )
        await site.start()
        site_server = site._server
        sockets = getattr(site._server, "sockets", None) or []
        bound = sockets[0].getsockname()[1] if sockets else port
    url = f"https://{host}:{bound}"
    log.info(kv("listening", role=role, url=url, pid=os.getpid(), http_port=plain_port))
    if ready_file is not None:
        tmp = ready_file.with_suffix(".tmp")
        ready = {"url": url, "port": bound, "pid": os.getpid()}
        if plain_port is not None:
            ready["http_port"] = plain_port
        tmp.write_text(json.dumps(ready))
        tmp.replace(ready_file)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # not the main thread
            pass
    try:
        await stop.wait()
    finally:
        log.info(kv("stopping", role=role))
        if tls_server is not None:
            tls_server.close()
        if reuse_port:
            draining.set()
            if site_server is not None:
                site_server.close()
            await _drain(runner, live, DRAIN_S)
        if plain_runner is not None:
            await plain_runner.cleanup()
        await runner.cleanup()
        if tls_server is not None:
            await tls_server.wait_closed()
        if ready_file is not None:
            ready_file.unlink(missing_ok=True)
        log.info(kv("stopped", role=role))
