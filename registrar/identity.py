"""Who is who at the registrar: its own keys, and the device behind a TLS client.

Identity rules live here once. A client on an IDevID is recognised by the
device record, which pins the IDevID fingerprint seen when its chain was
fully verified during the voucher exchange (RFC 8995 5.3); a client on an
LDevID must chain to the domain CA and be a certificate this registrar
issued and has not revoked (RFC 7030 3.3.2).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509

from brski.errors import ChainInvalid, Forbidden, Unauthenticated
from brski.lifecycle import BLOCKED
from brski.pki import PrivateKey, Role, verify_chain
from brski_storage.base import CertificateRecord, DeviceRecord, RegistrarStore
from brski_web.identity import PeerIdentity

__all__ = ["ClientIdentity", "RegistrarKeys"]


@dataclass(frozen=True, kw_only=True)
class RegistrarKeys:
    """The domain CA, the RA that signs voucher-requests, and the TLS server certificate."""

    ca_cert: x509.Certificate
    ca_key: PrivateKey
    ra_cert: x509.Certificate
    ra_key: PrivateKey
    tls_cert: x509.Certificate


class ClientIdentity:
    """The device behind a TLS client, by its IDevID or its LDevID."""

    def __init__(self, *, store: RegistrarStore, keys: RegistrarKeys) -> None:
        self.store = store
        self.keys = keys
        self._ca_subject = keys.ca_cert.subject
        # RFC 5280 3.3: is this LDevID serial on the last published CRL?
        # (registrar/revocation.py). None: no CRL publication wired.
        self.listed_on_crl: Callable[[int], Awaitable[bool]] | None = None

    def is_ldevid(self, cert: x509.Certificate) -> bool:
        return cert.issuer == self._ca_subject

    async def idevid_device(self, peer: PeerIdentity, *, what: str) -> str:
        """The serial of the device behind an IDevID-authenticated connection."""
        return (await self.idevid_record(peer, what=what)).serial

    async def idevid_record(self, peer: PeerIdentity, *, what: str) -> DeviceRecord:
        """The device record behind an IDevID-authenticated connection, as read
        for the check (a caller that needs the row uses this one read).

        RFC 8995 5.7 / 5.9.4: telemetry and enrolment are accepted from the
        device they are about, recognised by its pinned IDevID fingerprint.
        """
        if peer.leaf is None:
            raise Unauthenticated(f"{what} needs the device's client certificate", check="tls.client-cert")
        # The serial and fingerprint are facts of the certificate, derived once
        # per connection (PeerIdentity); the device row is read on every
        # request, since the pin and the device's state can change meanwhile.
        serial = peer.device_serial
        if not serial:
            raise Forbidden("client certificate has no serialNumber", check="idevid.serial-number")
        device = await self.store.get_device(serial)
        if device is None or device.idevid_fingerprint != peer.fingerprint:
            raise Forbidden(f"{what} from a client that is not a known device", check=f"{what}.unknown-device")
        return device

    async def ldevid_record(self, peer: PeerIdentity, *, now: datetime) -> CertificateRecord:
        """The issued, unrevoked certificate record behind an LDevID client.

        Every check here runs on every request, none is kept with the
        connection: the path is valid only at ``now`` (RFC 5280 6.1; a path
        verified once is remembered process-wide by brski.pki.verify_chain
        while ``now`` is inside its validity window, so repeating it is a
        lookup), and the record's state, the published CRL (RFC 5280 3.3) and
        the device's lifecycle state can all change during a connection.
        """
        assert peer.leaf is not None
        try:
            verify_chain(peer.leaf, anchors=[self.keys.ca_cert], now=now, role=Role.LDEVID)
        except ChainInvalid as exc:
            raise Forbidden(f"LDevID not valid: {exc.detail}", check=exc.check) from exc
        record = await self.store.get_certificate(format(peer.leaf.serial_number, "x"))
        if record is None:
            raise Forbidden("LDevID unknown to this registrar", check="ldevid.unknown")
        if record.state == "revoked" or (
            self.listed_on_crl is not None and await self.listed_on_crl(peer.leaf.serial_number)
        ):
            # A certificate the domain published as revoked stays revoked,
            # even if its row was since edited (RFC 5280 3.3).
            raise Forbidden("LDevID has been revoked", check="ldevid.revoked", serial=record.device_serial)
        device = await self.store.get_device(record.device_serial)
        if device is not None and device.state in BLOCKED:
            # Decommissioning revokes every LDevID; this also covers one that
            # was issued concurrently with the revocation.
            raise Forbidden(
                f"device {device.serial} is {device.state}", check=f"ldevid.device-{device.state}",
                serial=device.serial,
            )
        return record

    async def client_device(self, peer: PeerIdentity, *, now: datetime, what: str) -> str:
        """IDevID or LDevID: the device serial behind the TLS client."""
        if peer.leaf is not None and self.is_ldevid(peer.leaf):
            return (await self.ldevid_record(peer, now=now)).device_serial
        return await self.idevid_device(peer, what=what)
