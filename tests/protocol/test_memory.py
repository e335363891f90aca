"""What a server holds on to after a connection: real TLS on loopback.

* A closed connection of the pyOpenSSL transport (brski_tls.protocol) is freed by
  reference counting when it closes, not left in a reference cycle for the
  cyclic collector: a busy registrar had hundreds of closed connections, each with
  OpenSSL's SSL object and buffers, waiting for the collector's next full pass.
* The registrar's connections to the MASA (asyncio's TLS transport under aiohttp)
  carry receive buffers of ``brski_web.memory.SSL_READ_BUFFER``, not asyncio's
  256 KiB.
"""

from __future__ import annotations

import asyncio
import gc
from asyncio import sslproto

import pytest

from brski_web.memory import SSL_READ_BUFFER
from brski_web.tls import TlsServerProtocol
from tests.protocol.net import Net
from tests.protocol.tls_transport_helpers import Pki, _cfg, _client_ctx, _get_json, serve


def _server_protocols() -> int:
    """How many exist (a count: a list of them would keep them alive)."""
    return sum(isinstance(o, TlsServerProtocol) for o in gc.get_objects())


async def test_a_closed_connection_is_freed_without_the_cycle_collector(tls_pki: Pki) -> None:
    gc.collect()
    gc.disable()  # whatever is left now is held by a reference or a cycle
    try:
        async with serve(_cfg(tls_pki)) as port:
            for _ in range(3):
                facts = await _get_json(port, _client_ctx(tls_pki, tls_pki.trusted_client))
                assert facts["verified"] is True
            # The client closed; the server sees each close on its next loop turns.
            left = _server_protocols()
            for _ in range(500):
                if not left:
                    break
                await asyncio.sleep(0.01)
                left = _server_protocols()
            assert left == 0, f"{left} closed connection(s) still held (a reference cycle)"
    finally:
        gc.enable()


@pytest.mark.sqlite_only  # the pool is the same whatever the store
def test_the_registrar_pool_to_the_masa_has_small_tls_buffers(net: Net) -> None:
    assert net.enroll().ok
    transport = net.registrar.vouchers.masa.transport
    session = transport._session
    assert session is not None
    conns = [proto for protos in session.connector._conns.values() for proto, _t in protos]
    assert conns, "no pooled connection to the MASA after an onboarding"
    for proto in conns:
        ssl_transport = proto.transport
        assert ssl_transport is not None
        ssl_protocol = ssl_transport._ssl_protocol
        assert isinstance(ssl_protocol, sslproto.SSLProtocol)
        assert len(vars(ssl_protocol)["_ssl_buffer"]) <= SSL_READ_BUFFER
