"""The pledge HTTP client's protocol (pledge_sim.http_link.Link) fed by hand, in process.

The response is parsed as the TLS layer hands the plaintext over: the request's
future completes once, when the response is whole, however it was split; bytes
that arrive before a read starts wait for it; EOF ends a close-delimited body and
fails a framed one; a lost connection fails the read with its error.
"""

from __future__ import annotations

import asyncio
import gc
import weakref

import httptools
import pytest

from brski.errors import LocalError
from pledge_sim.http_link import Link, ResponseSink


class _Transport(asyncio.Transport):
    """What the TLS transport offers the inner protocol, recorded."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.closing = False
        self.reading = True

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def get_write_buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True


def _sink() -> ResponseSink:
    sink = ResponseSink(1 << 20)
    sink.parser = httptools.HttpResponseParser(sink)
    return sink


def _link() -> tuple[Link, _Transport]:
    link, transport = Link(), _Transport()
    link.connection_made(transport)
    return link, transport


async def test_a_response_in_pieces_completes_once_when_whole() -> None:
    link, _t = _link()
    sink = _sink()
    done = link.read(sink)
    wakes: list[bool] = []
    done.add_done_callback(lambda f: wakes.append(f.result()))
    for piece in (b"HTTP/1.1 200 OK\r\nContent-Le", b"ngth: 5\r\n\r\nhe", b"llo"):
        assert not done.done()
        link.data_received(piece)
    assert done.done() and not await done
    await asyncio.sleep(0)
    assert wakes == [False]  # one wake-up for three deliveries
    assert (sink.status, bytes(sink.body), sink.keep_alive) == (200, b"hello", True)
    link.read_over()


async def test_bytes_before_the_read_wait_for_it_and_bytes_after_for_the_next() -> None:
    link, _t = _link()
    link.data_received(b"HTTP/1.1 204 No Content\r\n\r\n")  # no read yet: kept
    first = _sink()
    done = link.read(first)
    assert done.done() and not await done and first.status == 204
    link.read_over()
    link.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    second = _sink()
    done = link.read(second)
    assert done.done() and not await done and bytes(second.body) == b"ok"
    link.read_over()


async def test_an_idle_connection_stops_reading_past_its_buffer() -> None:
    link, transport = _link()
    link.data_received(b"x" * 70_000)
    assert not transport.reading
    done = link.read(_sink())
    assert done.done()
    with pytest.raises(httptools.HttpParserError):
        await done  # the stray bytes reach the next read, which refuses them
    assert transport.reading


async def test_eof_ends_a_close_delimited_body_and_fails_a_framed_one() -> None:
    link, _t = _link()
    sink = _sink()
    done = link.read(sink)
    link.data_received(b"HTTP/1.0 200 OK\r\n\r\nuntil eof")
    assert not done.done()
    link.eof_received()
    assert await done and bytes(sink.body) == b"until eof"

    link, _t = _link()
    done = link.read(_sink())
    link.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab")
    link.eof_received()
    with pytest.raises(LocalError) as info:
        await done
    assert info.value.check == "http.connection-closed"


async def test_a_lost_connection_fails_the_read_and_the_drain() -> None:
    link, _t = _link()
    done = link.read(_sink())
    link.pause_writing()
    drain = asyncio.ensure_future(link.drain())
    await asyncio.sleep(0)
    link.connection_lost(ConnectionResetError("reset by peer"))
    with pytest.raises(ConnectionResetError):
        await done
    with pytest.raises(ConnectionResetError):
        await drain
    assert not link.is_open() and link.transport is None


async def test_a_deadline_fails_the_read_and_what_follows_waits() -> None:
    link, _t = _link()
    done = link.read(_sink())
    link.fail(TimeoutError())
    link.data_received(b"HTTP/1.1 200 OK\r\n")  # too late for that read
    with pytest.raises(TimeoutError):
        await done
    link.read_over()
    watching = link.next_event()
    assert watching.done() and await watching is False  # the late bytes are there


async def test_next_event_tells_eof_from_more_bytes() -> None:
    link, _t = _link()
    watching = link.next_event()
    link.eof_received()
    assert await watching is True
    link, _t = _link()
    watching = link.next_event()
    link.data_received(b"x")
    assert await watching is False


async def test_a_lost_link_is_freed_by_reference_counting() -> None:
    link, transport = _link()
    done = link.read(_sink())
    link.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    await done
    link.read_over()
    link.connection_lost(None)
    gc.collect()
    gc.disable()
    try:
        freed = weakref.ref(link)
        del link, done, transport
        assert freed() is None
    finally:
        gc.enable()
