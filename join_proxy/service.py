"""Run the join proxy: find the registrar, listen, announce, relay until SIGTERM."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal

from brski.errors import LocalError
from brski_net.mdns import SERVICE_PROXY, SERVICE_REGISTRAR, Announcer, browse
from brski_web.logs import kv
from join_proxy.config import ProxyConfig, Upstream
from join_proxy.relay import CircuitRelay

__all__ = ["find_registrars", "serve"]

log = logging.getLogger("join_proxy")


async def find_registrars(cfg: ProxyConfig) -> list[Upstream]:
    """The configured registrar, or those announced on ``registrar_interfaces``
    (RFC 8995 4.1: the proxy discovers the registrar like a pledge would)."""
    if cfg.registrar is not None:
        return [cfg.registrar]
    found = await browse(
        cfg.registrar_interfaces, services=(SERVICE_REGISTRAR,), timeout=cfg.discovery_timeout_s
    )
    for cand in found:
        log.info(kv("registrar-found", name=cand.name, address=cand.address, port=cand.port, interface=cand.interface))
    if not found:
        raise LocalError(
            f"no registrar announced on {', '.join(cfg.registrar_interfaces)} within "
            f"{cfg.discovery_timeout_s:g} s (set registrar = \"host:port\" to skip discovery)",
            check="proxy.no-registrar",
        )
    return [Upstream(host=c.address, port=c.port) for c in found]


REDISCOVER_AFTER_S = 10.0


class _Registrars:
    """The registrars the relay uses; found again by mDNS (``registrar = "auto"``)
    when none of them answers, at most once per :data:`REDISCOVER_AFTER_S`."""

    def __init__(self, cfg: ProxyConfig, found: list[Upstream]) -> None:
        self.cfg, self.current = cfg, found
        self._task: asyncio.Task[None] | None = None
        self._last = asyncio.get_running_loop().time()

    def unreachable(self) -> None:
        loop = asyncio.get_running_loop()
        if self.cfg.registrar is not None or (self._task is not None and not self._task.done()):
            return
        if loop.time() - self._last < REDISCOVER_AFTER_S:
            return
        self._last = loop.time()
        self._task = loop.create_task(self._rediscover())

    async def _rediscover(self) -> None:
        try:
            found = await find_registrars(self.cfg)
        except LocalError as exc:
            log.warning(kv("registrar-rediscovery-failed", detail=exc.detail))
            return
        if found != self.current:
            log.info(kv("registrar-changed", before=",".join(map(str, self.current)), now=",".join(map(str, found))))
            self.current = found

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


async def serve(cfg: ProxyConfig, *, stop: asyncio.Event | None = None) -> int:
    registrars = _Registrars(cfg, await find_registrars(cfg))
    upstreams = registrars.current
    relay = CircuitRelay(cfg.limits, lambda: registrars.current, on_unreachable=registrars.unreachable)
    server = await asyncio.start_server(relay.handle, cfg.listen_host, cfg.listen_port, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    announcer = None
    if cfg.announce_interfaces:
        announcer = Announcer(
            service=SERVICE_PROXY,
            instance=cfg.instance,
            port=port,
            interfaces=cfg.announce_interfaces,
            addresses=cfg.announce_addresses,
        )
        try:
            await announcer.start()
        except (LookupError, OSError) as exc:
            server.close()
            raise LocalError(f"cannot announce on {', '.join(cfg.announce_interfaces)}: {exc}", check="proxy.announce") from exc
    log.info(
        kv("listening", role="proxy", host=cfg.listen_host, port=port, pid=os.getpid(),
           registrar=",".join(str(u) for u in upstreams), announce=",".join(cfg.announce_interfaces) or None)
    )
    if cfg.ready_file is not None:
        tmp = cfg.ready_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"url": f"tcp://[{cfg.listen_host}]:{port}", "port": port, "pid": os.getpid(),
                                   "registrar": [str(u) for u in upstreams]}))
        tmp.replace(cfg.ready_file)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    try:
        await stop.wait()
    finally:
        log.info(kv("stopping", role="proxy", circuits=relay.opened, refused=dict(relay.refused) or None,
                    closed=dict(relay.closed) or None))
        await registrars.close()
        if announcer is not None:
            await announcer.stop()
        server.close()
        await server.wait_closed()
        if cfg.ready_file is not None:
            cfg.ready_file.unlink(missing_ok=True)
    return 0
