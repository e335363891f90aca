"""The pledge's HTTP/1.1 client: h11 over exactly one asyncio TLS stream.

Why not aiohttp: RFC 8995 section 5.1 makes the pledge accept the
registrar's certificate *provisionally*, put that exact certificate in the
voucher-request, validate it later against the voucher (5.6.2), and then run
EST on the *same* connection (5.9: "use of HTTP persistent connections
simplifies the pledge state machine").  That needs the peer certificate before
the first request and a guarantee that no request silently lands on a
different connection, neither of which a pooled client gives.  h11 does the
HTTP/1.1 framing (Content-Length, chunked, close-delimited, interim 1xx,
keep-alive); this module owns the connection and the limits.

Rules this client keeps:

* one connection; after ``Connection: close``, a close-delimited body or EOF
  it refuses further requests until the caller explicitly calls
  :meth:`HttpConnection.reconnect` (a new TLS session may present a different
  certificate, which the caller must check); a caller that must see the
  server end the connection (RFC 8995 5.2) asks ``hold_open=True`` and then
  :meth:`HttpConnection.peer_closed`;
* response heads capped at 64 KiB (h11's ``max_incomplete_event_size``) and
  bodies at ``max_body`` (1 MiB): the peer is unauthenticated until the voucher
  is verified (RFC 8995 5.1: "received data ... MUST be considered untrusted");
* a timeout per request covering send and receive;
* request bodies with Content-Length or, on request, chunked (for interop
  testing of registrars).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import h11
from OpenSSL import SSL

from brski import errors
from brski_tls.client import ClientCredentials, open_tls_connection

__all__ = ["MAX_BODY", "Headers", "HttpConnection", "Response"]

MAX_BODY = 1 << 20
MAX_HEADER_BYTES = 64 * 1024
CHUNK_SIZE = 4096
READ_SIZE = 65536
USER_AGENT = "brski-pledge-sim/0.1"


class Headers(Mapping[str, str]):
    """Case-insensitive, multi-valued header list; ``[name]`` gives the first value."""

    def __init__(self, items: list[tuple[str, str]] | None = None) -> None:
        self._items = list(items or [])

    def __getitem__(self, name: str) -> str:
        lname = name.lower()
        for key, value in self._items:
            if key.lower() == lname:
                return value
        raise KeyError(name)

    def get_all(self, name: str) -> list[str]:
        lname = name.lower()
        return [v for k, v in self._items if k.lower() == lname]

    def __iter__(self) -> Iterator[str]:
        seen: set[str] = set()
        for key, _ in self._items:
            if key.lower() not in seen:
                seen.add(key.lower())
                yield key

    def __len__(self) -> int:
        return len({k.lower() for k, _ in self._items})

    def raw_items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


@dataclass(frozen=True, kw_only=True)
class Response:
    status: int
    reason: str
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""


def _closed(detail: str) -> errors.LocalError:
    return errors.LocalError(detail, check="http.connection-closed")


def _malformed(detail: str) -> errors.MalformedInput:
    return errors.MalformedInput(detail, check="http.malformed-response")


class HttpConnection:
    """One TLS connection to ``host:port`` speaking HTTP/1.1 with keep-alive."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        credentials: ClientCredentials | None,
        server_hostname: str | None = None,
        timeout: float = 30.0,
        max_body: int = MAX_BODY,
    ) -> None:
        self.host = host
        self.port = port
        self._credentials = credentials
        self._server_hostname = server_hostname if server_hostname is not None else host
        self.timeout = timeout
        self.max_body = max_body
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._h11: h11.Connection | None = None
        self.peer_cert_der: bytes | None = None
        self.tls_version: str | None = None
        self.connections_opened = 0
        self._peer_eof = False

    @property
    def is_open(self) -> bool:
        return self._writer is not None and not self._writer.is_closing()

    @property
    def authority(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == 443 else f"{host}:{self.port}"

    async def connect(self) -> bytes:
        """Open the TLS connection and return the server's end-entity certificate (DER)."""
        if self.is_open:
            raise errors.LocalError("already connected", check="http.already-connected")
        try:
            async with asyncio.timeout(self.timeout):
                reader, writer, proto = await open_tls_connection(
                    self.host,
                    self.port,
                    credentials=self._credentials,
                    server_hostname=self._server_hostname or None,
                    limit=MAX_HEADER_BYTES,
                    handshake_timeout=self.timeout,
                )
        except TimeoutError as exc:
            raise errors.LocalError(
                f"TLS connect to {self.authority} timed out", check="http.timeout"
            ) from exc
        except (OSError, SSL.Error) as exc:
            raise errors.LocalError(
                f"cannot connect to {self.authority}: {exc!r}", check="http.connect"
            ) from exc
        der = proto.peer_certificate_der()
        if not der:
            writer.close()
            raise errors.LocalError("server presented no certificate", check="http.no-peer-cert")
        self._reader, self._writer = reader, writer
        self._peer_eof = False
        self._h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEADER_BYTES)
        self.peer_cert_der = der
        self.tls_version = proto.tls_version
        self.connections_opened += 1
        return bytes(der)

    async def reconnect(self) -> bytes:
        """Close (if needed) and open a new TLS connection; the caller re-checks the cert."""
        await self.close()
        return await self.connect()

    async def close(self) -> None:
        writer, self._writer, self._reader, self._h11 = self._writer, None, None, None
        if writer is None:
            return
        writer.close()
        try:
            async with asyncio.timeout(2):
                await writer.wait_closed()
        except (TimeoutError, OSError, SSL.Error):
            pass

    async def request(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
        chunked: bool = False,
        hold_open: bool = False,
    ) -> Response:
        """One request and its response.

        ``hold_open``: do not close our side after a ``Connection: close``
        answer, so that :meth:`peer_closed` can watch the server close it.
        """
        if not self.is_open or self._h11 is None:
            raise _closed("connection is closed; reconnect() first")
        if not path.startswith("/") or any(c in path for c in "\r\n "):
            raise errors.LocalError(f"bad request path {path!r}", check="http.bad-path")
        try:
            async with asyncio.timeout(self.timeout):
                await self._send(method, path, headers or {}, body, chunked)
                return await self._receive(hold_open=hold_open)
        except TimeoutError as exc:
            await self.close()
            raise errors.LocalError(
                f"{method} {path} timed out after {self.timeout} s", check="http.timeout"
            ) from exc
        except (OSError, SSL.Error) as exc:
            await self.close()
            raise _closed(f"{method} {path}: connection lost: {exc!r}") from exc
        except h11.RemoteProtocolError as exc:
            await self.close()
            if exc.error_status_hint == 431:
                raise errors.PayloadTooLarge(
                    "response header too large", check="http.response-too-large"
                ) from exc
            raise _malformed(f"{method} {path}: {exc}") from exc
        except h11.LocalProtocolError as exc:
            await self.close()
            raise errors.LocalError(f"{method} {path}: {exc}", check="http.bad-header") from exc
        except errors.BrskiError:
            await self.close()
            raise

    # -- sending --

    async def _send(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes, chunked: bool
    ) -> None:
        assert self._writer is not None and self._h11 is not None
        items = [("Host", self.authority)]
        given = {k.lower() for k in headers}
        for key, value in headers.items():
            if any(c in key + value for c in "\r\n"):
                raise errors.LocalError(f"bad header {key!r}", check="http.bad-header")
            items.append((key, value))
        if "user-agent" not in given:
            items.append(("User-Agent", USER_AGENT))
        if chunked:
            items.append(("Transfer-Encoding", "chunked"))
        elif body or method in ("POST", "PUT"):
            items.append(("Content-Length", str(len(body))))
        conn = self._h11
        out = [conn.send(h11.Request(method=method, target=path, headers=items))]
        step = CHUNK_SIZE if chunked else max(len(body), 1)
        for start in range(0, len(body), step):
            out.append(conn.send(h11.Data(data=body[start : start + step])))
        out.append(conn.send(h11.EndOfMessage()))
        self._writer.write(b"".join(o for o in out if o))
        await self._writer.drain()

    # -- receiving --

    async def _next_event(self) -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]:
        assert self._reader is not None and self._h11 is not None
        while True:
            event = self._h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            data = await self._reader.read(READ_SIZE)
            if not data and self._h11.their_state is h11.SEND_RESPONSE:
                raise _closed("server closed the connection")
            self._h11.receive_data(data)

    async def peer_closed(self, *, timeout: float) -> bool:
        """Whether the server ends the connection (EOF or reset) within ``timeout`` s
        of the last response; more bytes, or silence, mean it did not."""
        if self._reader is None:
            return self._peer_eof
        try:
            async with asyncio.timeout(timeout):
                data = await self._reader.read(1)
        except TimeoutError:
            return False
        except (OSError, SSL.Error):
            return True
        finally:
            await self.close()
        return data == b""

    async def _receive(self, *, hold_open: bool = False) -> Response:
        while True:
            event = await self._next_event()
            if isinstance(event, h11.InformationalResponse):
                continue  # interim response (RFC 9110 15.2); the real one follows
            if isinstance(event, h11.Response):
                break
            raise _malformed(f"unexpected {type(event).__name__} before the response")
        head = event
        # h11's max_incomplete_event_size bounds a head still arriving; one that
        # arrives whole in a read can be larger, so its size is checked here too.
        size = len(head.reason) + sum(len(k) + len(v) + 4 for k, v in head.headers.raw_items())
        if size > MAX_HEADER_BYTES:
            raise errors.PayloadTooLarge("response header too large", check="http.response-too-large")
        declared = _content_length(head.headers)
        if declared is not None and declared > self.max_body:
            raise errors.PayloadTooLarge(
                f"response body of {declared} bytes exceeds {self.max_body}",
                check="http.response-too-large",
            )
        body = bytearray()
        while True:
            event = await self._next_event()
            if isinstance(event, h11.Data):
                body += event.data
                if len(body) > self.max_body:
                    raise errors.PayloadTooLarge(
                        "response body too large", check="http.response-too-large"
                    )
            elif isinstance(event, h11.EndOfMessage):
                break
            else:
                raise _malformed(f"unexpected {type(event).__name__} inside the response body")
        response = Response(
            status=head.status_code,
            reason=head.reason.decode("latin-1"),
            headers=Headers([(k.decode("latin-1"), v.decode("latin-1")) for k, v in head.headers.raw_items()]),
            body=bytes(body),
        )
        assert self._h11 is not None
        if self._h11.our_state is h11.DONE and self._h11.their_state is h11.DONE:
            self._h11.start_next_cycle()  # keep-alive: the next request may follow
        elif self._h11.their_state is h11.CLOSED or not hold_open:
            # Connection: close, HTTP/1.0 or a close-delimited body (which ended at EOF)
            self._peer_eof = self._h11.their_state is h11.CLOSED
            await self.close()
        return response


def _content_length(headers: Iterable[tuple[bytes, bytes]]) -> int | None:
    """The declared body length, if any (h11 has already checked its syntax)."""
    for name, value in headers:
        if name == b"content-length":
            return int(value)
    return None
