"""Sales records: which domain CA owns which device (RFC 8995 5.5.4).

One implementation for ``brski masa owners add|remove`` and the MASA
console, so a change is the same store write and the same event, naming who
made it, whichever way it was made.
"""

from __future__ import annotations

from datetime import datetime

from cryptography import x509

from brski.pki import cert_der, spki_sha256
from brski_storage.base import MasaStore, OwnerRecord

__all__ = ["add_owner", "remove_owner"]


async def add_owner(store: MasaStore, serial: str, ca: x509.Certificate, *, now: datetime, by: str) -> OwnerRecord:
    """Unknown serial: NotFound; already an owner: Conflict (from the store)."""
    record = await store.add_owner(serial, domain_ca_spki_sha256=spki_sha256(ca), domain_ca_der=cert_der(ca), at=now)
    await store.append_event(
        at=now, kind="owner.added", device_serial=serial, outcome="info", check="masa.owners.add",
        detail={"domain_ca": ca.subject.rfc4514_string(), "by": by},
    )
    return record


async def remove_owner(store: MasaStore, serial: str, spki: bytes, *, subject: str, now: datetime, by: str) -> None:
    """Not an owner: NotFound (from the store)."""
    await store.remove_owner(serial, domain_ca_spki_sha256=spki)
    await store.append_event(
        at=now, kind="owner.removed", device_serial=serial, outcome="info", check="masa.owners.remove",
        detail={"domain_ca": subject, "by": by},
    )
