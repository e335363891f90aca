"""One structured line per request and per decision.

Operators grep and ship these lines, so every line is ``key=value`` pairs with
a fixed leading ``event=``; values with spaces are quoted. No multi-line
messages, no secrets (keys and bodies are never logged).
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

__all__ = ["configure_logging", "kv"]


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    text = str(value)
    if not text or any(c in text for c in ' "=\n\t'):
        return json.dumps(text)
    return text


def kv(event: str, **fields: Any) -> str:
    """Render one event line: ``event=NAME k=v ...``."""
    parts = [f"event={event}"]
    parts.extend(f"{k.replace('_', '-')}={_fmt(v)}" for k, v in fields.items())
    return " ".join(parts)


def configure_logging(level: str = "info", *, role: str) -> None:
    """Log to stderr, one line per record, prefixed with time and role."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter(f"%(asctime)s {role} %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%S%z")
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
