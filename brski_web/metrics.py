"""Prometheus metrics, liveness and readiness for the MASA and the registrar.

A separate plain-HTTP listener (``metrics_port``, bound to ``metrics_host``,
default the server's host) serves ``/metrics`` (Prometheus text format),
``/healthz`` (the process answers) and ``/readyz`` (the store answers a
read and every signing key signs a probe that its certificate verifies: a
token that went away or a locked PIN makes the role unready). It is not the
registrar's CRL/OCSP port: that one is meant to be reachable by anyone, the
metrics are for the operator's scraper.

Several worker processes: prometheus-client's multiprocess mode. Set
``PROMETHEUS_MULTIPROC_DIR`` to an empty directory before the workers start
(it is read when prometheus_client is imported); each worker then writes its
samples to files there, any worker answering a scrape sums them (counters and
histograms add up, ``brski_workers`` counts live workers, the write-queue gauge
adds the workers' queues), and the listener binds with SO_REUSEPORT so every
worker can serve the one port. Empty the directory when the service restarts.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as prom_multiprocess

from brski.errors import BrskiError
from brski_web.logs import kv

__all__ = ["METRICS", "Metrics", "ReadinessCheck", "install"]

log = logging.getLogger("brski.metrics")

#: A readiness check: raises (BrskiError or anything) when not ready.
ReadinessCheck = Callable[[web.Application], Awaitable[None]]

# Successful answers that are an onboarding or an enrolment (RFC 8995 5.5/5.6: a
# voucher delivered; RFC 7030 4.2.1/4.2.2: a certificate issued).
_ONBOARDING = "/.well-known/brski/requestvoucher"
_ENROLMENTS = {"/.well-known/est/simpleenroll": "enroll", "/.well-known/est/simplereenroll": "reenroll"}
# Methods counted by name; anything else a client invents is "other" (bounded series).
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})
# Request latency buckets (seconds): a voucher round trip is tens of ms, a
# slow MASA seconds.
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_STORE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class Metrics:
    """One role's metrics, in a registry of its own (several apps in one
    test process must not share the global one)."""

    def __init__(self, role: str) -> None:
        self.role = role
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "brski_http_requests", "HTTP requests answered, by route, method and status",
            ["endpoint", "method", "status"], registry=r,
        )
        self.latency = Histogram(
            "brski_http_request_duration_seconds", "Time to answer a request, by route",
            ["endpoint"], buckets=_BUCKETS, registry=r,
        )
        self.refusals = Counter(
            "brski_refusals", "Requests refused, by the check that failed (the problem body's check)",
            ["check", "status"], registry=r,
        )
        self.onboardings = Counter(
            "brski_onboardings", "Vouchers delivered (registrar: to pledges; MASA: to registrars)", registry=r,
        )
        self.enrollments = Counter(
            "brski_enrollments", "LDevIDs issued over EST, by operation", ["operation"], registry=r,
        )
        self.handshake_refusals = Counter(
            "brski_tls_handshake_refusals", "TLS handshakes refused by the server, by transport event",
            ["event"], registry=r,
        )
        self.masa_latency = Histogram(
            "brski_masa_request_duration_seconds", "Registrar to MASA round trip, by BRSKI call and outcome",
            ["call", "outcome"], buckets=_BUCKETS, registry=r,
        )
        self.store_write = Histogram(
            "brski_store_write_duration_seconds", "From submitting a write to its durable commit",
            buckets=_STORE_BUCKETS, registry=r,
        )
        self.store_queue = Gauge(
            "brski_store_writes_in_flight", "Writes submitted and not yet committed (the write queue)",
            registry=r, multiprocess_mode="livesum",
        )
        self.workers = Gauge(
            "brski_workers", "Worker processes serving this role", registry=r, multiprocess_mode="livesum",
        )
        self.workers.set(1)
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._enrolled: dict[str, Any] = {}  # endpoint -> its brski_enrollments child
        self.ready = Gauge(
            "brski_ready", "1 when the last readiness check passed", registry=r, multiprocess_mode="livemax",
        )

    # store.observe_writes(metrics): brski_storage.WriteObserver
    def write_started(self) -> None:
        self.store_queue.inc()

    def write_finished(self, seconds: float) -> None:
        self.store_queue.dec()
        self.store_write.observe(seconds)

    def masa_round_trip(self, seconds: float, call: str, outcome: str) -> None:
        self.masa_latency.labels(call, outcome).observe(seconds)

    def handshake_refused(self, event: str) -> None:
        self.handshake_refusals.labels(event).inc()

    def refused(self, err: BrskiError) -> None:
        self.refusals.labels(err.check, str(err.http_status)).inc()

    def observe(self, request: web.Request, status: int, seconds: float) -> None:
        """One answered request (brski_web.middleware.request_middleware): the
        status the client got, counted under the route's pattern."""
        method = request.method if request.method in _METHODS else "other"
        self.answered(_endpoint(request), method, status, seconds)

    def answered(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        # Children cached per label set: labels() takes a lock and builds a key each call.
        key = (endpoint, method, status)
        children = self._children.get(key)
        if children is None:
            children = (self.requests.labels(endpoint, method, str(status)), self.latency.labels(endpoint))
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)
        if status == 200 and method == "POST":
            if endpoint == _ONBOARDING:
                self.onboardings.inc()
            elif endpoint in _ENROLMENTS:
                child = self._enrolled.get(endpoint)
                if child is None:  # made on first use, so a series appears with its first count
                    child = self._enrolled[endpoint] = self.enrollments.labels(_ENROLMENTS[endpoint])
                child.inc()

    def exposition(self) -> bytes:
        if multiprocess_dir() is None:
            return generate_latest(self.registry)
        merged = CollectorRegistry()
        prom_multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
        return generate_latest(merged)


