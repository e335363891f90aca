"""The registrar as 802.1X policy decision point and RFC 5176 Dynamic
Authorization Client (continuous assurance).

* :meth:`NetworkAccess.authorize`: the RADIUS server, once EAP-TLS verified
  the client's LDevID (chain to the domain CA, OCSP), asks whether the
  device may join; the pure decision :func:`brski.netaccess.network_access`
  answers, and the answer is an event naming its rule.
* :meth:`NetworkAccess.session_update`: post-auth (Access-Accept sent) and
  accounting (RFC 2866 Start/Stop) keep the table of current sessions
  (authenticator, port, MAC, since).
* :meth:`NetworkAccess.enforce`: decide again for every open session; a
  session whose decision became a refusal (revocation, decommission, a class
  the policy no longer allows) is cut off with a Disconnect-Request to the
  authenticator's DAS, retried until it answers. It runs right after an
  admin-API revocation and every ``assurance_interval_s`` (which picks up
  changes made with the CLI on the store, or a policy changed at restart).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from brski.admission import Decision
from brski.errors import BrskiError, ConfigError, MalformedInput
from brski.mud import nft_rules
from brski.netaccess import MUD_FAILURE_POLICIES, AccessPolicy, mud_gate, network_access
from brski.radius import DisconnectRequest, DisconnectResponse, decode_response
from brski_storage.base import RegistrarStore
from brski_storage.netaccess import NetworkSession
from brski_web.logs import kv
from registrar.mud_service import MudService

__all__ = ["NetworkAccess", "NetworkAccessConfig", "parse_network_access", "rest_attribute"]

log = logging.getLogger("brski.registrar.netaccess")
MAX_PENDING = 4096  # authorised but not yet accepted (post-auth) sessions held in memory


@dataclass(frozen=True, kw_only=True)
class NetworkAccessConfig:
    """``[registrar.network_access]``: who may ask, the policy, the DAS."""

    enabled: bool = False
    # Clients of /netaccess/v1 (the RADIUS server): TLS client certificates of
    # the domain CA, by RFC 4514 subject or SHA-256 fingerprint.
    radius_subjects: tuple[str, ...] = ()
    radius_fingerprints: tuple[str, ...] = ()
    policy: AccessPolicy = field(default_factory=AccessPolicy)
    # RFC 5176: the Disconnect-Request goes to the session's NAS-IP-Address
    # on das_port, with the secret shared with the authenticators' DAS.
    das_secret: bytes = b""
    das_port: int = 3799
    # NAS-Identifier -> "IPv4:port" of its DAS, for authenticators whose DAS
    # is not at NAS-IP-Address:das_port (several hostapd on one host).
    das_endpoints: Mapping[str, str] = field(default_factory=dict)
    das_timeout_s: float = 1.0
    das_attempts: int = 5
    assurance_interval_s: float = 2.0
    # RFC 8520: when a device's MUD file cannot be fetched or verified,
    # "deny" keeps it off the network, "default" applies mud_default_rules
    # (nftables rule bodies, e.g. "ip daddr 10.0.0.53 udp dport 53 accept").
    mud_failure: str = "deny"
    mud_default_rules: tuple[str, ...] = ()
    mud_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if self.mud_failure not in MUD_FAILURE_POLICIES:
            raise ConfigError(f"mud_failure must be one of {MUD_FAILURE_POLICIES}", check="config.netaccess-mud")
        if self.enabled and not (self.radius_subjects or self.radius_fingerprints):
            raise ConfigError(
                "network_access needs radius_subjects or radius_fingerprints", check="config.netaccess-clients"
            )
        if not 1 <= self.das_port <= 65535:
            raise ConfigError("das_port out of range", check="config.netaccess-das")
        if not (0 < self.das_timeout_s <= 30 and 1 <= self.das_attempts <= 20 and self.assurance_interval_s > 0):
            raise ConfigError("das_timeout_s 0..30, das_attempts 1..20, assurance_interval_s > 0",
                              check="config.netaccess-das")


_KEYS = {
    "radius_subjects", "radius_fingerprints", "allowed_classes", "denied_classes", "default_class",
    "das_secret", "das_secret_file", "das_port", "das_endpoints", "das_timeout_s", "das_attempts", "assurance_interval_s",
    "mud_failure", "mud_default_rules", "mud_timeout_s",
}


def parse_network_access(raw: Any, base: Path) -> NetworkAccessConfig:
    """The ``network_access`` table of ``[registrar]`` (absent: disabled)."""
    if raw is None:
        return NetworkAccessConfig()
    if not isinstance(raw, dict):
        raise ConfigError("[registrar.network_access] must be a table", check="config.syntax")
    unknown = set(raw) - _KEYS
    if unknown:
        raise ConfigError(f"unknown key(s) in network_access: {', '.join(sorted(unknown))}", check="config.unknown-key")

    def strings(key: str) -> tuple[str, ...]:
        value = raw.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"network_access.{key} must be a list of strings", check="config.netaccess")
        return tuple(value)

    secret = raw.get("das_secret")
    if "das_secret_file" in raw:
        path = Path(raw["das_secret_file"])
        path = path if path.is_absolute() else base / path
        try:
            secret = path.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read das_secret_file {path}: {exc.strerror}", check="config.netaccess-das") from exc
    if secret is not None and not isinstance(secret, str):
        raise ConfigError("das_secret must be a string", check="config.netaccess-das")
    return NetworkAccessConfig(
        enabled=True,
        radius_subjects=strings("radius_subjects"),
        radius_fingerprints=strings("radius_fingerprints"),
        policy=AccessPolicy(
            allowed_classes=frozenset(strings("allowed_classes")),
            denied_classes=frozenset(strings("denied_classes")),
            default_class=str(raw.get("default_class", "default")),
        ),
        das_secret=(secret or "").encode(),
        das_port=int(raw.get("das_port", 3799)),
        das_endpoints=_endpoints(raw.get("das_endpoints", {})),
        das_timeout_s=float(raw.get("das_timeout_s", 1.0)),
        das_attempts=int(raw.get("das_attempts", 5)),
        assurance_interval_s=float(raw.get("assurance_interval_s", 2.0)),
        mud_failure=str(raw.get("mud_failure", "deny")),
        mud_default_rules=strings("mud_default_rules"),
        mud_timeout_s=float(raw.get("mud_timeout_s", 10.0)),
    )


def _endpoints(raw: Any) -> dict[str, str]:
    if not isinstance(raw, dict):
        raise ConfigError("network_access.das_endpoints is a table NAS-Identifier = \"IPv4:port\"",
                          check="config.netaccess-das")
    for where in raw.values():
        _split_endpoint(str(where))
    return {str(k): str(v) for k, v in raw.items()}


def _split_endpoint(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    try:
        if not sep or str(ipaddress.ip_address(host).version) != "4" or not 1 <= int(port) <= 65535:
            raise ValueError
    except ValueError:
        raise ConfigError(f"DAS endpoint {value!r} is not IPv4:port (hostapd's DAS is IPv4 only)",
                          check="config.netaccess-das") from None
    return host, int(port)


def rest_attribute(body: Mapping[str, Any], name: str) -> str | None:
    """First value of ``name`` in an rlm_rest JSON body (``{"Attr": {"type":
    ..., "value": [...]}}``), as text; None if absent."""
    entry = body.get(name)
    if entry is None:
        return None
    if isinstance(entry, dict):
        values = entry.get("value")
        if isinstance(values, list) and values:
            return str(values[0])
        if isinstance(values, str | int):
            return str(values)
        return None
    return str(entry)


def normalise_mac(value: str | None) -> str:
    """Calling-Station-Id (RFC 3580 3.21: "00-10-A4-23-19-C0") as aa:bb:..."""
    hexdigits = "".join(c for c in (value or "") if c.isalnum()).lower()
    if len(hexdigits) != 12 or any(c not in "0123456789abcdef" for c in hexdigits):
        raise MalformedInput(f"Calling-Station-Id {value!r} is not a MAC address", check="netaccess.calling-station-id")
    return ":".join(hexdigits[i : i + 2] for i in range(0, 12, 2))


def _cert_serial(value: str | None) -> str | None:
    """TLS-Client-Cert-Serial as FreeRADIUS gives it (hex, maybe 0x-prefixed)."""
    if not value:
        return None
    text = value.lower().removeprefix("0x").replace(":", "")
    try:
        return format(int(text, 16), "x")
    except ValueError:
        raise MalformedInput(f"TLS-Client-Cert-Serial {value!r} is not hex", check="netaccess.cert-serial") from None


@dataclass(frozen=True, kw_only=True)
class _Where:
    authenticator: str
    das_address: str | None
    port: str | None
    mac: str
    session_id: str | None

    @classmethod
    def from_rest(cls, body: Mapping[str, Any]) -> _Where:
        nas_ip = rest_attribute(body, "NAS-IP-Address")
        authenticator = rest_attribute(body, "NAS-Identifier") or nas_ip
        if not authenticator:
            raise MalformedInput("neither NAS-Identifier nor NAS-IP-Address", check="netaccess.nas")
        return cls(
            authenticator=authenticator,
            das_address=nas_ip,
            port=rest_attribute(body, "NAS-Port-Id") or rest_attribute(body, "NAS-Port"),
            mac=normalise_mac(rest_attribute(body, "Calling-Station-Id")),
            session_id=rest_attribute(body, "Acct-Session-Id"),
        )


class _DasProtocol(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.answers: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.answers.put_nowait(data)


class NetworkAccess:
    def __init__(self, store: RegistrarStore, cfg: NetworkAccessConfig, mud: MudService | None = None) -> None:
        self.store = store
        self.cfg = cfg
        self.mud = mud
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)
        # (authenticator, mac) -> (device serial, cert serial): decided in the
        # EAP-TLS check, turned into a session when the Access-Accept goes out.
        self._pending: dict[tuple[str, str], tuple[str, str]] = {}
        self._inflight: set[int] = set()
        self._tasks: set[asyncio.Task[int]] = set()

    def spawn_enforce(self, *, serial: str | None, now: datetime) -> None:
        task = asyncio.get_running_loop().create_task(self.enforce(now=now, serial=serial))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def device_class(self, serial: str) -> str:
        profile = await self.store.get_device_profile(serial)
        return profile.device_class if profile else self.cfg.policy.default_class

    async def decide(self, cert_serial: str | None, *, now: datetime) -> tuple[Decision, str | None]:
        """The decision for the holder of ``cert_serial``, and the device's serial."""
        record = await self.store.get_certificate(cert_serial) if cert_serial else None
        if record is None or record.state == "reserved":
            return network_access(cert_known=False, cert_state=None, device_state=None,
                                  device_class=self.cfg.policy.default_class, policy=self.cfg.policy), None
        device = await self.store.get_device(record.device_serial)
        decision = network_access(
            cert_known=True,
            cert_state=record.state,
            device_state=device.state if device else None,
            device_class=await self.device_class(record.device_serial),
            policy=self.cfg.policy,
        )
        if decision.allow and self.mud is not None:
            profile = await self.store.get_device_profile(record.device_serial)
            url = profile.mud_url if profile else None
            outcome = await self.mud.outcome(record.device_serial, url, now=now) if url else None
            gate = mud_gate(mud_url=url, profile_ok=bool(outcome and outcome.profile),
                            failure_policy=self.cfg.mud_failure, problem=outcome.problem if outcome else None)
            if not gate.allow:
                return gate, record.device_serial
        return decision, record.device_serial

    async def port_rules(self, serial: str, *, now: datetime) -> tuple[list[str] | None, str]:
        """The nftables rule bodies for the device's port (None: unrestricted)
        and the rule that chose them."""
        profile = await self.store.get_device_profile(serial)
        if self.mud is None or profile is None or not profile.mud_url:
            return None, "netaccess.mud-none"
        outcome = await self.mud.outcome(serial, profile.mud_url, now=now)
        if outcome.profile is not None:
            return nft_rules(outcome.profile), "netaccess.mud-profile"
        return list(self.cfg.mud_default_rules), "netaccess.mud-default-profile"

    async def authorize(self, body: Mapping[str, Any], *, now: datetime, client: str) -> Decision:
        where = _Where.from_rest(body)
        cert_serial = _cert_serial(rest_attribute(body, "TLS-Client-Cert-Serial"))
        decision, serial = await self.decide(cert_serial, now=now)
        await self.store.append_event(
            at=now, kind="netaccess.decision", device_serial=serial,
            outcome="allow" if decision.allow else "refuse", check=decision.rule,
            detail={"detail": decision.detail, "cert_serial": cert_serial, "authenticator": where.authenticator,
                    "port": where.port, "mac": where.mac, "radius": client},
        )
        log.info(kv("netaccess-decision", serial=serial, allow=decision.allow, rule=decision.rule, mac=where.mac))
        if decision.allow and serial is not None and cert_serial is not None:
            if len(self._pending) >= MAX_PENDING:
                self._pending.pop(next(iter(self._pending)))
            self._pending[(where.authenticator, where.mac)] = (serial, cert_serial)
        return decision

    async def session_update(self, body: Mapping[str, Any], *, now: datetime, client: str) -> NetworkSession | None:
        """Post-auth (no Acct-Status-Type) or accounting Start/Stop."""
        status = rest_attribute(body, "Acct-Status-Type")
        if status in ("Accounting-On", "Accounting-Off", "7", "8"):
            return None  # the NAS (re)started: about no session (RFC 2866 5.1)
        where = _Where.from_rest(body)
        if status in ("Stop", "2"):
            open_ = await self.store.find_network_session(authenticator=where.authenticator, mac=where.mac)
            if open_ is None:
                return None
            cause = rest_attribute(body, "Acct-Terminate-Cause") or "stop"
            ended = await self.store.end_network_session(open_.id, at=now, reason=f"accounting-stop:{cause}")
            await self._session_event(now, "netaccess.session-ended", open_, reason=f"accounting-stop:{cause}", client=client)
            return ended
        if status is not None:
            return await self.store.find_network_session(authenticator=where.authenticator, mac=where.mac)
        pending = self._pending.pop((where.authenticator, where.mac), None)
        if pending is None:
            # An Access-Accept the registrar did not authorise (a RADIUS
            # configuration without the check-eap-tls call): recorded, no session.
            await self.store.append_event(
                at=now, kind="netaccess.accept-unknown", device_serial=None, outcome="refuse",
                check="netaccess.no-decision", detail={"authenticator": where.authenticator, "mac": where.mac, "radius": client},
            )
            return None
        serial, cert_serial = pending
        das = self.cfg.das_endpoints.get(where.authenticator)
        if das is None and where.das_address and ":" not in where.das_address:
            das = f"{where.das_address}:{self.cfg.das_port}"
        session = await self.store.open_network_session(
            device_serial=serial, cert_serial=cert_serial, authenticator=where.authenticator,
            das_address=das, port=where.port, mac=where.mac, session_id=where.session_id, at=now,
        )
        await self._session_event(now, "netaccess.session-opened", session, reason="access-accept", client=client)
        return session

    async def _session_event(self, now: datetime, kind: str, s: NetworkSession, *, reason: str, client: str | None = None) -> None:
        await self.store.append_event(
            at=now, kind=kind, device_serial=s.device_serial, outcome="info", check=None,
            detail={"session": s.id, "authenticator": s.authenticator, "port": s.port, "mac": s.mac,
                    "cert_serial": s.cert_serial, "reason": reason, "radius": client},
        )

    # --- continuous assurance (RFC 5176) ---------------------------------------------

    async def enforce(self, *, now: datetime, serial: str | None = None) -> int:
        """Decide again for open sessions (of ``serial``); disconnect refused ones.
        Returns how many sessions were cut off."""
        cut = 0
        for s in await self.store.network_sessions(device_serial=serial):
            if s.id in self._inflight:
                continue
            decision, _ = await self.decide(s.cert_serial, now=now)
            if decision.allow:
                continue
            self._inflight.add(s.id)
            try:
                cut += await self.disconnect(s, decision, now=now)
            finally:
                self._inflight.discard(s.id)
        return cut

    async def disconnect(self, s: NetworkSession, decision: Decision, *, now: datetime) -> int:
        detail = {"session": s.id, "authenticator": s.authenticator, "das": s.das_address, "mac": s.mac,
                  "port": s.port, "reason": decision.detail}
        await self.store.append_event(at=now, kind="netaccess.disconnect-requested", device_serial=s.device_serial,
                                      outcome="refuse", check=decision.rule, detail=detail)
        if not s.das_address or not self.cfg.das_secret:
            await self.store.append_event(at=now, kind="netaccess.disconnect-impossible", device_serial=s.device_serial,
                                          outcome="info", check="netaccess.das-unknown", detail=detail)
            return 0
        request = DisconnectRequest(
            identifier=secrets.randbelow(256),
            event_timestamp=int(now.timestamp()),
            calling_station_id=s.mac.replace(":", "-").upper(),
            user_name=None,
            acct_session_id=s.session_id,
        )
        host, port = _split_endpoint(s.das_address)
        answer, attempts = await self._send(host, port, request)
        now = self.clock()  # the outcome is recorded when it happened, after the retransmissions
        if answer is None:
            log.warning(kv("das-unanswered", das=s.das_address, mac=s.mac, attempts=attempts))
            await self.store.append_event(at=now, kind="netaccess.disconnect-unanswered", device_serial=s.device_serial,
                                          outcome="info", check="netaccess.das-timeout", detail={**detail, "attempts": attempts})
            return 0
        if answer.acked or answer.error_cause == 503:  # 503: the NAS holds no such session any more
            reason = f"disconnected:{decision.rule}" if answer.acked else "gone"
            await self.store.append_event(
                at=now, kind="netaccess.cut-off", device_serial=s.device_serial, outcome="allow", check=decision.rule,
                detail={**detail, "attempts": attempts, "answer": "ACK" if answer.acked else answer.error_text},
            )
            await self.store.end_network_session(s.id, at=now, reason=reason)
            log.info(kv("cut-off", serial=s.device_serial, mac=s.mac, rule=decision.rule, attempts=attempts))
            return 1
        await self.store.append_event(at=now, kind="netaccess.disconnect-nak", device_serial=s.device_serial,
                                      outcome="info", check="netaccess.das-nak",
                                      detail={**detail, "attempts": attempts, "error_cause": answer.error_text})
        return 0

    async def _send(self, host: str, port: int, request: DisconnectRequest) -> tuple[DisconnectResponse | None, int]:
        """RFC 5176 3 / RFC 2865 2.5: retransmit the same packet (same Identifier
        and Authenticator) until a valid answer or ``das_attempts``, doubling the wait."""
        packet, authenticator = request.encode(self.cfg.das_secret)
        loop = asyncio.get_running_loop()
        transport, proto = await loop.create_datagram_endpoint(_DasProtocol, remote_addr=(host, port))
        try:
            wait = self.cfg.das_timeout_s
            for attempt in range(1, self.cfg.das_attempts + 1):
                transport.sendto(packet)
                deadline = loop.time() + wait
                while (left := deadline - loop.time()) > 0:
                    try:
                        data = await asyncio.wait_for(proto.answers.get(), left)
                    except TimeoutError:
                        break
                    try:
                        return decode_response(data, secret=self.cfg.das_secret, request_authenticator=authenticator,
                                               identifier=request.identifier), attempt
                    except BrskiError as exc:  # a forged or stray datagram: keep waiting
                        log.warning(kv("das-bad-answer", das=host, error=str(exc)))
                wait = min(wait * 2, 8.0)
            return None, self.cfg.das_attempts
        finally:
            transport.close()

    async def assurance_loop(self, now: Any) -> None:
        """Run :meth:`enforce` every ``assurance_interval_s`` (``now`` is the clock)."""
        while True:
            try:
                await self.enforce(now=now())
            except Exception:  # keep assuring: one failure must not end the loop
                log.exception("netaccess enforce failed")
            await asyncio.sleep(self.cfg.assurance_interval_s)
