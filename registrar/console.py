"""The registrar's web console under /console/: see and act on every device.

Server-rendered HTML (shared plumbing in :mod:`brski_web.console`) over the
same store reads as /admin/v1 and the same operator actions
(:mod:`registrar.actions`): an approval, a revocation or a decommission from
the browser is the same write, the same events naming the admin and the same
CRL publication as through the API. Authentication is the admin API's
(:func:`registrar.admin.authenticate_admin`). Views::

    GET  /console/                         dashboard
    GET  /console/devices?q=&state=&manufacturer=&after=&limit=   keyset-paged list
    GET  /console/devices/{serial}         timeline, certificates, vouchers
    GET  /console/devices/{serial}/{action}   confirmation (approve|reject|revoke|decommission)
    POST /console/devices/{serial}/{action}   the action (form with CSRF token)
    GET  /console/audit                    verify result, export form
    POST /console/audit/verify             re-walk the event chain
    GET  /console/audit/export?format=jsonl|csv&device=&since=&until=
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from brski.errors import MalformedInput, NotFound
from brski.lifecycle import DeviceState
from brski_storage.base import DeviceRecord, RegistrarStore
from brski_web.console import (
    ADMIN_KEY,
    LAST_VERIFY,
    Console,
    add_audit_views,
    create_console_app,
    form,
    per_minute,
    query_text,
    recent_window,
    refusals_by_check,
    render,
)
from registrar import actions
from registrar.admin import REVOCATION, authenticate_admin
from registrar.config import RegistrarConfig
from registrar.service import RegistrarService

__all__ = ["DEVICE_STATES", "create_registrar_console"]

DEVICE_STATES = (
    DeviceState.DISCOVERED, DeviceState.AWAITING_APPROVAL, DeviceState.VOUCHER_OBTAINED,
    DeviceState.ENROLLED, DeviceState.RENEWED, DeviceState.REVOKED, DeviceState.DECOMMISSIONED,
)
ACTIONS = {
    "approve": "Approve", "reject": "Reject", "revoke": "Revoke", "decommission": "Decommission",
}
PAGE_DEFAULT, PAGE_MAX = 50, 500
# Kinds that count as an onboarding: a first LDevID issued (RFC 7030 4.2.1).
ONBOARDED_KINDS = frozenset({"credential.issued"})
TEMPLATES = Path(__file__).parent / "console_templates"
_MAX_TEXT = 256



@dataclass(frozen=True)
class _RoleKeys:
    """Where the parent (registrar) app keeps what the console reads."""

    service: web.AppKey[RegistrarService]
    config: web.AppKey[RegistrarConfig]


_ROLE_KEYS: web.AppKey[_RoleKeys] = web.AppKey("console_role_keys", _RoleKeys)


def _svc(request: web.Request) -> RegistrarService:
    return request.config_dict[request.app[_ROLE_KEYS].service]


def _cfg(request: web.Request) -> RegistrarConfig:
    return request.config_dict[request.app[_ROLE_KEYS].config]


async def dashboard(request: web.Request) -> web.Response:
    svc = _svc(request)
    store, now = svc.store, datetime.now(UTC)
    stats = await store.stats()
    by_state = [(s, stats.get(f"devices.{s}", 0)) for s in DEVICE_STATES]
    events, partial = await recent_window(store, now)
    head = await store.recent_events(limit=1)
    return render(
        request, "dashboard.html",
        by_state=by_state, total=stats.get("devices", 0),
        pending=len(await store.list_approvals(decision="pending")),
        minutes=per_minute(events, now, counted=ONBOARDED_KINDS, label="onboarded"), partial=partial,
        refusals=refusals_by_check(events),
        head=head[0] if head else None, last_verify=request.app[LAST_VERIFY],
        certs={k.split(".", 1)[1]: v for k, v in stats.items() if k.startswith("certificates.")},
    )


async def _search(
    store: RegistrarStore, *, q: str, state: str | None, manufacturer: str | None, after: str | None, limit: int
) -> tuple[list[DeviceRecord], str | None]:
    """Keyset page by serial; ``q`` is a serial prefix (an index range scan, not LIKE)."""
    rows: list[DeviceRecord] = []
    if q and (after is None or after < q):
        exact = await store.get_device(q)
        if exact is not None and (state is None or exact.state == state) and (
            manufacturer is None or exact.manufacturer == manufacturer
        ):
            rows.append(exact)
        after = q
    page = await store.list_devices(state=state, manufacturer=manufacturer, after_serial=after, limit=limit + 1)
    for d in page:
        if q and not d.serial.startswith(q):
            break  # serials with the prefix are contiguous in serial order
        rows.append(d)
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, rows[-1].serial if more and rows else None


async def devices(request: web.Request) -> web.Response:
    svc = _svc(request)
    q, state, manufacturer, after = (query_text(request, n) for n in ("q", "state", "manufacturer", "after"))
    if state and state not in DEVICE_STATES:
        raise MalformedInput(f"unknown state {state!r}", check="console.query")
    try:
        limit = int(request.query.get("limit", PAGE_DEFAULT))
    except ValueError:
        raise MalformedInput("limit must be an integer", check="console.query") from None
    if not 1 <= limit <= PAGE_MAX:
        raise MalformedInput(f"limit must be 1..{PAGE_MAX}", check="console.query")
    rows, next_after = await _search(
        svc.store, q=q, state=state or None, manufacturer=manufacturer or None, after=after or None, limit=limit,
    )
    cfg = _cfg(request)
    return render(
        request, "devices.html", rows=rows, next_after=next_after, q=q, state=state, manufacturer=manufacturer,
        after=after, limit=limit, states=DEVICE_STATES, manufacturers=sorted({m.name for m in cfg.manufacturers}),
    )


async def device_page(request: web.Request) -> web.Response:
    svc = _svc(request)
    store, serial = svc.store, request.match_info["serial"]
    device = await store.get_device(serial)
    if device is None:
        raise NotFound(f"unknown device {serial!r}", check="console.unknown-device", serial=serial)
    timeline: list[dict[str, Any]] = [
        {"at": t.at, "what": f"{t.from_state or '(new)'} \u2192 {t.to_state}", "outcome": "transition",
         "check": "", "detail": t.reason}
        for t in await store.device_transitions(serial)
    ]
    events = await store.recent_events(device_serial=serial, limit=1000)
    timeline += [
        {"at": e.at, "what": e.kind, "outcome": e.outcome, "check": e.check or "",
         "detail": ", ".join(f"{k}={v}" for k, v in sorted(e.detail.items()) if v not in (None, "", []))}
        for e in events
    ]
    timeline.sort(key=lambda r: r["at"])
    publisher = request.config_dict[REVOCATION]
    records = await store.list_certificates(serial)
    # The status OCSP answers, from the same lookup the responder makes.
    certs = [{"record": c, "ocsp": (await publisher.cert_status(int(c.cert_serial, 16))).status} for c in records]
    approval = await store.get_approval(serial)
    issued = any(c.state == "issued" for c in records)
    possible = []
    if device.state == DeviceState.AWAITING_APPROVAL or (approval is not None and approval.decision == "pending"):
        possible += ["approve", "reject"]
    if issued and device.state != DeviceState.DECOMMISSIONED:
        possible.append("revoke")
    if device.state != DeviceState.DECOMMISSIONED:
        possible.append("decommission")
    return render(
        request, "device.html", device=device, timeline=timeline, certs=certs, approval=approval,
        requests=await store.voucher_requests(serial), voucher=await store.latest_voucher(serial),
        reports=await store.status_reports(serial), actions=possible, action_names=ACTIONS,
        done=request.query.get("done", ""),
        # A device on its way (queued, voucher, enrolment) is watched: reload every 5 s.
        refresh=device.state in (DeviceState.DISCOVERED, DeviceState.AWAITING_APPROVAL, DeviceState.VOUCHER_OBTAINED),
    )


async def confirm(request: web.Request) -> web.Response:
    svc = _svc(request)
    serial, action = request.match_info["serial"], request.match_info["action"]
    device = await svc.store.get_device(serial)
    if device is None:
        raise NotFound(f"unknown device {serial!r}", check="console.unknown-device", serial=serial)
    return render(
        request, "confirm.html", device=device, action=action, label=ACTIONS[action],
        reasons=actions.REASON_CHOICES,
    )


async def act(request: web.Request) -> web.Response:
    data = await form(request)
    svc, admin, now = _svc(request), request[ADMIN_KEY], datetime.now(UTC)
    serial, action = request.match_info["serial"], request.match_info["action"]
    reason = str(data.get("reason", "")).strip()[:_MAX_TEXT] or None
    store = svc.store
    if action in ("approve", "reject"):
        await actions.decide_approval(
            store, serial, decision="approved" if action == "approve" else "rejected", now=now, by=admin,
            reason=reason, require_device=True,
        )
    else:
        if reason is not None and reason not in actions.REASON_CHOICES:
            raise MalformedInput(f"{reason!r} is not an RFC 5280 reason code", check="console.reason")
        op = actions.revoke if action == "revoke" else actions.decommission
        await op(store, request.config_dict[REVOCATION], serial, reason=reason, now=now, admin=admin)
    raise web.HTTPSeeOther(f"/console/devices/{serial}?done={action}")


def create_registrar_console(
    service_key: web.AppKey[RegistrarService], config_key: web.AppKey[RegistrarConfig]
) -> web.Application:
    """The console sub-app; mount it with ``app.add_subapp("/console/", ...)``."""

    async def authenticate(request: web.Request) -> str:
        return await authenticate_admin(
            request, request.config_dict[service_key], request.config_dict[config_key], datetime.now(UTC)
        )

    console = Console(
        role="registrar", templates=TEMPLATES, authenticate=authenticate,
        store=lambda request: request.config_dict[service_key].store,
        nav=(("/console/", "Dashboard"), ("/console/devices", "Devices"), ("/console/audit", "Audit")),
    )

    def views(app: web.Application) -> None:
        app[_ROLE_KEYS] = _RoleKeys(service=service_key, config=config_key)
        r = app.router
        r.add_get("/", dashboard)
        r.add_get("/devices", devices)
        r.add_get("/devices/{serial}", device_page)
        r.add_get("/devices/{serial}/{action:approve|reject|revoke|decommission}", confirm)
        r.add_post("/devices/{serial}/{action:approve|reject|revoke|decommission}", act)
        add_audit_views(app)

    return create_console_app(console, views)
