"""Keeping a long-running server's resident memory to what it uses.

Measured in the registrar's fleet runs (docs/performance.md, "Registrar memory").

asyncio's TLS transport (``asyncio.sslproto.SSLProtocol``, what aiohttp's client
connections run on) gives every connection a receive buffer of ``max_size``
bytes, 256 KiB, zero-filled when the connection opens, and each read of
decrypted data asks OpenSSL for up to that many bytes at once.  The registrar's
pool of connections to the MASA holds up to 64 such connections; at
concurrency 50 about 50 stay open, 12.5 MiB of buffers for answers of a few
KiB.  A TLS record carries at most 16 KiB of plaintext (RFC 8446 section 5.1),
so a 32 KiB buffer still takes a whole record per read.
"""

from __future__ import annotations

from asyncio import sslproto

__all__ = ["SSL_READ_BUFFER", "bound_asyncio_ssl_buffers"]

SSL_READ_BUFFER = 32 * 1024


def bound_asyncio_ssl_buffers(size: int = SSL_READ_BUFFER) -> None:
    """Lower asyncio's per-connection TLS buffer (a class attribute it reads
    for every new connection) to ``size`` bytes, never raising it.  Applies to
    connections opened afterwards, in this process."""
    current = getattr(sslproto.SSLProtocol, "max_size", None)
    if isinstance(current, int) and current > size:
        sslproto.SSLProtocol.max_size = size
