"""Storage for network access: current 802.1X sessions and device classes.

Kept apart from :mod:`brski_storage.base` like the lifecycle store;
:class:`brski_storage.base.RegistrarStore` inherits this interface
(schema version 4, ``0004_network_access.sql``).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from datetime import datetime

__all__ = ["DeviceProfile", "NetworkAccessStore", "NetworkSession"]


@dataclass(frozen=True, kw_only=True)
class NetworkSession:
    id: int
    device_serial: str
    cert_serial: str
    authenticator: str  # NAS-Identifier (else NAS-IP-Address) of the 802.1X authenticator
    das_address: str | None  # where its RFC 5176 Dynamic Authorization Server listens
    port: str | None  # NAS-Port-Id / NAS-Port
    mac: str  # Calling-Station-Id, normalised aa:bb:cc:dd:ee:ff
    session_id: str | None  # Acct-Session-Id
    since: datetime
    ended_at: datetime | None = None
    end_reason: str | None = None


@dataclass(frozen=True, kw_only=True)
class DeviceProfile:
    serial: str
    device_class: str
    mud_url: str | None
    source: str  # "operator", "mud", ...
    updated_at: datetime


class NetworkAccessStore(abc.ABC):
    @abc.abstractmethod
    async def open_network_session(
        self,
        *,
        device_serial: str,
        cert_serial: str,
        authenticator: str,
        das_address: str | None,
        port: str | None,
        mac: str,
        session_id: str | None,
        at: datetime,
    ) -> NetworkSession:
        """Record a session; an open one on the same (authenticator, MAC) is
        closed first ("replaced"), in the same transaction."""

    @abc.abstractmethod
    async def end_network_session(self, session_id: int, *, at: datetime, reason: str) -> NetworkSession | None:
        """Close one open session; None if it was not open."""

    @abc.abstractmethod
    async def find_network_session(self, *, authenticator: str, mac: str) -> NetworkSession | None:
        """The open session on (authenticator, MAC), if any."""

    @abc.abstractmethod
    async def network_sessions(self, *, device_serial: str | None = None, open_only: bool = True) -> list[NetworkSession]:
        """Sessions (open ones only by default), oldest first."""

    @abc.abstractmethod
    async def set_device_profile(
        self, serial: str, *, device_class: str, mud_url: str | None, source: str, at: datetime
    ) -> DeviceProfile: ...

    @abc.abstractmethod
    async def get_device_profile(self, serial: str) -> DeviceProfile | None: ...
