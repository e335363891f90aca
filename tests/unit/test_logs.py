"""brski_web.logs: the key=value line and the formatter configure_logging installs."""

from __future__ import annotations

import logging
from pathlib import Path

from brski_web import logs


def test_kv_renders_every_kind_of_value() -> None:
    line = logs.kv(
        "request", method="POST", status=200, ms=1.5, ok=True, bad=False, none=None, empty="",
        spaced="a b", quoted='say "hi"', equals="a=b", newline="a\nb", tab="a\tb",
        path=Path("/x/y"), two_words="plain",
    )
    assert line == (
        'event=request method=POST status=200 ms=1.5 ok=true bad=false none=- empty="" '
        'spaced="a b" quoted="say \\"hi\\"" equals="a=b" newline="a\\nb" tab="a\\tb" '
        "path=/x/y two-words=plain"
    )


def test_formatter_matches_the_stdlib_one_and_reuses_the_second() -> None:
    fmt, datefmt = "%(asctime)s registrar %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%S%z"
    ours, stdlib = logs._Formatter(fmt, datefmt), logging.Formatter(fmt, datefmt)
    records = []
    for created in (1_800_000_000.1, 1_800_000_000.9, 1_800_000_001.0, 1_800_000_000.5):
        record = logging.LogRecord("brski.http", logging.INFO, __file__, 1, "event=x", None, None)
        record.created = created
        records.append(record)
    texts = [ours.format(r) for r in records]
    assert texts == [stdlib.format(r) for r in records]
    assert texts[0] == texts[1] != texts[2]  # same second, same text; the next second its own


def test_kv_inline_kinds_render_as_fmt_does() -> None:
    import enum

    class Level(enum.IntEnum):
        HIGH = 3

    class Text(str):
        pass

    values = {
        "a": "", "b": "x", "c": "x y", "d": 0, "e": -7, "f": 2**70, "g": 0.1, "h": float("nan"),
        "i": True, "j": None, "k": Level.HIGH, "l": Text("t u"), "m": b"raw", "n": 1e300,
    }
    assert logs.kv("x", **values) == "event=x " + " ".join(f"{k}={logs._fmt(v)}" for k, v in values.items())
