"""TLS as every role speaks it: the servers, the pledge and the registrar's
client to the MASA.

* :mod:`brski_tls.policy`: the TLS policy (versions, TLS 1.2 suites,
  options), declared once and applied to every context the project builds,
  pyOpenSSL or stdlib, server or client;
* :mod:`brski_tls.protocol`: the memory-BIO protocol that runs pyOpenSSL
  under asyncio, shared by the server transport and the client;
* :mod:`brski_tls.client`: the pledge's client connections.

The server side (accepting connections, the server context, refused
handshakes) is aiohttp plumbing and lives in ``brski_web``, which imports
from here; this package imports no role, no ``brski_web`` and no aiohttp, so
the pledge simulator uses TLS without the servers' plumbing.
"""
