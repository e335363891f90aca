"""Fixtures and helpers the brski_storage unit tests share (helpers, not
tests): a fresh registrar or MASA store on the test's engine (and its URL, for
tests that also edit it behind the store's back), a device, and a raw sqlite3
connection on the file, as an attacker or an admin would use."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from brski_storage import MasaStore, NewEvent, RegistrarStore, open_masa_store, open_registrar_store

T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


def t(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def spki(n: int) -> bytes:
    return hashlib.sha256(f"key-{n}".encode()).digest()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "registrar.db"


@pytest.fixture
def registrar_url(new_store_url: Callable[[str], str]) -> str:
    # On SQLite the file is db_path (tmp_path / "registrar.db"), which the
    # sqlite_only tests open themselves.
    return new_store_url("registrar")


@pytest.fixture
def masa_url(new_store_url: Callable[[str], str]) -> str:
    return new_store_url("masa")


@pytest.fixture
async def store(registrar_url: str) -> AsyncIterator[RegistrarStore]:
    async with await open_registrar_store(registrar_url) as s:
        yield s


@pytest.fixture
async def masa(masa_url: str) -> AsyncIterator[MasaStore]:
    async with await open_masa_store(masa_url) as s:
        yield s


async def add_device(store: RegistrarStore, serial: str, *, manufacturer: str = "acme") -> None:
    await store.upsert_device(
        serial,
        idevid_issuer="CN=Acme IDevID CA",
        idevid_fingerprint=hashlib.sha256(serial.encode()).hexdigest(),
        manufacturer=manufacturer,
        at=t(0),
    )


async def fill_events(store: RegistrarStore, n: int = 10) -> None:
    for i in range(n):
        await store.append_event(
            at=t(i),
            kind="voucher.request",
            device_serial=f"P-{i % 3}",
            outcome="allow" if i % 2 else "refuse",
            check=None if i % 4 else "policy.allowlist",
            detail={"i": i, "note": "ünïcode"},
        )


def with_events(url: str, role: str, events: Iterable[NewEvent]) -> str:
    """``url`` once ``role``'s store ("registrar" or "masa") there has appended
    ``events`` to its chain: for the ``audit`` CLI tests, which read it after."""

    async def append() -> None:
        opener = open_registrar_store if role == "registrar" else open_masa_store
        async with await opener(url) as s:
            for event in events:
                await s.append_event(**dataclasses.asdict(event))

    asyncio.run(append())
    return url


@contextmanager
def raw(path: Path) -> Iterator[sqlite3.Connection]:
    """A connection of our own on the file, as an attacker or an admin would use."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()
