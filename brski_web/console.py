"""What the registrar's and the MASA's web consoles share.

Each role mounts a console as an aiohttp sub-application under /console/
(:func:`create_console_app`) and adds its own views; this module gives them:

* Authentication by the admin client certificate, as for the admin API: the
  role passes its own ``authenticate`` (the admin API's check), so there is
  one rule for who is an admin. Every console URL, static files included,
  needs it: a visitor without the certificate gets 401/403 and no data.
* CSRF protection for every POST. A client certificate is an ambient
  credential (the browser presents it to any request for the origin, also
  one a hostile page triggers), so each form carries a token bound to the
  admin's certificate (HMAC with a per-process key), and a request that the
  browser marks cross-site (Sec-Fetch-Site, Origin) is refused as well.
* Server-rendered HTML (Jinja2, autoescaped) under a strict
  Content-Security-Policy: nothing inline, nothing from another origin, so it
  works on an isolated network; the only script is a same-origin table sorter.
* Errors as HTML pages with the RFC 9457 fields (status, title, check), and
  refusals still handed to the app's recorder as evidence.
* Bar charts as server-rendered SVG geometry.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web
from multidict import MultiDictProxy

from brski.errors import BrskiError, Forbidden, LocalError, MalformedInput, PeerError
from brski.pki import fingerprint_sha256
from brski_storage.base import EventLog, EventRecord
from brski_storage.export import ExportFormat, all_events, export_header, export_line
from brski_web.evidence import AuditReport, audit_report
from brski_web.identity import peer_identity
from brski_web.logs import kv
from brski_web.middleware import REFUSAL_RECORDER

__all__ = [
    "ADMIN_KEY",
    "CONSOLE",
    "CSP",
    "LAST_VERIFY",
    "BarChart",
    "Console",
    "add_audit_views",
    "bar_chart",
    "create_console_app",
    "form",
    "parse_time",
    "per_minute",
    "recent_window",
    "refusals_by_check",
    "render",
    "verify_audit",
]

log = logging.getLogger("brski.console")

ASSETS = Path(__file__).parent / "console_assets"
# Nothing inline (no script, no style attribute), nothing from another origin.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    # same-origin, not no-referrer: with no-referrer a browser sends "Origin: null"
    # on form posts, and the CSRF check compares Origin with the console's own.
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-store",
}
CSRF_FIELD = "csrf_token"

Authenticate = Callable[[web.Request], Awaitable[str]]
StoreOf = Callable[[web.Request], EventLog]  # the role's store (its hash-chained event log)


class Console:
    """One console's templates, admin check and CSRF key."""

    def __init__(
        self, *, role: str, templates: Path, authenticate: Authenticate, store: StoreOf,
        nav: Sequence[tuple[str, str]],
    ) -> None:
        self.role = role
        self.authenticate = authenticate
        self.store = store
        self.nav = tuple(nav)
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader([str(templates), str(ASSETS / "templates")]),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["ts"] = _ts
        self.env.filters["hexs"] = lambda b: b.hex() if b else ""
        # Per process: a restart invalidates open forms (reload the page).
        self._csrf_key = secrets.token_bytes(32)

    def csrf_token(self, request: web.Request) -> str:
        return hmac.new(self._csrf_key, _cert_id(request).encode(), hashlib.sha256).hexdigest()

    def check_csrf(self, request: web.Request, data: MultiDictProxy[Any]) -> None:
        # Fetch metadata and Origin, where the browser sends them: only same-origin posts.
        site = request.headers.get("Sec-Fetch-Site")
        if site is not None and site not in ("same-origin", "none"):
            raise Forbidden(f"cross-site request ({site}) refused", check="console.csrf")
        origin = request.headers.get("Origin")
        if origin is not None and origin != f"{request.scheme}://{request.host}":
            raise Forbidden(f"request from origin {origin} refused", check="console.csrf")
        token = data.get(CSRF_FIELD)
        if not isinstance(token, str) or not hmac.compare_digest(token, self.csrf_token(request)):
            raise Forbidden("the form's CSRF token is missing or wrong; reload the page", check="console.csrf")


CONSOLE: web.AppKey[Console] = web.AppKey("console", Console)
ADMIN_KEY = "console.admin"


def _cert_id(request: web.Request) -> str:
    leaf = peer_identity(request).leaf
    return fingerprint_sha256(leaf) if leaf is not None else ""


