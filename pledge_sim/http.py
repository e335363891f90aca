"""A deliberately small HTTP/1.1 client over exactly one asyncio TLS stream.

Why not aiohttp: RFC 8995 section 5.1 makes the pledge accept the
registrar's certificate *provisionally*, put that exact certificate in the
voucher-request, validate it later against the voucher (5.6.2), and then run
EST on the *same* connection (5.9: "use of HTTP persistent connections
simplifies the pledge state machine").  That needs the peer certificate before
the first request and a guarantee that no request silently lands on a
different connection, neither of which a pooled client gives.

Rules this client keeps:

* one connection; after ``Connection: close``, a close-delimited body or EOF
  it refuses further requests until the caller explicitly calls
  :meth:`HttpConnection.reconnect` (a new TLS session may present a different
  certificate, which the caller must check); a caller that must see the
  server end the connection (RFC 8995 5.2) asks ``hold_open=True`` and then
  :meth:`HttpConnection.peer_closed`;
* Content-Length, chunked and close-delimited response bodies, each capped at
  ``max_body`` (1 MiB): the peer is unauthenticated until the voucher is
  verified (RFC 8995 5.1: "received data ... MUST be considered untrusted");
* a timeout per request covering send and receive;
* request bodies with Content-Length or, on request, chunked (for interop
  testing of registrars).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from OpenSSL import SSL

from brski import errors
from brski_web.tls_client import ClientCredentials, open_tls_connection

__all__ = ["MAX_BODY", "Headers", "HttpConnection", "Response"]

MAX_BODY = 1 << 20
MAX_HEADER_BYTES = 64 * 1024
MAX_HEADERS = 100
CHUNK_SIZE = 4096
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
                reader, writer, _ = await open_tls_connection(
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
        der = writer.get_extra_info("peercert")
        if not der:
            writer.close()
            raise errors.LocalError("server presented no certificate", check="http.no-peer-cert")
        self._reader, self._writer = reader, writer
        self._peer_eof = False
        self.peer_cert_der = der
        self.tls_version = writer.get_extra_info("tls_version")
        self.connections_opened += 1
        return bytes(der)

    async def reconnect(self) -> bytes:
        """Close (if needed) and open a new TLS connection; the caller re-checks the cert."""
        await self.close()
        return await self.connect()

    async def close(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
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
        if not self.is_open:
            raise _closed("connection is closed; reconnect() first")
        if not path.startswith("/") or any(c in path for c in "\r\n "):
            raise errors.LocalError(f"bad request path {path!r}", check="http.bad-path")
        try:
            async with asyncio.timeout(self.timeout):
                await self._send(method, path, headers or {}, body, chunked)
                return await self._receive(method, hold_open=hold_open)
        except TimeoutError as exc:
            await self.close()
            raise errors.LocalError(
                f"{method} {path} timed out after {self.timeout} s", check="http.timeout"
            ) from exc
        except (OSError, SSL.Error, asyncio.IncompleteReadError) as exc:
            await self.close()
            raise _closed(f"{method} {path}: connection lost: {exc!r}") from exc
        except errors.BrskiError:
            await self.close()
            raise

    # -- sending --

    async def _send(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes, chunked: bool
    ) -> None:
        assert self._writer is not None
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.authority}"]
        given = {k.lower() for k in headers}
        for key, value in headers.items():
            if any(c in key + value for c in "\r\n"):
                raise errors.LocalError(f"bad header {key!r}", check="http.bad-header")
            lines.append(f"{key}: {value}")
        if "user-agent" not in given:
            lines.append(f"User-Agent: {USER_AGENT}")
        if chunked:
            lines.append("Transfer-Encoding: chunked")
        elif body or method in ("POST", "PUT"):
            lines.append(f"Content-Length: {len(body)}")
        self._writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        if chunked:
            for start in range(0, len(body), CHUNK_SIZE):
                piece = body[start : start + CHUNK_SIZE]
                self._writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self._writer.write(b"0\r\n\r\n")
        elif body:
            self._writer.write(body)
        await self._writer.drain()

    # -- receiving --

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

    async def _receive(self, method: str, *, hold_open: bool = False) -> Response:
        while True:
            version, status, reason, headers = await self._read_head()
            if 100 <= status < 200 and status != 101:
                continue  # interim response (RFC 9110 15.2); the real one follows
            break
        no_body = method == "HEAD" or status in (204, 304) or 100 <= status < 200
        close_after = self._wants_close(version, headers)
        if no_body:
            body = b""
        elif self._is_chunked(headers):
            body = await self._read_chunked()
        elif headers.get_all("Content-Length"):
            body = await self._read_exact(self._content_length(headers))
        else:
            body = await self._read_to_eof()
            self._peer_eof = close_after = True
        if close_after and (self._peer_eof or not hold_open):
            await self.close()
        return Response(status=status, reason=reason, headers=headers, body=body)

    async def _readline(self) -> bytes:
        assert self._reader is not None
        try:
            line = await self._reader.readuntil(b"\n")
        except asyncio.LimitOverrunError as exc:
            raise _malformed("header line too long") from exc
        except asyncio.IncompleteReadError as exc:
            if not exc.partial:
                raise _closed("server closed the connection") from exc
            raise _malformed("truncated line") from exc
        return line

    async def _read_head(self) -> tuple[str, int, str, Headers]:
        status_line = (await self._readline()).decode("latin-1").rstrip("\r\n")
        parts = status_line.split(" ", 2)
        if (
            len(parts) < 2
            or not parts[0].startswith("HTTP/1.")
            or not (len(parts[1]) == 3 and parts[1].isdigit())
        ):
            raise _malformed(f"bad status line {status_line[:80]!r}")
        items: list[tuple[str, str]] = []
        total = len(status_line)
        while True:
            raw = await self._readline()
            total += len(raw)
            if total > MAX_HEADER_BYTES or len(items) > MAX_HEADERS:
                raise errors.PayloadTooLarge(
                    "response header too large", check="http.response-too-large"
                )
            line = raw.decode("latin-1").rstrip("\r\n")
            if not line:
                break
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                raise _malformed(f"bad header line {line[:80]!r}")
            items.append((name, value.strip()))
        return parts[0], int(parts[1]), parts[2] if len(parts) > 2 else "", Headers(items)

    @staticmethod
    def _wants_close(version: str, headers: Headers) -> bool:
        tokens = {t.strip().lower() for v in headers.get_all("Connection") for t in v.split(",")}
        if version == "HTTP/1.0":
            return "keep-alive" not in tokens
        return "close" in tokens

    @staticmethod
    def _is_chunked(headers: Headers) -> bool:
        codings = [
            t.strip().lower()
            for v in headers.get_all("Transfer-Encoding")
            for t in v.split(",")
            if t.strip()
        ]
        if codings and codings[-1] != "chunked":
            raise _malformed(f"unsupported Transfer-Encoding {codings!r}")
        return bool(codings)

    def _content_length(self, headers: Headers) -> int:
        values = {v.strip() for raw in headers.get_all("Content-Length") for v in raw.split(",")}
        if len(values) != 1:
            raise _malformed("conflicting Content-Length")
        value = values.pop()
        if not value.isdigit() or len(value) > 12:
            raise _malformed(f"bad Content-Length {value[:20]!r}")
        length = int(value)
        if length > self.max_body:
            raise errors.PayloadTooLarge(
                f"response body of {length} bytes exceeds {self.max_body}",
                check="http.response-too-large",
            )
        return length

    async def _read_exact(self, n: int) -> bytes:
        assert self._reader is not None
        return await self._reader.readexactly(n)

    async def _read_chunked(self) -> bytes:
        body = bytearray()
        while True:
            size_line = (await self._readline()).decode("latin-1").strip()
            size_text = size_line.split(";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError as exc:
                raise _malformed(f"bad chunk size {size_text[:20]!r}") from exc
            if size < 0 or len(size_text) > 8:
                raise _malformed("bad chunk size")
            if size == 0:
                break
            if len(body) + size > self.max_body:
                raise errors.PayloadTooLarge(
                    "chunked body too large", check="http.response-too-large"
                )
            body += await self._read_exact(size)
            if await self._read_exact(2) != b"\r\n":
                raise _malformed("chunk not terminated by CRLF")
        while True:  # trailer section, ignored
            if not (await self._readline()).strip():
                break
        return bytes(body)

    async def _read_to_eof(self) -> bytes:
        assert self._reader is not None
        body = bytearray()
        while chunk := await self._reader.read(65536):
            body += chunk
            if len(body) > self.max_body:
                raise errors.PayloadTooLarge(
                    "response body too large", check="http.response-too-large"
                )
        return bytes(body)
