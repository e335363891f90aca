"""The MASA's web console under /console/: devices made, owners, vouchers, audit.

The manufacturer's operators see every device the factory made, who owns it
(the sales records of RFC 8995 5.5.4, added and removed here with a
confirmation step, through :mod:`masa.owners` as the CLI does), every voucher
issued for it and its audit log (RFC 8995 5.8.1). Same plumbing, CSP and
CSRF rules as the registrar's console (:mod:`brski_web.console`); admins
present a client certificate that chains to ``admin_ca`` and is listed in
``admin_subjects`` or ``admin_fingerprints``. Views::

    GET  /console/                          dashboard
    GET  /console/devices?q=&after=          devices made, keyset-paged by serial
    GET  /console/devices/{serial}           owners, vouchers, audit log, events
    POST /console/devices/{serial}/owners/add       PEM of the owner's domain CA (confirm, then add)
    GET|POST /console/devices/{serial}/owners/{spki}/remove   confirm, then remove
    GET  /console/audit, POST /console/audit/verify, GET /console/audit/export
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web

from brski.errors import BrskiError, MalformedInput, NotFound
from brski.pki import load_cert, spki_sha256
from brski_config import read_certs
from brski_storage.base import ManufacturedDevice, MasaStore
from brski_web.admin_auth import admin_subject
from brski_web.console import (
    ADMIN_KEY,
    CONSOLE,
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
from brski_web.identity import peer_identity
from masa import owners
from masa.config import MasaConfig
from masa.service import MasaService

__all__ = ["create_masa_console"]

TEMPLATES = Path(__file__).parent / "console_templates"
PAGE = 50
ISSUED_KINDS = frozenset({"voucher.issued"})
MAX_PEM = 16_384


def _store(request: web.Request) -> MasaStore:
    store = request.app[CONSOLE].store(request)
    assert isinstance(store, MasaStore)
    return store


async def dashboard(request: web.Request) -> web.Response:
    store, now = _store(request), datetime.now(UTC)
    stats = await store.stats()
    events, partial = await recent_window(store, now)
    issued = [e for e in events if e.kind in ISSUED_KINDS][:20]
    return render(
        request, "masa_dashboard.html", stats=stats, devices=await store.count_devices(),
        owners=len(await store.list_owners()), minutes=per_minute(events, now, counted=ISSUED_KINDS, label="issued"),
        partial=partial, refusals=refusals_by_check(events), issued=issued,
        head=next(iter(await store.recent_events(limit=1)), None), last_verify=request.app[LAST_VERIFY],
    )


async def devices(request: web.Request) -> web.Response:
    store = _store(request)
    q, after = query_text(request, "q"), query_text(request, "after") or None
    rows: list[ManufacturedDevice] = []
    if q and (after is None or after < q):
        exact = await store.get_manufactured_device(q)
        if exact is not None:
            rows.append(exact)
        after = q
    for d in await store.list_manufactured_devices(after_serial=after, limit=PAGE + 1):
        if q and not d.serial.startswith(q):
            break  # serials with the prefix are contiguous in serial order
        rows.append(d)
    more, rows = len(rows) > PAGE, rows[:PAGE]
    return render(
        request, "masa_devices.html", rows=rows, q=q, after=query_text(request, "after"),
        next_after=rows[-1].serial if more and rows else None, total=await store.count_devices(),
    )


async def _device(store: MasaStore, serial: str) -> ManufacturedDevice:
    device = await store.get_manufactured_device(serial)
    if device is None:
        raise NotFound(f"this manufacturer made no device {serial!r}", check="console.unknown-device", serial=serial)
    return device


async def device_page(request: web.Request) -> web.Response:
    store, serial = _store(request), request.match_info["serial"]
    device = await _device(store, serial)
    owner_rows = []
    for o in await store.owners(serial):
        owner_rows.append({"record": o, "subject": load_cert(o.domain_ca_der).subject.rfc4514_string()})
    events = await store.recent_events(device_serial=serial, limit=500)
    return render(
        request, "masa_device.html", device=device, owners=owner_rows, vouchers=await store.vouchers(serial),
        audit=await store.audit_entries(serial), events=events, done=request.query.get("done", ""),
    )


async def owner_add(request: web.Request) -> web.Response:
    data = await form(request)
    store, serial, admin = _store(request), request.match_info["serial"], request[ADMIN_KEY]
    device = await _device(store, serial)
    pem = str(data.get("pem", ""))
    if len(pem) > MAX_PEM:
        raise MalformedInput("certificate too large", check="console.owner-pem")
    try:
        ca = load_cert(pem.encode())
    except BrskiError as exc:
        raise MalformedInput(f"not a PEM certificate: {exc.detail}", check="console.owner-pem") from exc
    if data.get("confirmed") != "yes":  # the confirmation step: show what would be added
        return render(
            request, "masa_confirm.html", device=device, action="add", subject=ca.subject.rfc4514_string(),
            spki=spki_sha256(ca).hex(), pem=pem,
        )
    await owners.add_owner(store, serial, ca, now=datetime.now(UTC), by=admin)
    raise web.HTTPSeeOther(f"/console/devices/{serial}?done=owner-added")


async def owner_remove(request: web.Request) -> web.Response:
    store, serial, admin = _store(request), request.match_info["serial"], request[ADMIN_KEY]
    device = await _device(store, serial)
    spki_hex = request.match_info["spki"]
    match = [o for o in await store.owners(serial) if o.domain_ca_spki_sha256.hex() == spki_hex]
    if not match:
        raise NotFound(f"{serial} has no owner with key {spki_hex}", check="console.unknown-owner", serial=serial)
    subject = load_cert(match[0].domain_ca_der).subject.rfc4514_string()
    if request.method == "GET":
        return render(request, "masa_confirm.html", device=device, action="remove", subject=subject, spki=spki_hex, pem="")
    await form(request)
    await owners.remove_owner(
        store, serial, match[0].domain_ca_spki_sha256, subject=subject, now=datetime.now(UTC), by=admin,
    )
    raise web.HTTPSeeOther(f"/console/devices/{serial}?done=owner-removed")


def create_masa_console(service_key: web.AppKey[MasaService], config: MasaConfig) -> web.Application:
    """The console sub-app; mount it with ``app.add_subapp("/console/", ...)``."""
    anchors = read_certs(config.admin_ca)

    async def authenticate(request: web.Request) -> str:
        return await admin_subject(
            peer_identity(request).leaf, anchors=anchors, subjects=config.admin_subjects,
            fingerprints=config.admin_fingerprints, now=datetime.now(UTC), what="the MASA console",
        )

    def store_of(request: web.Request) -> MasaStore:
        return request.config_dict[service_key].store

    console = Console(
        role="MASA", templates=TEMPLATES, authenticate=authenticate, store=store_of,
        nav=(("/console/", "Dashboard"), ("/console/devices", "Devices made"), ("/console/audit", "Audit")),
    )

    def views(app: web.Application) -> None:
        r = app.router
        r.add_get("/", dashboard)
        r.add_get("/devices", devices)
        r.add_get("/devices/{serial}", device_page)
        r.add_post("/devices/{serial}/owners/add", owner_add)
        r.add_route("*", "/devices/{serial}/owners/{spki:[0-9a-f]{64}}/remove", owner_remove)
        add_audit_views(app)

    return create_console_app(console, views)
