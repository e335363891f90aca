"""Durable state for the registrar and the MASA, behind one interface.

Roles open a store from a URL and program against :class:`RegistrarStore` /
:class:`MasaStore`; the URL scheme picks the backend, so adding PostgreSQL
later is a new branch in :func:`_backend` and nothing else changes for the
roles.

    async with await open_registrar_store("sqlite:///var/lib/brski/registrar.db") as store:
        ...
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from brski.errors import ConfigError
from brski_storage.base import (
    AuditEntry,
    AuditLogRecord,
    CertificateRecord,
    ChainReport,
    DeviceImport,
    DeviceRecord,
    EventLog,
    EventRecord,
    IssuedVoucher,
    ManufacturedDevice,
    ManufacturerPin,
    MasaStore,
    MasaVoucherRecord,
    NewAuditLog,
    NewDevice,
    NewEvent,
    NewVoucherRequest,
    OwnerRecord,
    RegistrarStore,
    StateChange,
    StatusReportRecord,
    Store,
    TransitionRecord,
    VoucherRecord,
    VoucherRequestRecord,
)
from brski_storage.evidence import StateDisagreement, StateReport

if TYPE_CHECKING:
    from brski_storage.sqlite import Database

__all__ = [
    "AuditEntry",
    "AuditLogRecord",
    "CertificateRecord",
    "ChainReport",
    "DeviceImport",
    "DeviceRecord",
    "EventLog",
    "EventRecord",
    "IssuedVoucher",
    "ManufacturedDevice",
    "ManufacturerPin",
    "MasaStore",
    "MasaVoucherRecord",
    "NewAuditLog",
    "NewDevice",
    "NewEvent",
    "NewVoucherRequest",
    "OwnerRecord",
    "RegistrarStore",
    "StateChange",
    "StateDisagreement",
    "StateReport",
    "StatusReportRecord",
    "Store",
    "TransitionRecord",
    "VoucherRecord",
    "VoucherRequestRecord",
    "backend_of",
    "open_masa_store",
    "open_registrar_store",
]


def _backend(url: str) -> str:
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme in ("postgresql", "postgres"):
        return "postgresql"
    if scheme in ("", "sqlite"):
        return "sqlite"
    raise ConfigError(f"unknown storage URL scheme {scheme!r}", check="storage.backend")


async def open_registrar_store(url: str, *, migrated_at: datetime | None = None) -> RegistrarStore:
    """Open (creating and migrating if needed) the registrar's database.

    ``migrated_at`` stamps newly applied migrations; without it SQLite
    stamps them, so this package never reads the clock.
    """
    from brski_storage.sqlite_registrar import SqliteRegistrarStore

    store = SqliteRegistrarStore(await _open_database(url, "registrar", migrated_at))
    await _baseline(store)
    return store


async def open_masa_store(url: str, *, migrated_at: datetime | None = None) -> MasaStore:
    """Open (creating and migrating if needed) the MASA's database."""
    from brski_storage.sqlite_masa import SqliteMasaStore

    store = SqliteMasaStore(await _open_database(url, "masa", migrated_at))
    await _baseline(store)
    return store


async def _baseline(store: Any) -> None:
    try:
        await store.adopt_baseline_if_migrated()
    except BaseException:
        await store.close()
        raise


async def _open_database(url: str, role: str, migrated_at: datetime | None) -> Database:
    # One store implementation per role over either engine: the stores' SQL
    # is written in the subset SQLite and PostgreSQL share (see postgres.py).
    if _backend(url) == "postgresql":
        from brski_storage.postgres import PgDatabase

        return await PgDatabase.open(url, role=role, migrated_at=migrated_at)
    from brski_storage.sqlite import SqliteDatabase, sqlite_path_from_url

    return await SqliteDatabase.open(sqlite_path_from_url(url), role=role, migrated_at=migrated_at)


def backend_of(url: str) -> str:
    """``"sqlite"`` or ``"postgresql"`` for a store URL (ConfigError otherwise)."""
    return _backend(url)
