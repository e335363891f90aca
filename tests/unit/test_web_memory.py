"""brski_web.memory: asyncio's per-connection TLS buffer, lowered and never raised."""

from __future__ import annotations

import asyncio
import ssl
from asyncio import sslproto

import pytest

from brski_web.memory import SSL_READ_BUFFER, bound_asyncio_ssl_buffers


def test_lowers_the_buffer_new_connections_get(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sslproto.SSLProtocol, "max_size", 256 * 1024)
    bound_asyncio_ssl_buffers()
    assert sslproto.SSLProtocol.max_size == SSL_READ_BUFFER

    async def buffer_of_a_new_connection() -> int:
        loop = asyncio.get_running_loop()
        proto = sslproto.SSLProtocol(
            loop, asyncio.Protocol(), ssl.create_default_context(), loop.create_future(), server_side=False
        )
        return len(vars(proto)["_ssl_buffer"])

    assert asyncio.run(buffer_of_a_new_connection()) == SSL_READ_BUFFER


def test_never_raises_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sslproto.SSLProtocol, "max_size", 16 * 1024)
    bound_asyncio_ssl_buffers()
    assert sslproto.SSLProtocol.max_size == 16 * 1024
