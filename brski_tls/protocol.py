"""The memory-BIO TLS protocol both sides share: pyOpenSSL under asyncio.

:class:`TlsProtocol` is the protocol the event loop's plain TCP transport
talks to.  It owns an ``OpenSSL.SSL.Connection`` built on memory BIOs:
ciphertext from the socket is written into the incoming BIO, the handshake is
driven with ``do_handshake``, and every byte OpenSSL wants to send is drained
from the outgoing BIO into the TCP transport.  Once the handshake completes it
creates the *inner* protocol (aiohttp's ``RequestHandler`` on a server, an
asyncio stream on the pledge) and hands it a :class:`TlsTransport`, through
which plaintext flows both ways.  The design mirrors the stdlib's
``asyncio.sslproto`` conceptually, without its code.

The server side (accepting, refusals) is :mod:`brski_web.tls`; the client side
(the pledge's connections) is :mod:`brski_tls.client`.  Why pyOpenSSL rather
than the stdlib ``ssl`` module is said in each of them.

The inner protocol reads the TLS facts with ``transport.get_extra_info(key)``;
see :data:`TLS_EXTRA_KEYS`.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, cast

from OpenSSL import SSL, crypto

from brski.pki import load_der_cert

__all__ = [
    "RFC9266_EXPORTER_LABEL",
    "TLS_EXTRA_KEYS",
    "PeerVerification",
    "ProtocolFactory",
    "TlsExporter",
    "TlsProtocol",
    "TlsTransport",
]

log = logging.getLogger(__name__)

TlsExporter = Callable[[bytes, int, "bytes | None"], bytes]
ProtocolFactory = Callable[[], asyncio.Protocol]

# RFC 9266 section 2: label for the tls-exporter channel binding, 32 bytes, empty context.
RFC9266_EXPORTER_LABEL = b"EXPORTER-Channel-Binding"

# Keys answered by TlsTransport.get_extra_info; anything else is passed through to
# the TCP transport ("peername", "sockname", "socket", ...).
TLS_EXTRA_KEYS = frozenset(
    {
        "peercert",  # DER bytes of the client's leaf, or None
        "peercert_chain",  # list[bytes] of DER, leaf first, as the client sent it ([] if none)
        "peercert_x509",  # the same chain as cryptography certificates, a tuple (() if none)
        "peer_verified",  # bool: OpenSSL accepted the chain against client_trust_pem
        "peer_verify_error",  # str | None: first verification failure OpenSSL reported
        "tls_version",  # "TLSv1.3", "TLSv1.2"
        "cipher",  # (name, protocol version, secret bits), the shape ssl.SSLObject.cipher() has
        "alpn_protocol",  # "http/1.1" or None
        "tls_exporter",  # TlsExporter: (label, length, context) -> bytes (RFC 5705 / 8446 7.5)
        "tls_unique",  # RFC 5929 tls-unique for TLS 1.2 (the client's Finished), None on TLS 1.3
        "sslcontext",  # the OpenSSL.SSL.Context (not an ssl.SSLContext; truthy so aiohttp says https)
        "ssl_object",  # always None: there is no ssl.SSLObject
        "tls_connection",  # the OpenSSL.SSL.Connection, for read-only inspection
    }
)

_PEER_KEYS = frozenset({"peercert", "peercert_chain", "peer_verified", "peer_verify_error"})

_BIO_READ_SIZE = 65536  # one read of the outgoing BIO (pyOpenSSL does not zero the buffer)
_RECV_SIZE = 65536  # one SSL_read; a TLS record carries at most 16 KiB anyway
_DELIVER_SIZE = 65536  # plaintext handed to the inner protocol per data_received call
_WRITE_CHUNK = 262144  # plaintext encrypted before the outgoing BIO is drained


@dataclass(kw_only=True)
class PeerVerification:
    """Per-connection record a verify callback fills in (the server's:
    :mod:`brski_web.tls_context`) and :data:`TLS_EXTRA_KEYS` report.

    Kept apart from the protocol object so the SSL connection's app data does not
    form a reference cycle with the protocol.
    """

    first_error: str | None = None


# --- transport the inner protocol sees -----------------------------------------------


class TlsTransport(asyncio.Transport):
    """The plaintext side of one TLS connection, as the inner protocol sees it.

    Every call is delegated to the owning :class:`TlsProtocol`, which keeps
    the single source of truth about the connection's state.
    """

    def __init__(self, owner: TlsProtocol) -> None:
        super().__init__()
        self._owner = owner

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._owner._extra_info(name, default)

    def is_closing(self) -> bool:
        return self._owner._state is not _State.OPEN

    def close(self) -> None:
        self._owner._close()

    def abort(self) -> None:
        self._owner._abort()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._owner._write(data)

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        self._owner._write(b"".join(list_of_data))

    def can_write_eof(self) -> bool:
        # A TLS half-close would need a close_notify the peer treats as full close.
        return False

    def write_eof(self) -> None:
        raise NotImplementedError("TLS transport cannot half-close")

    def pause_reading(self) -> None:
        self._owner._pause_reading()

    def resume_reading(self) -> None:
        self._owner._resume_reading()

    def is_reading(self) -> bool:
        return self._owner._state is _State.OPEN and not self._owner._app_paused

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        # Only ciphertext is buffered (in the TCP transport); limits apply there.
        self._owner._raw_transport().set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:
        return self._owner._raw_transport().get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._owner._raw_transport().get_write_buffer_limits()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._owner._inner = protocol  # type: ignore[assignment]

    def get_protocol(self) -> asyncio.BaseProtocol:
        inner = self._owner._inner
        assert inner is not None
        return inner


class _State(enum.Enum):
    HANDSHAKE = "handshake"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


# --- the protocol the TCP transport sees ------------------------------------------------


class TlsProtocol(asyncio.Protocol):
    """One TCP connection: TLS on the outside, *inner_factory()* inside.

    The memory-BIO mechanics both sides share. The inner protocol is only
    created after a successful handshake, so a failed or timed-out handshake
    never reaches the application. Subclasses say which side they are
    (:meth:`_new_connection`) and what a failed handshake means to them.
    """

    def __init__(
        self,
        context: SSL.Context,
        inner_factory: ProtocolFactory,
        *,
        handshake_timeout: float = 10.0,
        live: set[TlsProtocol] | None = None,
    ) -> None:
        self._context = context
        # The server's open connections, handshaking ones included (a
        # stopping worker waits for them: brski_web.serve).
        self._live = live
        self._inner_factory = inner_factory
        self._handshake_timeout = handshake_timeout
        self._state = _State.HANDSHAKE
        self._raw: asyncio.Transport | None = None
        self._conn: SSL.Connection | None = None
        self._inner: asyncio.Protocol | None = None
        self._transport: TlsTransport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._verification = PeerVerification()
        self._app_paused = False  # the inner protocol asked us to stop delivering
        self._write_paused = False  # the TCP transport asked us to stop writing
        self._pump_scheduled = False
        # Set by a client between its handshake and its first write (see
        # brski_tls.client): a read does not send what the handshake left behind.
        self._hold_output = False
        self._extra: dict[str, Any] = {}

    # -- asyncio.Protocol, called by the TCP transport --

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport: asyncio's own, or an event loop's that implements the
        # same interface without deriving from asyncio.Transport (uvloop's
        # TCPTransport, which the pledge fleet runs on).
        self._raw = cast(asyncio.Transport, transport)
        if self._live is not None:
            self._live.add(self)
        conn = self._new_connection()
        conn.set_app_data(self._verification)
        self._conn = conn
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._handshake_timeout, self._handshake_timed_out)

    def _new_connection(self) -> SSL.Connection:
        """The OpenSSL connection for this TCP connection, in accept or connect state."""
        raise NotImplementedError

    def data_received(self, data: bytes) -> None:
        if self._state in (_State.CLOSING, _State.CLOSED) or self._conn is None:
            return
        try:
            self._conn.bio_write(data)
        except SSL.Error as exc:
            self._fatal("bio_write failed", exc)
            return
        if self._state is _State.HANDSHAKE:
            self._do_handshake()
        else:
            self._pump()

    def eof_received(self) -> bool:
        # A TCP FIN without close_notify: deliver what was decrypted, then close,
        # as the stdlib's SSL transport does (TLS has no half-close).
        if self._state is _State.HANDSHAKE:
            log.debug("TLS handshake: peer %s closed the connection", self._peername())
            self._cancel_timer()
            return False
        if self._state is _State.OPEN:
            # No more ciphertext will come to resume a paused reader, so hand over
            # what is already buffered (at most one socket read) despite the pause.
            self._pump(ignore_pause=True)
            if self._state is _State.OPEN and self._inner is not None:
                self._inner.eof_received()
            self._close()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self._live is not None:
            self._live.discard(self)
        self._cancel_timer()
        self._state = _State.CLOSED
        inner, self._inner = self._inner, None
        # The plaintext transport points back at this protocol: dropping it here
        # frees the connection (OpenSSL's SSL object and buffers, the sockets)
        # as soon as the last reference goes, instead of at the cyclic
        # collector's next full pass, which in a busy server came once per
        # several hundred connections and let their memory pile up.
        self._transport = None
        if self._conn is not None:
            self._conn.set_app_data(None)
        if inner is not None:
            inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._write_paused = True
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._inner is not None:
            self._inner.resume_writing()

    # -- handshake --

    def _do_handshake(self) -> None:
        assert self._conn is not None
        try:
            self._conn.do_handshake()
        except SSL.WantReadError:
            self._flush()
            return
        except Exception as exc:  # SSL.Error, or a callback's exception re-raised by pyOpenSSL
            self._cancel_timer()
            self._flush()  # the alert, if OpenSSL produced one
            self._state = _State.CLOSED
            self._handshake_failed(exc)
            if self._raw is not None:
                self._raw.close()
            return
        self._cancel_timer()
        self._flush_handshake()
        if self._raw is None or self._raw.is_closing():
            # The peer left before our post-handshake flight (TLS 1.3 tickets)
            # could be written: s_time, scanners, health checks.  The TCP
            # transport has already scheduled connection_lost; an inner
            # protocol started now would see it before its first step (aiohttp
            # logged an ERROR with a traceback for each such connection).
            self._state = _State.CLOSED
            log.debug("TLS handshake: peer %s left right after it", self._peername())
            return
        self._state = _State.OPEN
        # aiohttp asks for "sslcontext" on every connection (truthy means https).
        self._extra.update(sslcontext=self._context, ssl_object=None, tls_connection=self._conn)
        self._transport = TlsTransport(self)
        try:
            inner = self._inner_factory()
            self._inner = inner
            inner.connection_made(self._transport)
        except Exception:
            log.exception("inner protocol failed to start for %s", self._peername())
            self._abort()
            return
        if self._write_paused:
            inner.pause_writing()
        self._handshake_succeeded()
        self._pump()  # the client's first request may share a segment with its Finished

    def _flush_handshake(self) -> None:
        """Hook: send what the completed handshake left in the outgoing BIO (a
        server's session tickets; a TLS 1.3 client's last flight)."""
        self._flush()

    def _handshake_succeeded(self) -> None:
        """Hook: the inner protocol is connected (a client wakes its opener)."""

    def _handshake_failed(self, exc: BaseException, *, event: str = "tls-handshake-refused") -> None:
        """Hook: the handshake failed or timed out."""

    def _handshake_timed_out(self) -> None:
        self._timer = None
        if self._state is _State.HANDSHAKE:
            self._state = _State.CLOSED
            self._handshake_failed(TimeoutError("TLS handshake timed out"), event="tls-handshake-timeout")
            if self._raw is not None:
                self._raw.abort()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # -- reading --

    def _pump(self, *, ignore_pause: bool = False) -> None:
        """Decrypt what the incoming BIO holds and feed it to the inner protocol.

        Stops as soon as the inner protocol pauses reading; the rest waits in
        OpenSSL's buffers until :meth:`_resume_reading`.
        """
        conn = self._conn
        if conn is None:
            return
        peer_closed = False
        failure: Exception | None = None
        chunks: list[bytes] = []
        size = 0
        while self._state is _State.OPEN and (ignore_pause or not self._app_paused):
            try:
                chunk = conn.recv(_RECV_SIZE)
            except SSL.WantReadError:
                break
            except SSL.ZeroReturnError:
                peer_closed = True
                break
            except SSL.Error as exc:
                failure = exc
                break
            chunks.append(chunk)
            size += len(chunk)
            if size >= _DELIVER_SIZE:
                self._deliver(chunks)
                chunks, size = [], 0
        if chunks:
            self._deliver(chunks)
        if not self._hold_output:  # held: it leaves with the next write or the release
            self._flush()  # SSL_read may have queued a KeyUpdate reply or an alert
        if failure is not None:
            self._fatal("TLS read failed", failure)
        elif peer_closed and self._state is _State.OPEN:
            if self._inner is not None:
                self._inner.eof_received()
            self._close()

    def _deliver(self, chunks: list[bytes]) -> None:
        if self._inner is None or self._state is not _State.OPEN:
            return
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self._inner.data_received(data)

    def _pause_reading(self) -> None:
        if self._app_paused:
            return
        self._app_paused = True
        if self._raw is not None and not self._raw.is_closing():
            self._raw.pause_reading()

    def _resume_reading(self) -> None:
        if not self._app_paused:
            return
        self._app_paused = False
        if self._raw is not None and not self._raw.is_closing():
            self._raw.resume_reading()
        # Plaintext may already sit in OpenSSL's buffers with no more socket data
        # coming to trigger data_received; deliver it from a fresh loop iteration
        # rather than re-entering the inner protocol from inside its own call.
        if not self._pump_scheduled:
            self._pump_scheduled = True
            asyncio.get_running_loop().call_soon(self._scheduled_pump)

    def _scheduled_pump(self) -> None:
        self._pump_scheduled = False
        if self._state is _State.OPEN and not self._app_paused:
            self._pump()

    # -- writing and closing --

    def _write(self, data: bytes | bytearray | memoryview) -> None:
        if self._state is not _State.OPEN or self._conn is None:
            return  # like asyncio's transports: writes after close are dropped
        self._hold_output = False
        view = memoryview(data).cast("B")
        total = len(view)
        offset = 0
        try:
            while offset < total:
                end = min(offset + _WRITE_CHUNK, total)
                while offset < end:  # memory BIOs never block, but PARTIAL_WRITE is on
                    offset += self._conn.send(view[offset:end])
                self._flush()
        except SSL.Error as exc:
            self._fatal("TLS write failed", exc)

    def _flush(self) -> None:
        """Move every pending ciphertext byte from OpenSSL to the TCP transport."""
        conn, raw = self._conn, self._raw
        if conn is None:
            return
        out: list[bytes] = []
        while True:
            try:
                chunk = conn.bio_read(_BIO_READ_SIZE)
            except SSL.Error:  # WantReadError: nothing (more) to send
                break
            out.append(chunk)
            if len(chunk) < _BIO_READ_SIZE:
                # A memory BIO hands over all it holds up to the size asked, so
                # it is empty now: no second read only to raise WantReadError.
                break
        if out and raw is not None and not raw.is_closing():
            raw.write(out[0] if len(out) == 1 else b"".join(out))

    def _close(self) -> None:
        """Graceful close: send close_notify, let the TCP transport drain, then FIN."""
        if self._state in (_State.CLOSING, _State.CLOSED):
            return
        self._state = _State.CLOSING
        self._cancel_timer()
        self._hold_output = False
        if self._conn is not None:
            try:
                self._conn.shutdown()
            except SSL.Error:
                pass
            self._flush()
        if self._raw is not None:
            self._raw.close()

    def _abort(self) -> None:
        self._state = _State.CLOSED
        self._cancel_timer()
        if self._raw is not None:
            self._raw.abort()

    def _fatal(self, what: str, exc: Exception) -> None:
        log.debug("%s for %s: %r", what, self._peername(), exc)
        self._hold_output = False
        self._flush()
        self._abort()

    def _raw_transport(self) -> asyncio.Transport:
        assert self._raw is not None
        return self._raw

    def _peername(self) -> Any:
        return None if self._raw is None else self._raw.get_extra_info("peername")

    # -- extra info --

    def _extra_info(self, name: str, default: Any) -> Any:
        if name not in TLS_EXTRA_KEYS:
            return default if self._raw is None else self._raw.get_extra_info(name, default)
        if name not in self._extra:
            self._compute_extra(name)
        return self._extra.get(name, default)

    def _compute_extra(self, name: str) -> None:
        """Fill the TLS facts on first use: most requests never look at them."""
        conn = self._conn
        if conn is None:
            return
        if name in _PEER_KEYS:
            self._compute_peer()
            return
        if name == "peercert_x509":  # parsed only for who asks (a server's identity; not the pledge)
            if "peercert_chain" not in self._extra:
                self._compute_peer()
            # One object per distinct DER (brski.pki.load_der_cert), the one the
            # CMS layer hands out for the same bytes: a pledge's IDevID in its
            # TLS chain and in its voucher-request's SignedData, the issuing CA
            # every pledge of a manufacturer sends, the registrar's RA
            # certificate at the MASA.  Parsed once, and what is derived from
            # the object (DER, SPKI hash, names: brski.certfacts) is computed
            # once.  A different DER is a different object: nothing of one
            # client's certificate reaches another's.
            self._extra[name] = tuple(load_der_cert(d) for d in self._extra["peercert_chain"])
            return
        # Each fact on its own: a server's identity asks for the version on every
        # new connection, and the cipher, ALPN and exporter questions cost five
        # more calls into OpenSSL that most connections never need.
        if name == "tls_version":
            self._extra[name] = conn.get_protocol_version_name()
        elif name == "cipher":
            self._extra[name] = (conn.get_cipher_name(), conn.get_cipher_version(), conn.get_cipher_bits())
        elif name == "alpn_protocol":
            alpn = conn.get_alpn_proto_negotiated()
            self._extra[name] = alpn.decode("ascii", "replace") if alpn else None
        elif name == "tls_exporter":
            self._extra[name] = _exporter_for(conn)
        elif name == "tls_unique":
            # RFC 5929: the first Finished of the handshake; with resumption off that is
            # the client's.  Undefined for TLS 1.3 (RFC 9266 replaces it there).
            version = self._extra_info("tls_version", None)
            self._extra[name] = conn.get_peer_finished() if version == "TLSv1.2" else None

    def _compute_peer(self) -> None:
        """The peer's chain, once per connection (renegotiation is off, so it
        cannot change), as the DER OpenSSL holds; ``peercert_x509`` parses it
        once for whoever asks.  Converting through ``as_cryptography`` and back
        with ``public_bytes`` (which re-encodes a certificate) cost about three
        times as much."""
        conn = self._conn
        assert conn is not None
        leaf = conn.get_peer_certificate()
        der_chain: list[bytes] = []
        if leaf is not None:
            leaf_der = crypto.dump_certificate(crypto.FILETYPE_ASN1, leaf)
            sent = conn.get_peer_cert_chain() or []
            der_chain = [crypto.dump_certificate(crypto.FILETYPE_ASN1, c) for c in sent]
            # On a server, OpenSSL's peer chain omits the leaf; put it back in front.
            if not der_chain or der_chain[0] != leaf_der:
                der_chain.insert(0, leaf_der)
        error = self._verification.first_error if leaf is not None else None
        self._extra["peercert"] = der_chain[0] if der_chain else None
        self._extra["peercert_chain"] = der_chain
        self._extra["peer_verified"] = leaf is not None and error is None
        self._extra["peer_verify_error"] = error


def _exporter_for(conn: SSL.Connection) -> TlsExporter:
    """Bind RFC 5705 / RFC 8446 7.5 keying-material export to one connection.

    For RFC 9266 call it as ``exporter(RFC9266_EXPORTER_LABEL, 32, None)`` on TLS 1.3
    (an absent and an empty context are the same there).  On TLS 1.2 RFC 9266
    requires the extended master secret, which pyOpenSSL cannot report, so callers
    should only rely on it when ``tls_version`` is "TLSv1.3".
    """

    def export(label: bytes, length: int, context: bytes | None = None) -> bytes:
        return conn.export_keying_material(label, length, context)

    return export
