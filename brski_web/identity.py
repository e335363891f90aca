"""Who is on the other end of this TLS connection.

Two TLS backends can serve an app: the stdlib ``ssl`` module (the client has
already been verified by OpenSSL against the configured CAs, and Python 3.11
only shows us the leaf) and the pyOpenSSL transport in :mod:`brski_web.tls`
(which can accept any client certificate, report whether it verified, and
hand us the whole chain the client sent). Handlers see one shape either way.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from cryptography import x509

__all__ = ["PEER_KEY", "PeerIdentity", "peer_identity"]


@dataclass(frozen=True, kw_only=True)
class PeerIdentity:
    leaf: x509.Certificate | None
    # Certificates the client sent after its leaf (pyOpenSSL backend only).
    chain: tuple[x509.Certificate, ...]
    # Whether OpenSSL verified the chain against the server's client-CA list.
    # With stdlib ssl an unverified client never gets this far, so True.
    tls_verified: bool
    tls_verify_error: str | None = None
    tls_version: str | None = None


PEER_KEY: web.RequestKey[PeerIdentity] = web.RequestKey("brski_peer", PeerIdentity)


def _from_transport(request: web.Request) -> PeerIdentity:
    transport = request.transport
    if transport is None:
        return PeerIdentity(leaf=None, chain=(), tls_verified=False)
    chain_der = transport.get_extra_info("peercert_chain")
    if chain_der is not None:  # pyOpenSSL backend
        certs = [x509.load_der_x509_certificate(d) for d in chain_der]
        return PeerIdentity(
            leaf=certs[0] if certs else None,
            chain=tuple(certs[1:]),
            tls_verified=bool(transport.get_extra_info("peer_verified")),
            tls_verify_error=transport.get_extra_info("peer_verify_error"),
            tls_version=transport.get_extra_info("tls_version"),
        )
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return PeerIdentity(leaf=None, chain=(), tls_verified=False)
    der = ssl_object.getpeercert(binary_form=True)
    return PeerIdentity(
        leaf=x509.load_der_x509_certificate(der) if der else None,
        chain=(),
        tls_verified=der is not None,
        tls_version=ssl_object.version(),
    )


# transport -> the identity its handshake established.  Renegotiation is off
# and no post-handshake authentication is requested (brski_web.tls_context),
# so a connection's client never changes: parse its chain once per connection,
# not once per request (a pledge makes four or five requests on one).
_by_transport: weakref.WeakKeyDictionary[Any, PeerIdentity] = weakref.WeakKeyDictionary()


def peer_identity(request: web.Request) -> PeerIdentity:
    """The client's TLS identity, parsed once per connection."""
    cached = request.get(PEER_KEY)
    if cached is None:
        transport = request.transport
        cached = _by_transport.get(transport) if transport is not None else None
        if cached is None:
            cached = _from_transport(request)
            if transport is not None:
                try:
                    _by_transport[transport] = cached
                except TypeError:  # a transport without weak references: per request then
                    pass
        request[PEER_KEY] = cached
    return cached
