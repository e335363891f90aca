"""The pledge's HTTP/1.1 client: httptools (llhttp) over exactly one TLS connection.

Why not aiohttp: RFC 8995 section 5.1 makes the pledge accept the
registrar's certificate *provisionally*, put that exact certificate in the
voucher-request, validate it later against the voucher (5.6.2), and then run
EST on the *same* connection (5.9: "use of HTTP persistent connections
simplifies the pledge state machine").  That needs the peer certificate before
the first request and a guarantee that no request silently lands on a
different connection, neither of which a pooled client gives.

Why httptools rather than h11: h11 did the framing correctly but cost about
110 us of CPU per exchange (request validation and its state machine on both
sides, measured with a 1 KB body), six exchanges per onboarding, a twentieth
of a fleet's CPU; llhttp parses the same response in about 3 us.  It parses
the response (status line, headers, Content-Length, chunked, close-delimited,
interim 1xx); the request head, whose every byte this module chooses, is
written here and its fields checked (RFC 9110 5.1 / 5.5).

Why a protocol (:class:`pledge_sim.http_link.Link`) rather than asyncio streams under it: the
response is parsed in ``data_received`` as the TLS layer hands the plaintext
over, and the request's task is woken once, when the response is complete;
a ``StreamReader`` buffered each chunk, woke the task per chunk, and a
``StreamWriter``'s drain and close added their own steps (client CPU per
keep-alive exchange measured in ``docs/performance.md``, "The pledge
simulator, fourth part").

Rules this client keeps:

* one connection; after ``Connection: close``, a close-delimited body or EOF
  it refuses further requests until the caller explicitly calls
  :meth:`HttpConnection.reconnect` (a new TLS session may present a different
  certificate, which the caller must check); a caller that must see the
  server end the connection (RFC 8995 5.2) asks ``hold_open=True`` and then
  :meth:`HttpConnection.peer_closed`;
* response heads capped at 64 KiB and bodies at ``max_body`` (1 MiB): the peer
  is unauthenticated until the voucher is verified (RFC 8995 5.1: "received
  data ... MUST be considered untrusted");
* a timeout per request covering send and receive, kept by one timer per
  connection that moves lazily (:meth:`HttpConnection._arm`): a fleet makes
  seven requests an onboarding and an ``asyncio.timeout`` each, entered and
  left, cost about 7 us (a timer scheduled and cancelled) for a deadline that
  almost never fires;
* request bodies with Content-Length or, on request, chunked (for interop
  testing of registrars).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import httptools
from OpenSSL import SSL

from brski import errors
from brski_tls.client import ClientCredentials, open_tls
from pledge_sim.http_link import Link, ResponseSink, closed_error, malformed_error

__all__ = ["MAX_BODY", "Headers", "HttpConnection", "Response"]

MAX_BODY = 1 << 20
CHUNK_SIZE = 4096
USER_AGENT = "brski-pledge-sim/0.1"
# RFC 9110 5.6.2 token (method, field name); a field value of visible ASCII, spaces and
# tabs (5.5: no CR, LF, NUL or other controls); an origin-form target (RFC 9112 3.2.1).
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_FIELD_VALUE = re.compile(r"[\t\x20-\x7e]*")
_TARGET = re.compile(r"/[\x21-\x7e]*")
_OWS = " \t"  # optional whitespace around a field value (RFC 9110 5.6.3)


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
        self._link: Link | None = None
        self._keep_alive = False  # the last response left the connection reusable
        self.peer_cert_der: bytes | None = None
        self.tls_version: str | None = None
        self.connections_opened = 0
        self._peer_eof = False
        # The request clock: the deadline of the request in flight (None when idle)
        # and the one timer that watches it (see _arm).
        self._deadline: float | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self._timed_out = False

    @property
    def is_open(self) -> bool:
        return self._link is not None and self._link.is_open()

    @property
    def authority(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == 443 else f"{host}:{self.port}"

    async def connect(self) -> bytes:
        """Open the TLS connection and return the server's end-entity certificate (DER)."""
        if self.is_open:
            raise errors.LocalError("already connected", check="http.already-connected")
        link = Link()
        try:
            async with asyncio.timeout(self.timeout):
                proto = await open_tls(
                    self.host,
                    self.port,
                    link,
                    credentials=self._credentials,
                    server_hostname=self._server_hostname or None,
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
            link.close()
            raise errors.LocalError("server presented no certificate", check="http.no-peer-cert")
        self._link = link
        self._peer_eof = self._timed_out = False
        self._keep_alive = True
        self.peer_cert_der = der
        self.tls_version = proto.tls_version
        self.connections_opened += 1
        return bytes(der)

    async def reconnect(self) -> bytes:
        """Close (if needed) and open a new TLS connection; the caller re-checks the cert."""
        await self.close()
        return await self.connect()

    async def close(self) -> None:
        link, self._link = self._link, None
        self._keep_alive = False
        self._deadline = None
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if link is None:
            return
        drained = link.close()
        try:
            if drained:
                # Nothing left to send: the TCP transport closes now and reports it
                # in the next loop iteration, so no timer is needed to bound the wait.
                await link.wait_lost()
                return
            async with asyncio.timeout(2):  # a peer that reads nothing cannot hold us
                await link.wait_lost()
        except TimeoutError:
            pass

    # -- the request clock --

    def _arm(self) -> None:
        """Start the clock of one request (send and receive): ``timeout`` seconds.

        One timer per connection, scheduled at the first request's deadline; when
        it fires early for a later request (whose deadline moved on) it is
        scheduled again, and when no request is in flight it lapses until the
        next one.  A deadline that passes aborts the connection and fails the
        read in progress with TimeoutError (RFC 9112 9.5: a client that times out
        closes the connection).
        """
        loop = asyncio.get_running_loop()
        self._deadline = loop.time() + self.timeout
        if self._watchdog is None:
            self._watchdog = loop.call_at(self._deadline, self._watch)

    def _watch(self) -> None:
        self._watchdog = None
        if self._deadline is None:
            return  # idle: the next request starts the clock again
        loop = asyncio.get_running_loop()
        if loop.time() < self._deadline:
            self._watchdog = loop.call_at(self._deadline, self._watch)
            return
        self._timed_out = True
        if self._link is not None:
            self._link.fail(TimeoutError())  # wakes a read in progress
            self._link.abort()  # and a drain waiting on a peer that reads nothing

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
        if not self.is_open or not self._keep_alive:
            raise closed_error("connection is closed; reconnect() first")
        if not _TARGET.fullmatch(path):
            raise errors.LocalError(f"bad request path {path!r}", check="http.bad-path")
        # A HEAD answer's framing differs (RFC 9110 9.3.2); the pledge never asks one.
        if method == "HEAD" or not _TOKEN.fullmatch(method):
            raise errors.LocalError(f"bad request method {method!r}", check="http.bad-method")
        head = self._request_head(method, path, headers or {}, body, chunked)
        self._arm()
        try:
            await self._send(head, body, chunked)
            return await self._receive(hold_open=hold_open)
        except TimeoutError as exc:
            await self.close()
            raise self._timeout_error(method, path) from exc
        except (OSError, SSL.Error) as exc:
            timed_out = self._timed_out  # the clock aborted the connection under a drain
            await self.close()
            if timed_out:
                raise self._timeout_error(method, path) from exc
            raise closed_error(f"{method} {path}: connection lost: {exc!r}") from exc
        except httptools.HttpParserError as exc:
            await self.close()
            raise malformed_error(f"{method} {path}: {exc}") from exc
        except errors.BrskiError:
            await self.close()
            raise
        finally:
            self._deadline = None

    def _timeout_error(self, method: str, path: str) -> errors.LocalError:
        return errors.LocalError(f"{method} {path} timed out after {self.timeout} s", check="http.timeout")

    # -- sending --

    def _request_head(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes, chunked: bool
    ) -> bytes:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.authority}"]
        given = set()
        for key, value in headers.items():
            if not _TOKEN.fullmatch(key) or not _FIELD_VALUE.fullmatch(value):
                raise errors.LocalError(f"bad header {key!r}", check="http.bad-header")
            given.add(key.lower())
            lines.append(f"{key}: {value.strip(_OWS)}")
        if given & {"host", "content-length", "transfer-encoding"}:
            # The framing is this module's to write: two of them would be request smuggling.
            raise errors.LocalError("Host and body framing are set by the client", check="http.bad-header")
        if "user-agent" not in given:
            lines.append(f"User-Agent: {USER_AGENT}")
        if chunked:
            lines.append("Transfer-Encoding: chunked")
        elif body or method in ("POST", "PUT"):
            lines.append(f"Content-Length: {len(body)}")
        try:
            return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")
        except UnicodeEncodeError as exc:
            raise errors.LocalError(f"non-ASCII request head: {exc}", check="http.bad-header") from exc

    async def _send(self, head: bytes, body: bytes, chunked: bool) -> None:
        link = self._link
        assert link is not None
        if chunked:
            out = [head]
            for start in range(0, len(body), CHUNK_SIZE):
                piece = body[start : start + CHUNK_SIZE]
                out += (b"%x\r\n" % len(piece), piece, b"\r\n")
            out.append(b"0\r\n\r\n")
            link.write(b"".join(out))
        else:
            link.write(head + body)  # one TLS record, one send, for a small request
        await link.drain()

    # -- receiving --

    async def peer_closed(self, *, timeout: float) -> bool:
        """Whether the server ends the connection (EOF or reset) within ``timeout`` s
        of the last response; more bytes, or silence, mean it did not."""
        if self._link is None:
            return self._peer_eof
        try:
            async with asyncio.timeout(timeout):
                return await self._link.next_event()
        except TimeoutError:
            return False
        finally:
            await self.close()

    async def _receive(self, *, hold_open: bool = False) -> Response:
        assert self._link is not None
        sink = ResponseSink(self.max_body)
        parser = httptools.HttpResponseParser(sink)
        sink.parser = parser
        link = self._link
        try:
            eof = await link.read(sink)
        finally:
            link.read_over()
            sink.parser = None  # parser and sink point at each other: no cycle for the GC to find
        assert sink.status is not None
        response = Response(
            status=sink.status,
            reason=bytes(sink.reason).decode("latin-1"),
            headers=Headers([(k.decode("latin-1"), v.decode("latin-1").strip(_OWS)) for k, v in sink.headers]),
            body=bytes(sink.body),
        )
        if not eof and sink.keep_alive:
            return response  # keep-alive: the next request may follow
        self._keep_alive = False
        if eof or not hold_open:
            # Connection: close, HTTP/1.0 or a close-delimited body (which ended at EOF)
            self._peer_eof = eof
            await self.close()
        return response