METRICS: web.AppKey[Metrics] = web.AppKey("metrics", Metrics)


def _endpoint(request: web.Request) -> str:
    # The route's pattern, not the raw path: a scanner's random paths must not
    # create a time series each.
    info = request.match_info
    route = getattr(info, "route", None)
    resource = getattr(route, "resource", None)
    return resource.canonical if resource is not None else "unmatched"


async def _readiness(app: web.Application, checks: dict[str, ReadinessCheck]) -> tuple[bool, dict[str, str]]:
    results: dict[str, str] = {}
    for name, check in checks.items():
        try:
            await check(app)
            results[name] = "ok"
        except BrskiError as exc:
            results[name] = f"{exc.check}: {exc.detail}"
        except Exception as exc:
            results[name] = f"error: {exc!r}"[:300]
    return all(v == "ok" for v in results.values()), results


def _health_app(main: web.Application, metrics: Metrics, checks: dict[str, ReadinessCheck]) -> web.Application:
    async def get_metrics(_request: web.Request) -> web.Response:
        return web.Response(body=metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"status": "alive", "role": metrics.role, "pid": os.getpid()})

    async def readyz(_request: web.Request) -> web.Response:
        ready, results = await _readiness(main, checks)
        metrics.ready.set(1 if ready else 0)
        if not ready:
            log.warning(kv("not-ready", role=metrics.role, **results))
        return web.json_response(
            {"status": "ready" if ready else "not ready", "role": metrics.role, "checks": results},
            status=200 if ready else 503,
        )

    app = web.Application()
    app.router.add_get("/metrics", get_metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


def install(
    app: web.Application,
    *,
    role: str,
    host: str,
    port: int | None,
    checks: dict[str, ReadinessCheck],
) -> Metrics:
    """Count ``app``'s requests (its :func:`brski_web.middleware.request_middleware`
    reports each to the :class:`Metrics` installed here) and, with a ``port``, serve /metrics, /healthz and /readyz
    there while ``app`` runs. Append after the contexts that open the store
    and keys: the readiness checks use them."""
    metrics = Metrics(role)
    app[METRICS] = metrics
    if port is None:
        return metrics

    async def serve(_app: web.Application) -> AsyncIterator[None]:
        runner = web.AppRunner(_health_app(app, metrics, checks), access_log=None, handle_signals=False)
        await runner.setup()
        multi = multiprocess_dir() is not None
        site = web.TCPSite(runner, host, port, reuse_address=True, reuse_port=multi or None)
        await site.start()
        sockets: list[Any] = getattr(site._server, "sockets", None) or []
        bound = sockets[0].getsockname()[1] if sockets else port
        log.info(kv("metrics-listening", role=role, url=f"http://{host}:{bound}", multiprocess=multi))
        try:
            yield
        finally:
            await runner.cleanup()
            if multi:
                prom_multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]

    app.cleanup_ctx.append(serve)
    return metrics
