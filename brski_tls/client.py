"""The client side of the memory-BIO TLS transport, for pledges.

Why not the stdlib ``ssl`` module on the pledge side: ``ssl`` loads a client
certificate and key only from files, so every pledge connection used to write
its private key to a temporary directory, parse it back and build a fresh
``SSLContext`` (1.0 ms of CPU per connection, measured; a fleet of thousands
of pledges spent a fifth of its time there).  pyOpenSSL sets the credentials
on each connection from in-memory objects (10 us), so one context serves
every pledge of a process, and the private key never touches a file system.
It is also the OpenSSL that ``cryptography`` bundles, the one the servers
use, rather than the system's.

The shared protocol (:class:`brski_tls.protocol.TlsProtocol`) does the BIO
pumping; the client differs only in who speaks first, in the credentials it
sets per connection, and in waking whoever opened the connection once the
handshake is over.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from cryptography import x509
from OpenSSL import SSL, crypto

from brski.pki import PrivateKey
from brski_tls.policy import POLICY
from brski_tls.protocol import TlsProtocol

__all__ = ["ClientCredentials", "TlsClientProtocol", "open_tls", "open_tls_connection"]


@dataclass(frozen=True, kw_only=True)
class ClientCredentials:
    """A client certificate (leaf first, then the intermediates to send) and its key."""

    certs: tuple[x509.Certificate, ...]
    key: PrivateKey

    def __post_init__(self) -> None:
        if not self.certs:
            raise ValueError("a client credential needs at least its own certificate")


@lru_cache(maxsize=32)
def _provisional_context(chain: tuple[x509.Certificate, ...]) -> SSL.Context:
    """One context per distinct intermediate chain (a fleet shares one; certificates
    compare and hash by their DER).

    RFC 8995 5.1: the pledge accepts the registrar's certificate
    *provisionally*, so the context verifies nothing; the caller checks the
    certificate it gets back against the voucher or the domain CA.  TLS 1.2 is
    the floor (RFC 8995 5.1 requires 1.2 or later).  The intermediates live on
    the context because OpenSSL sends a context's extra chain certificates
    with whatever leaf a connection sets.

    The leaf and key are set per connection, not on a context per identity:
    building and filling a context costs 0.59 ms against 0.22 ms for setting
    them on a connection (measured; most of either is OpenSSL decoding the
    certificate and key handed over from ``cryptography``), and a pledge
    connects about once per identity (IDevID, then LDevID).
    """
    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    POLICY.apply_openssl(ctx, server=False)
    ctx.set_verify(SSL.VERIFY_NONE)
    for cert in chain:
        ctx.add_extra_chain_cert(cert)
    return ctx


class TlsClientProtocol(TlsProtocol):
    """One outgoing TCP connection: TLS on the outside, *inner_factory()* inside."""

    def __init__(
        self,
        credentials: ClientCredentials | None,
        inner: asyncio.Protocol,
        *,
        server_hostname: str | None,
        handshake_timeout: float,
    ) -> None:
        ctx = _provisional_context(() if credentials is None else credentials.certs[1:])
        # A one-shot factory (the list's pop) so that, once started, the inner
        # protocol is not held by a closure that would close a reference cycle
        # through the TLS transport it is given.
        super().__init__(ctx, [inner].pop, handshake_timeout=handshake_timeout)
        self._credentials = credentials
        self._server_hostname = server_hostname
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def _new_connection(self) -> SSL.Connection:
        conn = SSL.Connection(self._context, None)
        if self._credentials is not None:
            conn.use_certificate(self._credentials.certs[0])
            conn.use_privatekey(self._credentials.key)
        sni = _sni(self._server_hostname)
        if sni is not None:
            conn.set_tlsext_host_name(sni)
        conn.set_connect_state()
        return conn

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._do_handshake()  # the ClientHello

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionResetError("connection closed during the TLS handshake"))
        super().connection_lost(exc)
        # This protocol and its TLS transport point at each other: with the connection
        # gone, drop this side so reference counting frees the connection's objects
        # at once instead of leaving two connections a pledge to the cycle collector.
        self._transport = None

    def eof_received(self) -> bool:
        if not self.opened.done():
            self.opened.set_exception(ConnectionResetError("server closed the connection during the TLS handshake"))
        return super().eof_received()

    def _flush_handshake(self) -> None:
        # TLS 1.3 (RFC 8446 2): the client may send application data right after its
        # Finished.  Held in the outgoing BIO, the last flight (Certificate,
        # CertificateVerify, Finished) leaves with the opener's first request in one
        # TCP segment: one send fewer for the client and one read fewer for the
        # server per connection.  The release is scheduled in _handshake_succeeded,
        # after the opener's wake-up, so a request the opener writes at once goes
        # out with the flight; an opener that writes nothing still sends the flight
        # one loop iteration later, and a close or a fatal error sends it at once.
        # (TLS 1.2: the client's last flight went out before the server's Finished,
        # so nothing is held.)
        self._hold_output = True

    def _handshake_succeeded(self) -> None:
        if not self.opened.done():
            self.opened.set_result(None)  # schedules the opener's wake-up ...
        asyncio.get_running_loop().call_soon(self._release_output)  # ... and, after it, this

    def _release_output(self) -> None:
        if self._hold_output:
            self._hold_output = False
            self._flush()

    def _handshake_failed(self, exc: BaseException, *, event: str = "") -> None:
        # The opener reports it; a client has no refusal log of its own.
        if not self.opened.done():
            self.opened.set_exception(exc if isinstance(exc, Exception) else ConnectionError(str(exc)))

    @property
    def tls_connection(self) -> SSL.Connection | None:
        return self._conn

    def peer_certificate_der(self) -> bytes | None:
        """The server's end-entity certificate as DER, straight from OpenSSL.

        The pledge needs only this one certificate (RFC 8995 5.1 retains it for
        the voucher-request and the later pin check); the transport's
        ``peercert`` extra info also converts the whole chain through
        ``cryptography`` objects (74 us against 9 us per connection, measured).
        """
        cert = None if self._conn is None else self._conn.get_peer_certificate()
        return None if cert is None else crypto.dump_certificate(crypto.FILETYPE_ASN1, cert)

    @property
    def tls_version(self) -> str | None:
        return None if self._conn is None else self._conn.get_protocol_version_name()


# host, port -> (when resolved, addresses).  A fleet opens two connections per
# pledge to one registrar; asking the resolver (a thread hand-off each time)
# cost a tenth of the fleet's CPU.  Entries live RESOLVE_TTL seconds, about
# what a stub resolver's cache would give; a failed connect drops the entry.
RESOLVE_TTL = 30.0
_resolved: dict[tuple[str, int], tuple[float, list[tuple[int, Any]]]] = {}


async def _connect(
    loop: asyncio.AbstractEventLoop, factory: Callable[[], asyncio.Protocol], host: str, port: int
) -> asyncio.Transport:
    if _is_ip(host):
        raw, _ = await loop.create_connection(factory, host.strip("[]"), port)
        return raw
    key = (host, port)
    cached = _resolved.get(key)
    if cached is None or loop.time() - cached[0] > RESOLVE_TTL:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
        if any(family == socket.AF_INET6 and len(addr) > 3 and addr[3] for family, _t, _p, _c, addr in infos):
            # Link-local with a scope (a join proxy): let asyncio carry the scope id.
            raw, _ = await loop.create_connection(factory, host, port)
            return raw
        cached = (loop.time(), [(family, addr) for family, _t, _p, _c, addr in infos])
        _resolved[key] = cached
    last: OSError | None = None
    for family, addr in cached[1]:
        try:
            raw, _ = await loop.create_connection(factory, addr[0], addr[1], family=family)
            return raw
        except OSError as exc:
            last = exc
    _resolved.pop(key, None)
    raise last or OSError(f"{host} resolved to no address")


@lru_cache(maxsize=64)
def _is_ip(host: str) -> bool:
    # Asked on every connection about the same few names; ipaddress raising
    # ValueError for a host name costs about 6 us each time.
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


@lru_cache(maxsize=64)
def _sni(host: str | None) -> bytes | None:
    """The server_name to send (RFC 6066 3: host names only, never an address)."""
    return host.encode("idna") if host and not _is_ip(host) else None


async def open_tls(
    host: str,
    port: int,
    inner: asyncio.Protocol,
    *,
    credentials: ClientCredentials | None,
    server_hostname: str | None = None,
    handshake_timeout: float = 30.0,
) -> TlsClientProtocol:
    """Connect and complete the TLS handshake; *inner* is then connected to the
    plaintext transport (its ``connection_made`` has run) and the protocol
    returned.  A caller with its own protocol needs no asyncio streams.

    Failures of the handshake surface as the exception OpenSSL (or the socket)
    raised: ``OpenSSL.SSL.Error``, ``OSError`` or ``TimeoutError``.
    """
    loop = asyncio.get_running_loop()
    proto = TlsClientProtocol(
        credentials,
        inner,
        server_hostname=server_hostname if server_hostname is not None else host,
        handshake_timeout=handshake_timeout,
    )
    raw = await _connect(loop, lambda: proto, host, port)
    try:
        await proto.opened
    except BaseException:
        raw.abort()
        raise
    if proto._transport is None:  # lost right after the handshake, before this task resumed
        raw.abort()
        raise ConnectionResetError("connection closed right after the TLS handshake")
    return proto


async def open_tls_connection(
    host: str,
    port: int,
    *,
    credentials: ClientCredentials | None,
    server_hostname: str | None = None,
    limit: int = 65536,
    handshake_timeout: float = 30.0,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, TlsClientProtocol]:
    """Connect, complete the TLS handshake and return asyncio streams over it
    (:func:`open_tls`, with a stream reader as the inner protocol)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=limit, loop=loop)
    inner = asyncio.StreamReaderProtocol(reader, loop=loop)
    proto = await open_tls(
        host, port, inner, credentials=credentials, server_hostname=server_hostname,
        handshake_timeout=handshake_timeout,
    )
    assert proto._transport is not None
    writer = asyncio.StreamWriter(proto._transport, inner, reader, loop)
    return reader, writer, proto
