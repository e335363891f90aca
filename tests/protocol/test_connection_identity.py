"""What a registrar keeps with a TLS connection and what it reads per request.

The client's certificate cannot change during a connection (renegotiation is
off, no post-handshake authentication), so its parsed chain and the facts
derived from it (serial, fingerprint, subject) are kept with the connection
(brski_web.identity.PeerIdentity).  Whether that certificate may still be
used can change at any moment (RFC 5280 3.3: a revocation takes effect when
it is published, not when the client reconnects), so it is decided on every
request: here a revocation between two requests of one keep-alive connection
refuses the second.
"""

from __future__ import annotations

import http.client
import json
import ssl
from datetime import UTC, datetime

from brski.pki import load_cert
from tests.protocol.helpers import ENROLLSTATUS, JSON_HEADERS, STATUS_OK, load_key
from tests.protocol.net import Net, write_identity


def test_a_revocation_refuses_the_next_request_on_the_same_connection(net: Net) -> None:
    result = net.enroll()
    assert result.ok
    out = net.root / "out" / result.serial
    cert = load_cert((out / "ldevid.crt").read_bytes())
    ident = write_identity(net.root, "ldevid-keepalive", cert, load_key(out / "ldevid.key"))
    assert ident.pem_path is not None and ident.key_path is not None
    ctx = ssl.create_default_context(cafile=str(net.path("registrar/domain-ca.crt")))
    ctx.check_hostname = False
    ctx.load_cert_chain(str(ident.pem_path), str(ident.key_path))
    conn = http.client.HTTPSConnection("127.0.0.1", net.registrar_port, context=ctx, timeout=30)
    try:
        conn.request("POST", ENROLLSTATUS, body=STATUS_OK, headers=JSON_HEADERS)
        first = conn.getresponse()
        first.read()
        assert first.status == 200
        sock = conn.sock
        net.call(net.registrar.store.revoke_certificate(cert.serial_number, reason="keyCompromise", at=datetime.now(UTC)))
        conn.request("POST", ENROLLSTATUS, body=STATUS_OK, headers={**JSON_HEADERS, "Accept": "application/problem+json"})
        second = conn.getresponse()
        body = second.read()
        assert conn.sock is sock  # the same TLS connection carried both requests
        assert second.status == 403
        assert json.loads(body)["check"] == "ldevid.revoked"
    finally:
        conn.close()
