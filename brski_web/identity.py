"""Who is on the other end of this TLS connection.

Two TLS backends can serve an app: the stdlib ``ssl`` module (the client has
already been verified by OpenSSL against the configured CAs, and Python 3.11
only shows us the leaf) and the pyOpenSSL transport in :mod:`brski_web.tls`
(which can accept any client certificate, report whether it verified, and
hand us the whole chain the client sent). Handlers see one shape either way.
"""

from __future__ import annotations

import hashlib
import weakref
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from aiohttp import web
from cryptography import x509

from brski.pki import cert_der, device_serial

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
    # The leaf's DER as the client sent it, when the transport has it.
    leaf_der: bytes | None = None

    # Facts of the leaf, computed on first use and kept with the connection's
    # identity: the certificate cannot change during a connection, so they
    # are derived once per connection, not once per request.  What can change
    # (the device's row, revocation) is never kept here.

    @cached_property
    def fingerprint(self) -> str | None:
        """Lower-case hex SHA-256 of the leaf's DER (brski.pki.fingerprint_sha256)."""
        if self.leaf is None:
            return None
        return hashlib.sha256(self.leaf_der if self.leaf_der is not None else cert_der(self.leaf)).hexdigest()

    @cached_property
    def subject_text(self) -> str | None:
        """The leaf's subject as RFC 4514 text, for log lines and records."""
        return None if self.leaf is None else self.leaf.subject.rfc4514_string()

    @cached_property
    def device_serial(self) -> str | None:
        """The device serial the leaf names (RFC 8995 2.3.1: the subject's
        serialNumber attribute); raises MalformedInput when it names two."""
        return None if self.leaf is None else device_serial(self.leaf)


PEER_KEY: web.RequestKey[PeerIdentity] = web.RequestKey("brski_peer", PeerIdentity)


def _from_transport(request: web.Request) -> PeerIdentity:
    transport = request.transport
    if transport is None:
        return PeerIdentity(leaf=None, chain=(), tls_verified=False)
    certs = transport.get_extra_info("peercert_x509")
    if certs is not None:  # pyOpenSSL backend
        return PeerIdentity(
            leaf=certs[0] if certs else None,
            chain=tuple(certs[1:]),
            leaf_der=transport.get_extra_info("peercert"),
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
        leaf_der=der or None,
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
