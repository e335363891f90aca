"""The server side of TLS, configured once: what :mod:`brski_web.tls` serves with.

Separate from the transport because this is policy (the protocol versions,
suites and options of :mod:`brski_tls.policy`, whom to ask for client certificates and how to
judge them) while the transport is mechanics (moving bytes through memory
BIOs). The verify callback is the BRSKI-specific part: with
``accept_untrusted_clients`` every client chain is let through the handshake
and marked verified or not, so the application can refuse with an HTTP
problem body naming the check (RFC 8995 5.3 at the registrar, 5.5.2 at the
MASA) rather than a TLS alert.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL, crypto

from brski.errors import ConfigError
from brski_tls.policy import POLICY
from brski_tls.protocol import PeerVerification

__all__ = ["ClientAuth", "TlsServerConfig", "build_context"]

ClientAuth = Literal["none", "optional", "require"]

@dataclass(frozen=True, kw_only=True)
class TlsServerConfig:
    """Everything :func:`build_context` needs; validated so a typo fails at start-up.

    ``accept_untrusted_clients`` is the BRSKI switch: the handshake then accepts any
    client chain (proof of possession of the leaf key is still checked by TLS), and
    records whether OpenSSL would have trusted it, so the application can answer
    with a problem body instead of a TLS alert the client cannot interpret.
    """

    cert_chain_pem: bytes  # server leaf first, then intermediates
    key_pem: bytes  # unencrypted PEM private key of the leaf
    client_auth: ClientAuth = "none"
    client_trust_pem: bytes | None = None  # CAs client chains are verified against
    accept_untrusted_clients: bool = False
    alpn: bool = True  # select "http/1.1" when the client offers it; never refuse over ALPN
    handshake_timeout: float = 10.0  # seconds; slow-loris handshakes are dropped after this
    verify_depth: int = 8

    def __post_init__(self) -> None:
        if self.client_auth not in ("none", "optional", "require"):
            raise ConfigError(
                f"client_auth must be none, optional or require, not {self.client_auth!r}",
                check="tls.client-auth",
            )
        if self.accept_untrusted_clients and self.client_auth == "none":
            raise ConfigError(
                "accept_untrusted_clients needs client_auth optional or require",
                check="tls.accept-untrusted",
            )
        if self.client_auth != "none" and not (
            self.client_trust_pem or self.accept_untrusted_clients
        ):
            raise ConfigError(
                "client_auth without client_trust_pem refuses every client certificate;"
                " configure client CAs or accept_untrusted_clients",
                check="tls.client-trust",
            )
        if not self.handshake_timeout > 0:
            raise ConfigError("handshake_timeout must be positive", check="tls.handshake-timeout")
        if not 1 <= self.verify_depth <= 32:
            raise ConfigError("verify_depth must be within 1..32", check="tls.verify-depth")


# --- context ------------------------------------------------------------------


def _verify_error_text(errnum: int) -> str:
    """OpenSSL's own wording for an X509_V_ERR_* code, so logs match `openssl verify`."""
    try:
        from OpenSSL._util import ffi as _ffi  # private, but present in every pyOpenSSL
        from OpenSSL._util import lib as _lib

        raw = _lib.X509_verify_cert_error_string(errnum)
        text: str = _ffi.string(raw).decode("utf-8", "replace")
        return text
    except Exception:  # pragma: no cover - only if pyOpenSSL drops the binding
        return f"X509 verify error {errnum}"


def _make_verify_callback(accept_untrusted: bool) -> Callable[..., bool]:
    """The callback OpenSSL calls once per certificate of the client's chain.

    It records the first failure in the connection's :class:`PeerVerification`
    and, when untrusted clients are accepted, tells OpenSSL to carry on.
    """

    def verify(conn: SSL.Connection, cert: crypto.X509, errnum: int, depth: int, ok: int) -> bool:
        if not ok:
            record = conn.get_app_data()
            if isinstance(record, PeerVerification) and record.first_error is None:
                record.first_error = f"{_verify_error_text(errnum)} (code {errnum}, depth {depth})"
            return accept_untrusted
        return True

    return verify


def _select_http11(conn: SSL.Connection, offered: list[bytes]) -> bytes | object:
    """Pick http/1.1 if offered; otherwise continue without ALPN rather than fail."""
    if b"http/1.1" in offered:
        return b"http/1.1"
    return SSL.NO_OVERLAPPING_PROTOCOLS  # pyOpenSSL maps this to "no ALPN", not an alert


def build_context(cfg: TlsServerConfig) -> SSL.Context:
    """A server ``OpenSSL.SSL.Context`` for *cfg*; raises ConfigError on bad material.

    Session resumption is switched off (OP_NO_TICKET, no session cache): every
    connection then carries a full handshake with the client certificate, so the
    peer facts in ``get_extra_info`` are always first-hand.  pyOpenSSL has no
    ``SSL_CTX_set_num_tickets``; with OP_NO_TICKET and the cache off OpenSSL still
    sends TLS 1.3 NewSessionTicket messages, but nothing is stored, so a client
    presenting one gets a full handshake.
    """
    try:
        chain = x509.load_pem_x509_certificates(cfg.cert_chain_pem)
    except ValueError as exc:
        raise ConfigError(f"cert_chain_pem: {exc}", check="tls.cert-chain") from exc
    try:
        key = serialization.load_pem_private_key(cfg.key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"key_pem: {exc}", check="tls.key") from exc
    trust: list[x509.Certificate] = []
    if cfg.client_trust_pem:
        try:
            trust = x509.load_pem_x509_certificates(cfg.client_trust_pem)
        except ValueError as exc:
            raise ConfigError(f"client_trust_pem: {exc}", check="tls.client-trust") from exc

    ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
    ctx.set_session_cache_mode(SSL.SESS_CACHE_OFF)
    ctx.set_session_id(b"brski-tls")  # harmless; avoids "session id context uninitialized"
    try:
        POLICY.apply_openssl(ctx, server=True)
        ctx.use_certificate(chain[0])
        for extra in chain[1:]:
            ctx.add_extra_chain_cert(extra)
        ctx.use_privatekey(key)  # type: ignore[arg-type]  # validated by check_privatekey
        ctx.check_privatekey()
        store = ctx.get_cert_store()
        for anchor in trust:
            assert store is not None
            store.add_cert(crypto.X509.from_cryptography(anchor))
    except (SSL.Error, crypto.Error, TypeError, ValueError) as exc:
        raise ConfigError(f"TLS server material rejected: {exc!r}", check="tls.context") from exc

    if cfg.client_auth == "none":
        ctx.set_verify(SSL.VERIFY_NONE)
    else:
        mode = SSL.VERIFY_PEER | SSL.VERIFY_CLIENT_ONCE
        if cfg.client_auth == "require":
            mode |= SSL.VERIFY_FAIL_IF_NO_PEER_CERT
        # No client CA list is sent: a pledge or registrar must not drop its
        # certificate just because its issuer is not one we named.
        ctx.set_verify(mode, _make_verify_callback(cfg.accept_untrusted_clients))
        ctx.set_verify_depth(cfg.verify_depth)
    if cfg.alpn:
        ctx.set_alpn_select_callback(_select_http11)  # type: ignore[arg-type]
    return ctx
