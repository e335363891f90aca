"""brski_web.tls (on brski_tls.protocol): real TLS on loopback, an aiohttp app behind the pyOpenSSL transport.

The clients are the stdlib ``ssl`` module (through aiohttp's client, asyncio streams,
or a blocking socket in a thread), i.e. a different TLS implementation from the
server's, as in deployment.  All certificates are minted per test module.

Wiring under test (the same as production)::

    runner = web.AppRunner(app)
    await runner.setup()
    server = await start_tls_server(runner.server, host="127.0.0.1", port=0, cfg=cfg)
    port = bound_port(server)
"""
from __future__ import annotations

import asyncio
import logging
import ssl

import aiohttp
import pytest

from tests.protocol.tls_transport_helpers import (
    DER,
    Pki,
    _cfg,
    _client_ctx,
    _get_json,
    serve,
)
from tests.tls_old import restrict_to_tls11

# --- identity ------------------------------------------------------------------------


async def test_trusted_client_cert_reaches_handler_verified(tls_pki: Pki) -> None:
    async with serve(_cfg(tls_pki, client_auth="require")) as port:
        facts = await _get_json(port, _client_ctx(tls_pki, tls_pki.trusted_client))
    leaf = tls_pki.client_leaf.public_bytes(DER).hex()
    assert facts["peercert"] == leaf
    # as sent by the client: leaf, then the intermediate (the root is not sent)
    assert facts["chain"] == [leaf, tls_pki.client_intermediate.public_bytes(DER).hex()]
    assert facts["verified"] is True
    assert facts["error"] is None
    assert facts["version"] == "TLSv1.3"
    assert facts["cipher"][1] == "TLSv1.3"
    assert facts["secure"] is True  # aiohttp sees a truthy "sslcontext": https URLs
    assert facts["ssl_object"] is None


async def test_untrusted_client_accepted_reaches_handler_unverified(tls_pki: Pki) -> None:
    cfg = _cfg(tls_pki, client_auth="require", accept_untrusted_clients=True)
    async with serve(cfg) as port:
        facts = await _get_json(port, _client_ctx(tls_pki, tls_pki.untrusted_client))
    assert facts["peercert"] == tls_pki.other_leaf.public_bytes(DER).hex()
    assert len(facts["chain"]) == 2
    assert facts["verified"] is False
    assert "issuer" in facts["error"] or "self-signed" in facts["error"]
    assert "depth" in facts["error"]


async def test_untrusted_client_accepted_without_any_trust_store(tls_pki: Pki) -> None:
    """The MASA case: no client CAs configured at all, every registrar reaches the app."""
    cfg = _cfg(tls_pki, client_auth="require", client_trust_pem=None, accept_untrusted_clients=True)
    async with serve(cfg) as port:
        facts = await _get_json(port, _client_ctx(tls_pki, tls_pki.trusted_client))
    assert facts["verified"] is False
    assert facts["error"]
    assert facts["peercert"] == tls_pki.client_leaf.public_bytes(DER).hex()


async def _expect_refused(port: int, ctx: ssl.SSLContext) -> None:
    # Under TLS 1.3 the client finishes its handshake before the server judges its
    # certificate, so the refusal may surface as a TLS error or as a reset/EOF.
    async with aiohttp.ClientSession() as session:
        with pytest.raises((aiohttp.ClientError, ssl.SSLError, ConnectionError)):
            async with session.get(f"https://127.0.0.1:{port}/info", ssl=ctx) as resp:
                await resp.read()


async def test_untrusted_client_refused_in_handshake(
    tls_pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[str] = []
    caplog.set_level(logging.DEBUG, logger="brski_web.tls")
    async with serve(_cfg(tls_pki, client_auth="optional"), calls) as port:
        await _expect_refused(port, _client_ctx(tls_pki, tls_pki.untrusted_client))
        assert calls == []
        assert "certificate verify failed" in caplog.text
        # the server is unharmed
        assert (await _get_json(port, _client_ctx(tls_pki, tls_pki.trusted_client)))["verified"]


async def test_require_without_client_cert_fails_handshake(
    tls_pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[str] = []
    caplog.set_level(logging.DEBUG, logger="brski_web.tls")
    async with serve(_cfg(tls_pki, client_auth="require"), calls) as port:
        await _expect_refused(port, _client_ctx(tls_pki))
    assert calls == []
    assert "peer did not return a certificate" in caplog.text


async def test_optional_without_client_cert(tls_pki: Pki) -> None:
    async with serve(_cfg(tls_pki, client_auth="optional", accept_untrusted_clients=True)) as port:
        facts = await _get_json(port, _client_ctx(tls_pki))
    assert facts["peercert"] == ""
    assert facts["chain"] == []
    assert facts["verified"] is False
    assert facts["error"] is None


async def test_no_client_auth(tls_pki: Pki) -> None:
    async with serve(_cfg(tls_pki, client_auth="none", client_trust_pem=None)) as port:
        facts = await _get_json(port, _client_ctx(tls_pki, tls_pki.trusted_client))
    assert facts["chain"] == []  # never requested, so never sent


# --- versions, exporter -------------------------------------------------------------


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
async def test_tls12_and_tls13(tls_pki: Pki, version: ssl.TLSVersion) -> None:
    async with serve(_cfg(tls_pki)) as port:
        facts = await _get_json(port, _client_ctx(tls_pki, tls_pki.trusted_client, version=version))
    name = {ssl.TLSVersion.TLSv1_2: "TLSv1.2", ssl.TLSVersion.TLSv1_3: "TLSv1.3"}[version]
    assert facts["version"] == name
    assert facts["verified"] is True
    if version is ssl.TLSVersion.TLSv1_2:
        assert facts["cipher"][0].startswith("ECDHE-") and "GCM" in facts["cipher"][0]
        assert len(bytes.fromhex(facts["tls_unique"])) == 12
    else:
        assert facts["tls_unique"] == ""


async def test_tls11_refused(tls_pki: Pki, caplog: pytest.LogCaptureFixture) -> None:
    ctx = _client_ctx(tls_pki, tls_pki.trusted_client)
    if not restrict_to_tls11(ctx):
        pytest.skip("local OpenSSL cannot offer TLS 1.1")
    calls: list[str] = []
    caplog.set_level(logging.DEBUG, logger="brski_web.tls")
    async with serve(_cfg(tls_pki), calls) as port:
        reader_writer = asyncio.open_connection("127.0.0.1", port, ssl=ctx)
        with pytest.raises((ssl.SSLError, ConnectionError)):
            _, writer = await reader_writer
            writer.close()
    assert calls == []
    # refused by the server's minimum version, not by the client's own policy
    assert "unsupported protocol" in caplog.text


async def test_exporter_stable_within_and_distinct_across_connections(tls_pki: Pki) -> None:
    async with serve(_cfg(tls_pki)) as port:
        a = await _get_json(port, _client_ctx(tls_pki, tls_pki.trusted_client))
        b = await _get_json(port, _client_ctx(tls_pki, tls_pki.trusted_client))
    for facts in (a, b):
        assert len(bytes.fromhex(facts["exporter"])) == 32
        assert facts["exporter"] == facts["exporter_again"]
        assert facts["exporter"] != facts["exporter_ctx"]
    assert a["exporter"] != b["exporter"]