def _ts(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else "-"


def render(request: web.Request, template: str, *, status: int = 200, **context: Any) -> web.Response:
    console = request.app[CONSOLE]
    html = console.env.get_template(template).render(
        role=console.role,
        nav=console.nav,
        path=request.path,
        admin=request.get(ADMIN_KEY),
        csrf_field=CSRF_FIELD,
        csrf=console.csrf_token(request) if request.get(ADMIN_KEY) else "",
        **context,
    )
    return web.Response(status=status, text=html, content_type="text/html", charset="utf-8")


async def form(request: web.Request) -> MultiDictProxy[Any]:
    """The POSTed form, after the CSRF check."""
    if request.content_type != "application/x-www-form-urlencoded":
        raise MalformedInput("console forms are application/x-www-form-urlencoded", check="console.form")
    data = await request.post()
    request.app[CONSOLE].check_csrf(request, data)
    return data


@web.middleware
async def _console_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    console = request.app[CONSOLE]
    try:
        request[ADMIN_KEY] = await console.authenticate(request)
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise  # redirects
        err: BrskiError = MalformedInput(exc.reason, check="http.not-found" if exc.status == 404 else "http.bad-request")
        status = exc.status
    except BrskiError as exc:
        err, status = exc, exc.http_status
    except Exception:
        log.exception(kv("console-unhandled", method=request.method, path=request.path))
        err = LocalError("internal error", check="internal")
        status = err.http_status
    if isinstance(err, PeerError):
        recorder = request.config_dict.get(REFUSAL_RECORDER)
        if recorder is not None:
            try:
                await recorder(request, err)
            except Exception:
                log.exception(kv("refusal-record-failed", check=err.check))
    log.info(kv("console-refused", method=request.method, path=request.path, status=status, check=err.check))
    return render(request, "error.html", status=status, err=err, status_code=status)


async def _headers(request: web.Request, response: web.StreamResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)


# Served from memory, not with sendfile (add_static): the pyOpenSSL transport
# (brski_web.tls) writes what it is given and knows nothing of sendfile.
_STATIC_TYPES = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml"}
_STATIC = {
    p.name: (p.read_bytes(), _STATIC_TYPES[p.suffix])
    for p in sorted((ASSETS / "static").iterdir()) if p.suffix in _STATIC_TYPES
}


async def _static(request: web.Request) -> web.Response:
    found = _STATIC.get(request.match_info["name"])
    if found is None:
        raise web.HTTPNotFound()
    body, content_type = found
    return web.Response(body=body, content_type=content_type, headers={"Cache-Control": "private, max-age=300"})


def create_console_app(console: Console, add_views: Callable[[web.Application], None]) -> web.Application:
    """The console sub-application (mount it with ``app.add_subapp("/console/", ...)``)."""
    app = web.Application(middlewares=[_console_middleware])
    app[CONSOLE] = console
    app[LAST_VERIFY] = LastVerify()
    app.on_response_prepare.append(_headers)
    app.router.add_get("/static/{name}", _static)
    add_views(app)
    return app


# --- audit: verify the event chain, export it ---------------------------------------


@dataclass
class LastVerify:
    """The latest verification run from this console (shown on the dashboard)."""

    report: AuditReport | None = None
    at: datetime | None = None
    by: str | None = None


LAST_VERIFY: web.AppKey[LastVerify] = web.AppKey("console_last_verify", LastVerify)
_MAX_QUERY = 256


async def verify_audit(store: EventLog, *, now: datetime, admin: str) -> AuditReport:
    """The same verification as ``audit verify``: the hash chain and the tables
    against the state it implies; the check itself is an event naming the admin."""
    report = await audit_report(store)
    await store.append_event(
        at=now, kind="admin.audit-verified", device_serial=None, outcome="allow", check="admin.audit",
        detail={"admin": admin, "ok": report.ok, "count": report.chain.count,
                "state_disagreements": len(report.state.disagreements)},
    )
    return report


def parse_time(text: str, name: str) -> datetime | None:
    """An ISO 8601 date or date-time from a form (naive: UTC); blank: None."""
    text = text.strip()
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise MalformedInput(f"{name} {text!r} is not an ISO 8601 date or date-time", check="console.query") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def query_text(request: web.Request, name: str) -> str:
    value = request.query.get(name, "").strip()
    if len(value) > _MAX_QUERY:
        raise MalformedInput(f"{name} is longer than {_MAX_QUERY} characters", check="console.query")
    return value


async def _audit(request: web.Request) -> web.Response:
    return render(request, "audit.html", last_verify=request.app[LAST_VERIFY])


async def _audit_verify(request: web.Request) -> web.Response:
    await form(request)
    admin, now = request[ADMIN_KEY], datetime.now(UTC)
    report = await verify_audit(request.app[CONSOLE].store(request), now=now, admin=admin)
    last = request.app[LAST_VERIFY]
    last.report, last.at, last.by = report, now, admin
    raise web.HTTPSeeOther("/console/audit")


async def _audit_export(request: web.Request) -> web.StreamResponse:
    console, admin, now = request.app[CONSOLE], request[ADMIN_KEY], datetime.now(UTC)
    store = console.store(request)
    fmt_text = request.query.get("format", "jsonl")
    if fmt_text not in ("jsonl", "csv"):
        raise MalformedInput("format must be jsonl or csv", check="console.query")
    fmt: ExportFormat = "csv" if fmt_text == "csv" else "jsonl"
    device = query_text(request, "device") or None
    since, until = parse_time(query_text(request, "since"), "since"), parse_time(query_text(request, "until"), "until")
    # Taking the evidence away is itself evidence.
    await store.append_event(
        at=now, kind="admin.audit-exported", device_serial=device, outcome="allow", check="admin.audit-export",
        detail={"admin": admin, "format": fmt, "since": since.isoformat() if since else None,
                "until": until.isoformat() if until else None},
    )
    name = "".join(c for c in f"{console.role}-events{'-' + device if device else ''}.{fmt}" if c.isalnum() or c in "-._")
    resp = web.StreamResponse(headers={
        "Content-Type": "text/csv; charset=utf-8" if fmt == "csv" else "application/jsonl; charset=utf-8",
        "Content-Disposition": f'attachment; filename="{name}"',
    })
    await resp.prepare(request)
    await resp.write(export_header(fmt).encode())
    async for e in all_events(store, device=device, since=since, until=until):
        await resp.write(export_line(e, fmt).encode())
    await resp.write_eof()
    return resp


def add_audit_views(app: web.Application) -> None:
    """GET /audit, POST /audit/verify, GET /audit/export?format=jsonl|csv&device=&since=&until=."""
    app.router.add_get("/audit", _audit)
    app.router.add_post("/audit/verify", _audit_verify)
    app.router.add_get("/audit/export", _audit_export)


# --- the last hour, read backwards from the log's head -------------------------------

WINDOW = timedelta(hours=1)
WINDOW_SCAN_MAX = 50_000  # events read for a dashboard's last hour, at most


async def recent_window(store: EventLog, now: datetime) -> tuple[list[EventRecord], bool]:
    """Events of the last hour, newest first, read backwards from the head."""
    since, before = now - WINDOW, None
    out: list[EventRecord] = []
    while len(out) < WINDOW_SCAN_MAX:
        page = await store.recent_events(before_id=before, limit=1000)
        for e in page:
            if e.at < since:
                return out, False
            out.append(e)
        if len(page) < 1000:
            return out, False
        before = page[-1].id
    return out, True


def per_minute(events: list[EventRecord], now: datetime, *, counted: frozenset[str], label: str) -> dict[str, Any]:
    """Per-minute counts over the last hour: events of the ``counted`` kinds that
    were allowed (as ``label``) and refusals, as chart geometry and totals."""
    start = now.replace(second=0, microsecond=0) - timedelta(minutes=59)
    onboard, refused = [0] * 60, [0] * 60
    for e in events:
        i = int((e.at - start).total_seconds() // 60)
        if 0 <= i < 60:
            if e.kind in counted and e.outcome == "allow":
                onboard[i] += 1
            elif e.outcome == "refuse":
                refused[i] += 1
    labels = [(start + timedelta(minutes=i)).strftime("%H:%M") for i in range(60)]
    chart = bar_chart({label: onboard, "refused": refused}, labels)
    return {"chart": chart, "label": label, "counted_total": sum(onboard), "refused_total": sum(refused)}


def refusals_by_check(events: list[EventRecord]) -> list[tuple[str, int, EventRecord]]:
    counts: Counter[str] = Counter()
    latest: dict[str, EventRecord] = {}
    for e in events:  # newest first: the first seen is the latest example
        if e.outcome == "refuse":
            check = e.check or "-"
            counts[check] += 1
            latest.setdefault(check, e)
    return [(check, n, latest[check]) for check, n in counts.most_common()]



# --- charts ------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    series: str
    label: str
    value: int


@dataclass(frozen=True, kw_only=True)
class BarChart:
    """Geometry for an SVG bar chart (viewBox 0 0 width height)."""

    width: int
    height: int
    series: tuple[str, ...]
    bars: tuple[Bar, ...]
    peak: int
    ticks: tuple[tuple[float, str], ...]  # (x, text) along the bottom
    plot_bottom: float


def bar_chart(
    series: dict[str, Sequence[int]], labels: Sequence[str], *, width: int = 720, height: int = 180, every: int = 10
) -> BarChart:
    """Grouped bars: one slot per label, one bar per series in each slot."""
    top, bottom = 8.0, float(height - 20)
    slots = max(len(labels), 1)
    slot = (width - 40) / slots
    names = list(series)
    bar_w = max(slot / max(len(names), 1) - 0.5, 0.5)
    peak = max([1, *(v for values in series.values() for v in values)])
    bars: list[Bar] = []
    for i, label in enumerate(labels):
        for j, name in enumerate(names):
            value = series[name][i]
            h = (bottom - top) * value / peak
            bars.append(Bar(
                x=round(36 + i * slot + j * bar_w, 2), y=round(bottom - h, 2), width=round(bar_w, 2),
                height=round(h, 2), series=name, label=label, value=value,
            ))
    ticks = tuple((round(36 + i * slot, 2), labels[i]) for i in range(0, len(labels), every))
    return BarChart(width=width, height=height, series=tuple(names), bars=tuple(bars), peak=peak, ticks=ticks, plot_bottom=bottom)

