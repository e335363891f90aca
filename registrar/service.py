"""The registrar's services, assembled: voucher brokering and the EST CA.

Handlers reach ``service.vouchers`` (RFC 8995 5.2-5.8, see
:mod:`registrar.voucher_service`) and ``service.est`` (RFC 7030, see
:mod:`registrar.est_service`); the admin API and the console read
``service.store`` and ``service.keys``. Nothing here decides anything.
"""

from __future__ import annotations

from dataclasses import dataclass

from brski_storage.base import RegistrarStore
from registrar.est_service import EstService
from registrar.identity import RegistrarKeys
from registrar.voucher_service import VoucherService

__all__ = ["RegistrarService"]


@dataclass(frozen=True, kw_only=True)
class RegistrarService:
    store: RegistrarStore
    keys: RegistrarKeys
    vouchers: VoucherService
    est: EstService
