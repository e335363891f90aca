"""Keeping a long-running server's resident memory to what it uses.

Two things, each measured in the registrar's fleet runs (docs/performance.md,
"Registrar memory"): asyncio's TLS buffers, and memory malloc holds free.

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

import asyncio
import contextlib
import ctypes
from asyncio import sslproto
from collections.abc import AsyncIterator, Callable
from typing import cast

from aiohttp import web

__all__ = [
    "SSL_READ_BUFFER",
    "TRIM_INTERVAL_S",
    "bound_asyncio_ssl_buffers",
    "free_memory_ctx",
    "release_free_memory",
    "release_free_memory_every",
]

SSL_READ_BUFFER = 32 * 1024


def bound_asyncio_ssl_buffers(size: int = SSL_READ_BUFFER) -> None:
    """Lower asyncio's per-connection TLS buffer (a class attribute it reads
    for every new connection) to ``size`` bytes, never raising it.  Applies to
    connections opened afterwards, in this process."""
    current = getattr(sslproto.SSLProtocol, "max_size", None)
    if isinstance(current, int) and current > size:
        sslproto.SSLProtocol.max_size = size


# --- memory malloc holds free ---------------------------------------------------
#
# glibc's malloc returns freed memory to the system only from the top of its
# heap (M_TRIM_THRESHOLD); memory freed below a chunk still in use stays
# resident.  A server that opens and closes connections all day (each TLS
# connection: OpenSSL's buffers and handshake state, cryptography's parsed
# certificates, Python objects larger than pymalloc's 512 bytes) leaves its
# heap a patchwork: in the registrar's fleet runs 20-30 MB of the brk heap were
# free but resident (malloc_info), and malloc_trim(0) gave them back.  It walks
# the free chunks and hands whole free pages back (madvise), so it is done
# every few seconds, off the event loop, not per request.

TRIM_INTERVAL_S = 5.0


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None elsewhere (musl, macOS: nothing to do)."""
    try:
        libc = ctypes.CDLL(None)
        fn = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int
    return cast("Callable[[int], int]", fn)


def release_free_memory() -> bool:
    """Give the pages malloc holds free back to the system; True if any were
    (False also where there is no glibc)."""
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False


async def release_free_memory_every(interval_s: float = TRIM_INTERVAL_S) -> None:
    """Until cancelled: :func:`release_free_memory` every ``interval_s`` seconds,
    in a thread (ctypes drops the GIL; the loop keeps serving meanwhile)."""
    if _malloc_trim() is None:
        return
    while True:
        await asyncio.sleep(interval_s)
        await asyncio.to_thread(release_free_memory)


async def free_memory_ctx(app: web.Application) -> AsyncIterator[None]:
    """An aiohttp ``cleanup_ctx`` running :func:`release_free_memory_every`."""
    task = asyncio.get_running_loop().create_task(release_free_memory_every())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
