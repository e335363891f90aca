"""The consoles' logic without a server or a store: the chart geometry, the
CSRF rules and the security headers (the store-backed parts -- keyset search,
the last hour read backwards, verify -- are in tests/storage/test_console_store.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict, MultiDict, MultiDictProxy

from brski.errors import Forbidden
from brski_storage.base import EventLog
from brski_web.console import (
    CSP,
    SECURITY_HEADERS,
    Console,
    bar_chart,
)

NOW = datetime(2026, 12, 2, 12, 0, 30, tzinfo=UTC)


def test_bar_chart_scales_to_the_peak() -> None:
    chart = bar_chart({"a": [0, 2, 4], "b": [1, 0, 0]}, ["x", "y", "z"], width=140, height=120, every=1)
    tallest = max(chart.bars, key=lambda b: b.height)
    assert chart.peak == 4 and tallest.series == "a" and tallest.label == "z"
    assert tallest.y == 8.0 and tallest.y + tallest.height == chart.plot_bottom
    assert next(b for b in chart.bars if b.label == "y" and b.series == "a").height == tallest.height / 2
    assert [t for _, t in chart.ticks] == ["x", "y", "z"]


def _console() -> Console:
    async def auth(request: web.Request) -> str:
        return "CN=admin"

    def no_store(request: web.Request) -> EventLog:
        raise AssertionError("these tests read no store")

    return Console(role="test", templates=Path("."), authenticate=auth, store=no_store, nav=())


def _form(**fields: str) -> MultiDictProxy[str]:
    return MultiDictProxy(MultiDict(fields))


def _request(**headers: str) -> web.Request:
    return make_mocked_request("POST", "/console/x", headers=CIMultiDict({"Host": "localhost:1", **headers}))


def test_csrf_token_is_required_and_bound_to_this_console() -> None:
    console, other = _console(), _console()
    req = _request()
    token = console.csrf_token(req)
    console.check_csrf(req, _form(csrf_token=token))
    for bad in ({}, {"csrf_token": ""}, {"csrf_token": other.csrf_token(req)}):
        with pytest.raises(Forbidden) as err:
            console.check_csrf(req, _form(**bad))
        assert err.value.check == "console.csrf"


def test_cross_site_posts_are_refused_even_with_the_token() -> None:
    console = _console()
    for headers in ({"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"},
                    {"Origin": "https://evil.example"}, {"Origin": "null"}):
        req = _request(**headers)
        with pytest.raises(Forbidden):
            console.check_csrf(req, _form(csrf_token=console.csrf_token(req)))
    req = _request(**{"Sec-Fetch-Site": "same-origin", "Origin": "http://localhost:1"})
    console.check_csrf(req, _form(csrf_token=console.csrf_token(req)))


def test_csp_allows_nothing_inline_or_from_elsewhere() -> None:
    directives = dict(d.strip().split(" ", 1) for d in CSP.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == directives["style-src"] == "'self'"
    assert "unsafe" not in CSP and "http" not in CSP and "data:" not in CSP
    assert directives["frame-ancestors"] == "'none'" and directives["form-action"] == "'self'"
    assert SECURITY_HEADERS["X-Content-Type-Options"] == "nosniff"


def test_templates_and_assets_have_nothing_inline_or_external() -> None:
    """What the CSP would block anyway, kept out at the source: inline scripts,
    style attributes, event-handler attributes, and any other origin."""
    import re

    root = Path(__file__).resolve().parents[2]
    files = [*root.glob("*/console_templates/*.html"), *root.glob("brski_web/console_assets/*/*")]
    assert len(files) >= 12
    for path in files:
        text = path.read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=)", text), path
        assert not re.search(r"\sstyle=", text), path
        assert not re.search(r"\son[a-z]+=", text), path
        assert not re.search(r"(?:src|href|url)\s*[=(]\s*[\"']?(?:https?:)?//", text), path
        assert "@import" not in text, path
