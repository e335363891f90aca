"""The pledge HTTP client's receiving side: the protocol under the TLS transport
(:class:`Link`) and one response's parser callbacks (:class:`ResponseSink`).

Split from :mod:`pledge_sim.http` (the connection, its requests and its clock),
which is the only user.  The response is parsed in ``data_received`` as the TLS
layer hands the plaintext over, and the request's task is woken once, when the
response is whole (RFC 9112 6.3 says where it ends: Content-Length, chunked, or
the connection's close).
"""

from __future__ import annotations

import asyncio

import httptools
from OpenSSL import SSL

from brski import errors

__all__ = ["IDLE_BUFFER", "MAX_HEADER_BYTES", "Link", "ResponseSink", "closed_error", "malformed_error"]

MAX_HEADER_BYTES = 64 * 1024
# Plaintext kept while no response is being read (a reply's early bytes, or a
# stray); beyond this the connection stops reading until a request reads it.
IDLE_BUFFER = 65536


def closed_error(detail: str) -> errors.LocalError:
    return errors.LocalError(detail, check="http.connection-closed")


def malformed_error(detail: str) -> errors.MalformedInput:
    return errors.MalformedInput(detail, check="http.malformed-response")


class Link(asyncio.Protocol):
    """The plaintext side of the connection, as the TLS layer delivers it.

    Bytes go straight to the parser of the response being read
    (:meth:`read`); bytes that arrive while none is (the start of a reply
    the server sent early, or a stray) wait for the next read, as a stream
    reader's buffer kept them.  Nothing here points back at the
    :class:`HttpConnection`, and the transport is dropped when the
    connection is lost: no reference cycle outlives a connection.
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._pending = bytearray()
        self._eof = False  # the server ended its side (EOF, close_notify) or the connection is gone
        self._lost = False
        self._failure: BaseException | None = None  # why the connection was lost, if it failed
        self._reading: tuple[ResponseSink, asyncio.Future[bool]] | None = None
        self._watching: asyncio.Future[bool] | None = None  # next_event's
        self._drain_waiter: asyncio.Future[None] | None = None
        self._lost_waiter: asyncio.Future[None] | None = None
        self._write_paused = False
        self._read_paused = False

    # -- asyncio.Protocol, called by the TLS transport --

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self._reading is not None:
            self._feed(data)
            return
        self._pending += data
        if self._watching is not None and not self._watching.done():
            self._watching.set_result(False)
        if len(self._pending) > IDLE_BUFFER and self.transport is not None and not self._read_paused:
            self._read_paused = True
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        self._eof = True
        self._at_eof()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = self._lost = True
        self.transport = None
        if exc is not None and self._failure is None:
            self._failure = exc
        self._at_eof()
        for waiter in (self._drain_waiter, self._lost_waiter):
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)

    # -- what the HttpConnection asks --

    def is_open(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    def write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)  # after a close, dropped as by asyncio's transports

    async def drain(self) -> None:
        """Wait while the TCP transport's buffer is over its limit (a peer that reads slowly)."""
        if self._write_paused and not self._lost:
            self._drain_waiter = asyncio.get_running_loop().create_future()
            try:
                await self._drain_waiter
            finally:
                self._drain_waiter = None
        if self._lost:
            raise self._lost_error()

    def read(self, sink: ResponseSink) -> asyncio.Future[bool]:
        """A future for one response fed to ``sink``: True if it ended at EOF
        (a close-delimited body), False if it completed by its framing."""
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._reading = (sink, done)
        if self._pending:
            data = bytes(self._pending)
            self._pending.clear()
            if self._read_paused and self.transport is not None:
                self._read_paused = False
                self.transport.resume_reading()
            self._feed(data)
        if self._eof and not done.done():
            self._at_eof()
        return done

    def read_over(self) -> None:
        """The read's caller is done with it (answered, failed or cancelled): bytes
        that arrive from now on wait for the next read."""
        self._reading = None

    def next_event(self) -> asyncio.Future[bool]:
        """A future: True when the server ends the connection (EOF, close_notify,
        reset), False when more bytes arrive first."""
        watching: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        if self._pending:
            watching.set_result(False)
        elif self._eof:
            watching.set_result(True)
        else:
            self._watching = watching
        return watching

    def fail(self, exc: BaseException) -> None:
        """Fail the read in progress (the request's deadline passed)."""
        if self._reading is not None and not self._reading[1].done():
            self._reading[1].set_exception(exc)

    def close(self) -> bool:
        """Close (TLS close_notify, then FIN); whether nothing was left to send."""
        transport = self.transport
        if transport is None:
            return True
        transport.close()
        return transport.get_write_buffer_size() == 0

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    async def wait_lost(self) -> None:
        if not self._lost:
            self._lost_waiter = asyncio.get_running_loop().create_future()
            await self._lost_waiter

    # -- inside --

    def _feed(self, data: bytes) -> None:
        assert self._reading is not None
        sink, done = self._reading
        if done.done():  # answered or failed, its caller not yet resumed: keep for the next read
            self._pending += data
            return
        try:
            sink.feed(data)
        except Exception as exc:  # handed to the request, which maps it
            done.set_exception(exc)
            return
        if sink.complete:
            done.set_result(False)

    def _at_eof(self) -> None:
        if self._watching is not None and not self._watching.done():
            self._watching.set_result(True)
        if self._reading is None:
            return
        sink, done = self._reading
        if done.done():
            return
        if self._failure is not None:
            done.set_exception(self._lost_error())
        elif sink.ends_at_eof():
            done.set_result(True)  # a close-delimited body (RFC 9112 6.3 rule 8) ends here
        else:
            done.set_exception(closed_error("server closed the connection"))

    def _lost_error(self) -> BaseException:
        failure = self._failure
        if isinstance(failure, (OSError, SSL.Error)):
            return failure
        return ConnectionResetError(f"connection lost: {failure!r}" if failure is not None else "connection lost")


