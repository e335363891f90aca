"""HTTP face of :mod:`registrar.netaccess`: what the RADIUS server calls.

Routes (on the registrar's HTTPS listener; the client is the RADIUS server,
authenticated by a TLS client certificate of the domain CA named in
``network_access.radius_subjects`` / ``radius_fingerprints``)::

    POST /netaccess/v1/authorize   rlm_rest JSON body of the EAP-TLS check
         200 {"reply:Reply-Message": ...}   the device may join
         401 {"reply:Reply-Message": ...}   refused (rlm_rest: "reject")
    POST /netaccess/v1/session     post-auth (after Access-Accept) and accounting
         204

Why rlm_rest (Debian ``freeradius-rest``) and not rlm_python3: the decision
stays in the registrar process, next to its store and event log, behind the
same TLS and problem-document plumbing as every other route; FreeRADIUS only
needs libcurl and a URL, and any RADIUS server that can call HTTPS (or a
test with curl) can use the same endpoint. rlm_python3 would load our code
into FreeRADIUS's interpreter, pin its Python version to Debian's, and need
the store reachable from the RADIUS host.

Admin API additions (same admin client certificate as /admin/v1)::

    GET /netaccess/v1/profile?authenticator=A&mac=M   the edge's gate, on port
         authorisation: {"serial", "rule", "rules": [nft rule bodies] | null}

    GET /admin/v1/network/sessions?all=1   current (or all) sessions
    PUT /admin/v1/devices/{serial}/class   {"class": "camera"}  then enforce
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from brski.errors import ChainInvalid, Forbidden, MalformedInput, NotFound, Unauthenticated
from brski.pki import Role, fingerprint_sha256, verify_chain
from brski_storage.netaccess import NetworkSession
from brski_web.identity import peer_identity
from registrar.netaccess import NetworkAccess, normalise_mac

__all__ = ["NETACCESS", "add_netaccess_routes", "session_json"]

NETACCESS: web.AppKey[NetworkAccess] = web.AppKey("registrar_netaccess", NetworkAccess)


def session_json(s: NetworkSession) -> dict[str, Any]:
    return {
        "id": s.id, "device": s.device_serial, "cert_serial": s.cert_serial, "authenticator": s.authenticator,
        "das": s.das_address, "port": s.port, "mac": s.mac, "session_id": s.session_id,
        "since": s.since.isoformat(), "ended_at": s.ended_at.isoformat() if s.ended_at else None,
        "end_reason": s.end_reason,
    }


def _radius_client(request: web.Request, na: NetworkAccess, ca_cert: Any, now: datetime) -> str:
    leaf = peer_identity(request).leaf
    if leaf is None:
        raise Unauthenticated("the network-access API needs the RADIUS server's client certificate",
                              check="netaccess.client-cert")
    try:
        verify_chain(leaf, anchors=[ca_cert], now=now, role=Role.LDEVID)
    except ChainInvalid as exc:
        raise Forbidden(f"RADIUS client certificate not valid: {exc.detail}", check="netaccess.client-chain") from exc
    subject = leaf.subject.rfc4514_string()
    fps = {f.replace(":", "").lower() for f in na.cfg.radius_fingerprints}
    if subject not in na.cfg.radius_subjects and fingerprint_sha256(leaf).lower() not in fps:
        raise Forbidden(f"{subject} is not a configured RADIUS client", check="netaccess.not-radius")
    return subject


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()  # bounded by the app's client_max_size (413 above it)
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        raise MalformedInput("body is not JSON (rlm_rest body = 'json')", check="netaccess.body") from None
    if not isinstance(body, dict):
        raise MalformedInput("body must be a JSON object", check="netaccess.body")
    return body


def add_netaccess_routes(
    app: web.Application,
    *,
    ca_cert: Callable[[web.Application], Any],
    admin: Callable[[web.Request, datetime], Awaitable[str]],
) -> None:
    """Register the routes; ``admin(request, now)`` authenticates an admin."""

    def service(request: web.Request) -> NetworkAccess:
        na = request.app.get(NETACCESS)
        if na is None or not na.cfg.enabled:
            raise Forbidden("network access is not enabled ([registrar.network_access])", check="netaccess.disabled")
        return na

    async def authorize(request: web.Request) -> web.Response:
        na, now = service(request), datetime.now(UTC)
        client = _radius_client(request, na, ca_cert(request.app), now)
        decision = await na.authorize(await _body(request), now=now, client=client)
        text = f"brski {decision.rule}: {decision.detail}"
        return web.json_response({"reply:Reply-Message": text}, status=200 if decision.allow else 401)

    async def session(request: web.Request) -> web.Response:
        na, now = service(request), datetime.now(UTC)
        client = _radius_client(request, na, ca_cert(request.app), now)
        await na.session_update(await _body(request), now=now, client=client)
        return web.Response(status=204)

    async def profile(request: web.Request) -> web.Response:
        """The edge's gate asks, on AP-STA-CONNECTED, what the device on a port may reach."""
        na, now = service(request), datetime.now(UTC)
        client = _radius_client(request, na, ca_cert(request.app), now)
        authenticator = request.query.get("authenticator", "")
        mac = normalise_mac(request.query.get("mac"))
        session = await na.store.find_network_session(authenticator=authenticator, mac=mac)
        if session is None:
            raise NotFound(f"no open session for {mac} on {authenticator!r}", check="netaccess.no-session")
        rules, rule = await na.port_rules(session.device_serial, now=now)
        await na.store.append_event(at=now, kind="netaccess.port-profile", device_serial=session.device_serial,
                                    outcome="info", check=rule,
                                    detail={"authenticator": authenticator, "mac": mac, "rules": rules, "edge": client})
        return web.json_response({"serial": session.device_serial, "rule": rule, "rules": rules})

    async def sessions(request: web.Request) -> web.Response:
        na, now = service(request), datetime.now(UTC)
        await admin(request, now)
        rows = await na.store.network_sessions(open_only=request.query.get("all") not in ("1", "true"))
        return web.json_response({"sessions": [session_json(s) for s in rows]})

    async def set_class(request: web.Request) -> web.Response:
        na, now = service(request), datetime.now(UTC)
        who = await admin(request, now)
        body = await _body(request)
        name = body.get("class")
        if not isinstance(name, str):
            raise MalformedInput("class must be a string", check="admin.body")
        serial = request.match_info["serial"]
        profile = await set_device_class(na, serial, name, by=who, now=now)
        cut = await na.enforce(now=now, serial=serial)
        return web.json_response({"serial": serial, "class": profile, "cut_off": cut})

    app.router.add_post("/netaccess/v1/authorize", authorize)
    app.router.add_post("/netaccess/v1/session", session)
    app.router.add_get("/netaccess/v1/profile", profile)
    app.router.add_get("/admin/v1/network/sessions", sessions)
    app.router.add_put("/admin/v1/devices/{serial}/class", set_class)


async def set_device_class(na: NetworkAccess, serial: str, name: str, *, by: str, now: datetime) -> str:
    """An operator classifies a device (a policy change for that device): an event."""
    from brski.netaccess import AccessPolicy

    AccessPolicy(default_class=name)  # validates the name
    profile = await na.store.set_device_profile(serial, device_class=name, mud_url=None, source=f"operator:{by}", at=now)
    await na.store.append_event(at=now, kind="netaccess.class-set", device_serial=serial, outcome="info",
                                check="netaccess.class", detail={"class": name, "by": by})
    return profile.device_class


def start_enforcement(app: web.Application, serial: str, now: datetime) -> None:
    """After a revocation through the admin API: cut the device off now, in
    the background (the HTTP answer does not wait for the DAS)."""
    na = app.get(NETACCESS)
    if na is not None and na.cfg.enabled:
        na.spawn_enforce(serial=serial, now=now)
