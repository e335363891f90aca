"""One structured line per request and per decision.

Operators grep and ship these lines, so every line is ``key=value`` pairs with
a fixed leading ``event=``; values with spaces are quoted. No multi-line
messages, no secrets (keys and bodies are never logged).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from typing import Any

__all__ = ["configure_logging", "kv"]


_NEEDS_QUOTES = re.compile(r'[ "=\n\t]')
_search = _NEEDS_QUOTES.search
_KEYS: dict[str, str] = {}  # field name -> its key in the line (a few dozen names)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    text = value if type(value) is str else str(value)
    if not text or _NEEDS_QUOTES.search(text) is not None:
        return json.dumps(text)
    return text


def kv(event: str, **fields: Any) -> str:
    """Render one event line: ``event=NAME k=v ...``.

    The common kinds (exact ``str``, ``None``, ``int``, ``float``) are rendered
    inline, everything else through :func:`_fmt`; the text is the same either
    way, the inline path saves a call per field (a request line has nine)."""
    parts = ["event=" + event]
    append = parts.append
    keys = _KEYS
    for name, value in fields.items():
        key = keys.get(name)
        if key is None:
            key = keys[name] = name.replace("_", "-")
        kind = type(value)
        if kind is str:
            append(f"{key}={value}" if value and _search(value) is None else f"{key}={json.dumps(value)}")
        elif value is None:
            append(key + "=-")
        elif kind is int or kind is float:
            append(f"{key}={value}")
        else:
            append(f"{key}={_fmt(value)}")
    return " ".join(parts)


class _Formatter(logging.Formatter):
    """logging.Formatter, with the time text made once per second: the
    format prints whole seconds, and strftime was a fifth of a line's cost."""

    _last: tuple[int, str] = (-1, "")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second = int(record.created)
        last = self._last
        if last[0] != second:
            last = self._last = (second, super().formatTime(record, datefmt))
        return last[1]


def configure_logging(level: str = "info", *, role: str) -> None:
    """Log to stderr, one line per record, prefixed with time and role."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        _Formatter(f"%(asctime)s {role} %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%S%z")
    )
    # The format above uses none of the caller's file and line, thread,
    # process or multiprocessing names: skip collecting them for every record
    # (the logging HOWTO's "Optimization" section; a frame walk per record).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's access log duplicates our request line.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
