"""Find a registrar the way a pledge on a bare link does (RFC 8995 4.1, Appendix B).

The pledge browses mDNS on its links for join proxies (``_brski-proxy._tcp``)
and registrars (``_brski-registrar._tcp``), then tries the candidates in order
(proxies first, then registrars; SRV priority and weight within each kind),
each within a time budget. An announcement is not trusted: a candidate that
refuses, times out or returns a voucher that does not verify costs its time
budget and the pledge moves on (RFC 8995 4.1: "The pledge ... MUST try the
other" candidates), so a rogue announcement costs time, never trust; the voucher
check itself is the one :func:`pledge_sim.service.enroll_one` always runs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from brski.pki import device_serial
from brski_net.mdns import Candidate, browse, link_local_interfaces
from pledge_sim.config import PledgeConfig
from pledge_sim.service import EnrollResult, Identity, enroll_one
from pledge_sim.session import load_identity as _load_identity
from pledge_sim.session import step as _step

__all__ = ["Attempt", "DiscoveryOutcome", "discover_and_enroll"]

BrowseFn = Callable[..., Awaitable[list[Candidate]]]
EnrollFn = Callable[..., Awaitable[EnrollResult]]


@dataclass(frozen=True, kw_only=True)
class Attempt:
    candidate: Candidate
    ok: bool
    failed_check: str | None
    detail: str | None
    seconds: float

    def to_json(self) -> dict[str, Any]:
        c = self.candidate
        return {"kind": c.kind, "name": c.name, "address": c.address, "port": c.port, "ok": self.ok,
                "failed_check": self.failed_check, "detail": self.detail, "seconds": self.seconds}


@dataclass(frozen=True, kw_only=True)
class DiscoveryOutcome:
    result: EnrollResult
    interfaces: tuple[str, ...]
    found: tuple[Candidate, ...] = ()
    attempts: tuple[Attempt, ...] = ()
    chosen: Candidate | None = None
    discovery_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out = self.result.to_json()
        out["discovered"] = self.chosen.kind if self.chosen else None
        out["via"] = self.chosen.address if self.chosen else None
        out["discovery"] = {
            "interfaces": list(self.interfaces),
            "seconds": self.discovery_s,
            "found": [{"kind": c.kind, "name": c.name, "address": c.address, "port": c.port} for c in self.found],
            "attempts": [a.to_json() for a in self.attempts],
        }
        return out


def _failed(serial: str, check: str, detail: str) -> EnrollResult:
    return EnrollResult(ok=False, serial=serial, failed_check=check, detail=detail)


async def discover_and_enroll(
    cfg: PledgeConfig,
    *,
    log: Any,
    identity: Identity | None = None,
    browse_fn: BrowseFn = browse,
    enroll_fn: EnrollFn = enroll_one,
    interfaces_fn: Callable[[], Iterable[str]] = link_local_interfaces,
) -> DiscoveryOutcome:
    identity = identity or _load_identity(cfg)
    serial = device_serial(identity[0]) or "?"
    interfaces = tuple(cfg.interfaces or interfaces_fn())
    if not interfaces:
        _step(log, "discovery-failed", reason="no link with an IPv6 link-local address")
        return DiscoveryOutcome(
            result=_failed(serial, "pledge.discovery.no-link", "no interface with an IPv6 link-local address"),
            interfaces=(),
        )
    _step(log, "discovery", interfaces=",".join(interfaces), timeout=cfg.discovery_timeout)
    t0 = time.perf_counter()
    found: Sequence[Candidate] = await browse_fn(interfaces, timeout=cfg.discovery_timeout)
    took = round(time.perf_counter() - t0, 3)
    for cand in found:
        _step(log, "discovered", kind=cand.kind, name=cand.name, address=cand.address, port=cand.port,
              priority=cand.priority)
    if not found:
        detail = (
            f"no join proxy (_brski-proxy._tcp) and no registrar (_brski-registrar._tcp) answered "
            f"on {', '.join(interfaces)} within {cfg.discovery_timeout:g} s"
        )
        _step(log, "discovery-failed", reason=detail)
        return DiscoveryOutcome(result=_failed(serial, "pledge.discovery.nothing-found", detail),
                                interfaces=interfaces, discovery_s=took)
    attempts: list[Attempt] = []
    last: EnrollResult | None = None
    for cand in found:
        _step(log, "candidate", kind=cand.kind, name=cand.name, address=cand.address, port=cand.port,
              budget=cfg.candidate_timeout)
        # An IP literal: no SNI (RFC 6066 3); the certificate is judged by the voucher, not by name.
        c_cfg = replace(cfg, registrar_url=cand.url, host=cand.address, port=cand.port, server_hostname="")
        started = time.perf_counter()
        try:
            async with asyncio.timeout(cfg.candidate_timeout):
                r = await enroll_fn(c_cfg, log=log, identity=identity)
        except TimeoutError:
            r = _failed(serial, "pledge.discovery.candidate-timeout",
                        f"{cand.kind} {cand.address} port {cand.port}: no result within {cfg.candidate_timeout:g} s")
        seconds = round(time.perf_counter() - started, 3)
        attempts.append(Attempt(candidate=cand, ok=r.ok, failed_check=r.failed_check, detail=r.detail, seconds=seconds))
        if r.ok:
            _step(log, "chosen", kind=cand.kind, name=cand.name, address=cand.address, port=cand.port, seconds=seconds)
            return DiscoveryOutcome(result=r, interfaces=interfaces, found=tuple(found), attempts=tuple(attempts),
                                    chosen=cand, discovery_s=took)
        _step(log, "candidate-rejected", kind=cand.kind, address=cand.address, check=r.failed_check, detail=r.detail)
        last = r
    assert last is not None
    summary = "; ".join(f"{a.candidate.kind} {a.candidate.address}: {a.failed_check}" for a in attempts)
    result = replace(last, failed_check="pledge.discovery.exhausted",
                     detail=f"{len(attempts)} candidate(s), none onboarded the pledge: {summary}")
    return DiscoveryOutcome(result=result, interfaces=interfaces, found=tuple(found), attempts=tuple(attempts),
                            discovery_s=took)
