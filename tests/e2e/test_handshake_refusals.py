"""Refused TLS handshakes leave events in the real servers' stores.

A TLS 1.1 client and a client that speaks plain HTTP to the TLS port are
refused in the handshake, before any HTTP request exists; the registrar and
the MASA each store them as ``tls.handshake-refused`` events (counted per
remote host and error), written at the latest when the server stops.
"""

from __future__ import annotations

import json
import socket
import ssl

import pytest

from brski_cli.lab import Lab
from tests.e2e.labtools import rows
from tests.tls_old import restrict_to_tls11


def _tls11(port: int) -> bool:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if not restrict_to_tls11(ctx):
        return False
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with pytest.raises((ssl.SSLError, ConnectionError)):
            ctx.wrap_socket(raw).close()
    return True


def _plain_http(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            raw.recv(4096)
        except OSError:
            pass


def _refusals(lab: Lab, role: str) -> list[tuple[str, int, str, object]]:
    """(remote, count, error, check) of each refused-handshake event: the
    detail's JSON fields, as the servers record them."""
    found = rows(
        lab.db_url(role),
        "SELECT detail, check_name FROM events WHERE kind = 'tls.handshake-refused' AND outcome = 'refuse'",
    )
    details = [(json.loads(str(detail)), check) for detail, check in found]
    return [(d.get("remote"), d.get("count"), d.get("error"), check) for d, check in details]


def test_refused_handshakes_are_stored_as_counted_events(lab: Lab) -> None:
    registrar_port, masa_port = lab.registrar_port, lab.masa_port
    offered_tls11 = _tls11(registrar_port)
    for _ in range(3):
        _plain_http(registrar_port)
    _plain_http(masa_port)
    # Stopping flushes the window that counted them.
    lab.stop("registrar")
    lab.stop("masa")
    lab.start("masa")
    lab.start("registrar")
    registrar = _refusals(lab, "registrar")
    assert all(r[0] == "127.0.0.1" and r[3] == "tls.handshake" for r in registrar), registrar
    assert sum(int(r[1]) for r in registrar) == 3 + (1 if offered_tls11 else 0)
    if offered_tls11:
        assert any("unsupported protocol" in str(r[2]) for r in registrar), registrar
    masa = _refusals(lab, "masa")
    assert [(r[0], r[1]) for r in masa] == [("127.0.0.1", 1)]
    # The chains still verify with the new events in them.
    for role in ("registrar", "masa"):
        out = lab._run_cli(role, "audit", "verify", "--database", lab.db_url(role))
        assert "event log intact" in out, out
