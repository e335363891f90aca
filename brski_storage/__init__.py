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

from brski.errors import ConfigError
from brski_storage.base import (
    AuditEntry,
    AuditLogRecord,
    CertificateRecord,
    ChainReport,
    DeviceRecord,
    EventLog,
    EventRecord,
    IssuedVoucher,
    ManufacturedDevice,
    ManufacturerPin,
    MasaStore,
    MasaVoucherRecord,
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

__all__ = [
    "AuditEntry",
    "AuditLogRecord",
    "CertificateRecord",
    "ChainReport",
    "DeviceRecord",
    "EventLog",
    "EventRecord",
    "IssuedVoucher",
    "ManufacturedDevice",
    "ManufacturerPin",
    "MasaStore",
    "MasaVoucherRecord",
    "NewEvent",
    "NewVoucherRequest",
    "OwnerRecord",
    "RegistrarStore",
    "StateChange",
    "StatusReportRecord",
    "Store",
    "TransitionRecord",
    "VoucherRecord",
    "VoucherRequestRecord",
    "open_masa_store",
    "open_registrar_store",
]


def _backend(url: str) -> str:
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme in ("postgresql", "postgres") or scheme.startswith("postgresql+"):
        raise ConfigError(
            "PostgreSQL storage is not yet supported; use sqlite:///path.db",
            check="storage.backend",
        )
    if scheme in ("", "sqlite"):
        return "sqlite"
    raise ConfigError(f"unknown storage URL scheme {scheme!r}", check="storage.backend")


async def open_registrar_store(url: str, *, migrated_at: datetime | None = None) -> RegistrarStore:
    """Open (creating and migrating if needed) the registrar's database.

    ``migrated_at`` stamps newly applied migrations; without it SQLite
    stamps them, so this package never reads the clock.
    """
    _backend(url)
    from brski_storage.sqlite import SqliteDatabase, sqlite_path_from_url
    from brski_storage.sqlite_registrar import SqliteRegistrarStore

    db = await SqliteDatabase.open(
        sqlite_path_from_url(url), role="registrar", migrated_at=migrated_at
    )
    return SqliteRegistrarStore(db)


async def open_masa_store(url: str, *, migrated_at: datetime | None = None) -> MasaStore:
    """Open (creating and migrating if needed) the MASA's database."""
    _backend(url)
    from brski_storage.sqlite import SqliteDatabase, sqlite_path_from_url
    from brski_storage.sqlite_masa import SqliteMasaStore

    db = await SqliteDatabase.open(sqlite_path_from_url(url), role="masa", migrated_at=migrated_at)
    return SqliteMasaStore(db)
