"""The TLS policy, declared once: every context the project builds applies it.

Server contexts (pyOpenSSL transport and the stdlib backend), the pledge's
client context and the registrar's client to the MASA all take their protocol
floor, TLS 1.2 suites and options from :data:`POLICY`, so a change here reaches
every connection.

* Versions: TLS 1.2 and 1.3 (RFC 8995 5.1 requires 1.2 or later; RFC 9325 3.1.1).
* TLS 1.2 suites: ECDHE key exchange and AEAD only (RFC 9325 4.2): no static-RSA
  key exchange, no CBC (Lucky13-style padding oracles), no anonymous, export or
  NULL suites. TLS 1.3 suites are all AEAD with ephemeral key exchange already,
  so OpenSSL's defaults stand.
* Groups: OpenSSL 3's defaults (X25519, P-256, X448, P-521, P-384). Neither
  pyOpenSSL nor the stdlib ``ssl`` module can set a list of groups through a
  public API (``ssl`` sets one curve only), and the defaults are what RFC 9325
  4.2.1 recommends.
* No compression (CRIME), no renegotiation (a TLS 1.2 client could otherwise
  change its certificate mid-connection, and the peer identity is read once
  per connection), no session tickets (every connection is a full handshake, so
  the client-certificate facts are first-hand).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

from OpenSSL import SSL

__all__ = ["POLICY", "TLS12_CIPHERS", "TlsPolicy"]

TLS12_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
)


@dataclass(frozen=True, kw_only=True)
class TlsPolicy:
    """Protocol floor and TLS 1.2 suites; applied to pyOpenSSL or stdlib contexts."""

    tls12_ciphers: str = TLS12_CIPHERS

    def __post_init__(self) -> None:
        if not self.tls12_ciphers or any(c in self.tls12_ciphers for c in " ,"):
            raise ValueError("tls12_ciphers is an OpenSSL cipher list separated by ':'")

    def apply_openssl(self, ctx: SSL.Context, *, server: bool) -> None:
        """Set the policy on a pyOpenSSL context (server or client)."""
        ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
        options = SSL.OP_NO_TICKET | SSL.OP_NO_COMPRESSION | SSL.OP_NO_RENEGOTIATION
        if server:
            options |= SSL.OP_CIPHER_SERVER_PREFERENCE
        ctx.set_options(options)
        ctx.set_cipher_list(self.tls12_ciphers.encode("ascii"))

    def apply_stdlib(self, ctx: ssl.SSLContext, *, server: bool) -> None:
        """Set the policy on a stdlib ``ssl`` context (server or client)."""
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers(self.tls12_ciphers)
        ctx.options |= ssl.OP_NO_TICKET | ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
        if server:
            ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
            ctx.num_tickets = 0


POLICY = TlsPolicy()