class ResponseSink:
    """httptools' callbacks for one response: what it says, within the limits.

    A limit crossed inside a callback is kept in ``refusal`` (httptools wraps
    callback exceptions in its own) and raised by the caller.  An interim 1xx
    answer (RFC 9110 15.2) is dropped and the real one that follows is kept.
    """

    def __init__(self, max_body: int) -> None:
        self.max_body = max_body
        self.parser: httptools.HttpResponseParser | None = None
        self.status: int | None = None
        self.reason = bytearray()
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = bytearray()
        self.head_size = 0
        self.headers_done = False
        self.complete = False
        self.trailing = False
        self.keep_alive = False
        self.refusal: errors.BrskiError | None = None
        self._framed = False  # Content-Length or chunked: the body does not end at EOF
        self._fed = 0

    def feed(self, data: bytes) -> None:
        """Parse the next bytes of the response; raise what is wrong with it."""
        assert self.parser is not None
        self._fed += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if self.refusal is not None:
                raise self.refusal from exc
            raise
        except httptools.HttpParserUpgrade as exc:
            raise malformed_error("the server switched protocols") from exc
        if self.refusal is not None:
            raise self.refusal
        if not self.headers_done and self._fed > MAX_HEADER_BYTES:
            raise errors.PayloadTooLarge("response header too large", check="http.response-too-large")
        if self.complete and self.trailing:
            raise malformed_error("more data after the response than was asked for")

    def _refuse(self, exc: errors.BrskiError) -> None:
        self.refusal = exc
        raise exc

    def on_message_begin(self) -> None:
        if self.complete:
            self.trailing = True
            return
        self.reason.clear()
        self.headers.clear()
        self.body.clear()
        self.head_size = 0
        self.headers_done = self._framed = False

    def on_status(self, data: bytes) -> None:
        if self.complete:
            return
        self.reason += data
        self._count(len(data))

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.complete:
            return
        self._count(len(name) + len(value) + 4)
        if not self.headers_done:  # trailers of a chunked body are not headers
            self.headers.append((name, value))

    def _count(self, n: int) -> None:
        self.head_size += n
        if self.head_size > MAX_HEADER_BYTES:
            self._refuse(errors.PayloadTooLarge("response header too large", check="http.response-too-large"))

    def on_headers_complete(self) -> None:
        if self.complete:
            return
        assert self.parser is not None
        self.headers_done = True
        self.status = self.parser.get_status_code()
        for name, value in self.headers:
            lname = name.lower()
            if lname == b"content-length":
                self._framed = True
                if int(value) > self.max_body:
                    self._refuse(
                        errors.PayloadTooLarge(
                            f"response body of {int(value)} bytes exceeds {self.max_body}",
                            check="http.response-too-large",
                        )
                    )
            elif lname == b"transfer-encoding":
                self._framed = True

    def on_body(self, data: bytes) -> None:
        if self.complete:
            return
        self.body += data
        if len(self.body) > self.max_body:
            self._refuse(errors.PayloadTooLarge("response body too large", check="http.response-too-large"))

    def on_message_complete(self) -> None:
        if self.complete:
            return
        if self.status is not None and 100 <= self.status < 200:
            self.status = None  # interim: the final response follows
            return
        assert self.parser is not None
        # Asked here: llhttp forgets the message's Connection header once it ends.
        self.keep_alive = self.parser.should_keep_alive()
        self.complete = True

    def ends_at_eof(self) -> bool:
        """EOF completes a response whose body is delimited by the close itself."""
        if not self.headers_done or self._framed or self.status is None:
            return False
        self.complete = True
        return True
