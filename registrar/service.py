"""The registrar's services, assembled: voucher brokering and the EST CA.

Handlers reach ``service.vouchers`` (RFC 8995 5.2-5.8, see
:mod:`registrar.voucher_service`) and ``service.est`` (RFC 7030, see
:mod:`registrar.est_service`); both share one :class:`RegistrarContext`.
Refusals from either are recorded here as evidence.
"""

from __future__ import annotations

from datetime import datetime

from brski.errors import BrskiError
from brski.pki import device_serial
from brski_web.identity import PeerIdentity
from registrar.context import DeviceStates, RegistrarContext, RegistrarKeys
from registrar.est_service import EstService
from registrar.voucher_service import VoucherService

__all__ = ["DeviceStates", "RegistrarKeys", "RegistrarService"]


class RegistrarService:
    def __init__(self, *, ctx: RegistrarContext, vouchers: VoucherService, est: EstService) -> None:
        self.ctx = ctx
        self.vouchers = vouchers
        self.est = est

    async def record_refusal(
        self, *, kind: str, err: BrskiError, peer: PeerIdentity, now: datetime, via: str | None = None
    ) -> None:
        serial = err.extra.get("serial")
        if not isinstance(serial, str) and peer.leaf is not None:
            serial = device_serial(peer.leaf)
        await self.ctx.store.append_event(
            at=now,
            kind=kind,
            device_serial=serial if isinstance(serial, str) else None,
            # 202 (RFC 8995 5.6, the approval queue) is not a refusal: not decided yet.
            outcome="info" if err.http_status == 202 else "refuse",
            check=err.check,
            detail={
                "status": err.http_status,
                "detail": err.detail,
                "client": peer.leaf.subject.rfc4514_string() if peer.leaf is not None else None,
                # RFC 8995 4.3: came through a configured join proxy (recorded, never decided on).
                **({"via": via} if via else {}),
            },
        )
