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
from cryptography.x509.oid import ExtendedKeyUsageOID

from brski.ca import authority_key_id
from brski.certfacts import cert_der
from brski.errors import ChainInvalid, Forbidden, Unauthenticated
from brski.lifecycle import BLOCKED
from brski.pki import PrivateKey, Role, verify_chain
from brski_storage.base import CertificateRecord, DeviceRecord, RegistrarStore
from brski_storage.certificates import EstFacts
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
        # The keyIdentifier every LDevID this CA issues carries in its AKI
        # (brski.ca.issue_ldevid), fixed for the process's CA key. It names
        # that key only when it is derived from it (RFC 5280 4.2.1.2 method
        # (1)); a CA whose SKI is some other value could share it with an
        # earlier key, so its LDevIDs are always path-validated (None).
        key_id = authority_key_id(keys.ca_cert, keys.ca_key).key_identifier
        derived = x509.SubjectKeyIdentifier.from_public_key(keys.ca_key.public_key()).digest
        self._ca_key_id: bytes | None = key_id if key_id == derived else None
        # RFC 5280 3.3: is this LDevID serial on the last published CRL, the
        # one numbered as read with the request's facts (registrar/revocation.py
        # RevocationPublisher.listed_in)? None: no CRL publication wired.
        self.listed_on_crl: Callable[[int, int | None], Awaitable[bool]] | None = None

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
        return self.idevid_match(peer, await self.store.get_device(self.idevid_serial(peer, what=what)), what=what)

    def idevid_serial(self, peer: PeerIdentity, *, what: str) -> str:
        """The device serial an IDevID client names, before its row is read."""
        if peer.leaf is None:
            raise Unauthenticated(f"{what} needs the device's client certificate", check="tls.client-cert")
        # The serial and fingerprint are facts of the certificate, derived once
        # per connection (PeerIdentity); the device row is read on every
        # request, since the pin and the device's state can change meanwhile.
        serial = peer.device_serial
        if not serial:
            raise Forbidden("client certificate has no serialNumber", check="idevid.serial-number")
        return serial

    def idevid_match(self, peer: PeerIdentity, device: DeviceRecord | None, *, what: str) -> DeviceRecord:
        """``device``, the row read for this request under :meth:`idevid_serial`,
        if it pins the client's IDevID (RFC 8995 5.3)."""
        if device is None or device.idevid_fingerprint != peer.fingerprint:
            raise Forbidden(f"{what} from a client that is not a known device", check=f"{what}.unknown-device")
        return device

    def _recorded_here(self, peer: PeerIdentity, record: CertificateRecord | None, *, now: datetime) -> bool:
        """Is the client's LDevID, byte for byte, a certificate this registrar
        issued under its current CA key and recorded, valid at ``now``?

        Then RFC 5280 6.1 path validation has nothing left to establish: the
        path is the leaf and the domain CA, the trust anchor itself (no
        intermediate, so 6.1.4 and the name and policy constraints have
        nothing to act on); the leaf's signature (6.1.3 (a)(1)) was made here
        with that key over exactly these bytes, which the store recorded at
        issuance (the AKI names the current CA key by an identifier derived
        from it, so a certificate of an earlier CA key with the same name does
        not pass); and what can change
        with time is checked here on every request: validity at ``now`` of
        the leaf and the CA (6.1.3 (a)(2)), the issuer name (6.1.3 (a)(4)),
        clientAuth as verify_chain's LDEVID role asks, and, in ldevid_record,
        revocation (6.1.3 (a)(3): the row and the published CRL) and the
        device's state. The TLS handshake proved possession of the leaf's key
        (RFC 7030 3.3.2: the client is authenticated by that certificate).
        Anything else (no record, other bytes, another key identifier, out of
        validity) is left to the full path validation and its refusals.
        """
        leaf = peer.leaf
        if leaf is None or record is None or record.der is None or self._ca_key_id is None:
            return False
        presented = peer.leaf_der if peer.leaf_der is not None else cert_der(leaf)
        if presented != record.der or leaf.issuer != self._ca_subject:
            return False
        ca = self.keys.ca_cert
        if not (
            leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc
            and ca.not_valid_before_utc <= now <= ca.not_valid_after_utc
        ):
            return False
        try:
            aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
        except x509.ExtensionNotFound:
            return False
        if aki.key_identifier is None or aki.key_identifier != self._ca_key_id:
            return False
        try:
            eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except x509.ExtensionNotFound:
            return True
        return ExtendedKeyUsageOID.CLIENT_AUTH in eku

    async def ldevid_record(self, peer: PeerIdentity, *, now: datetime) -> CertificateRecord:
        """The issued, unrevoked certificate record behind an LDevID client (see ldevid_device)."""
        return (await self.ldevid_device(peer, now=now))[0]

    async def ldevid_device(
        self, peer: PeerIdentity, *, now: datetime, facts: EstFacts | None = None
    ) -> tuple[CertificateRecord, DeviceRecord | None]:
        """The issued, unrevoked certificate record behind an LDevID client,
        and its device's row as read for the check (a caller that needs the
        row uses this one read).

        ``facts``: what the caller read for this request with
        ``store.est_facts(cert_serial=<the client certificate's serial>,
        crl_number=True)`` (and whatever else it needs), one snapshot; without
        them, that read is made here.

        Every check here runs on every request, none is kept with the
        connection: the path is valid only at ``now`` (RFC 5280 6.1), and the
        record's state, the published CRL (RFC 5280 3.3) and the device's
        lifecycle state can all change during a connection. A certificate
        whose exact bytes this registrar recorded when it issued it is
        checked by :meth:`_recorded_here` (the same rules, the signature
        known to be its own); any other goes through full path validation
        (brski.pki.verify_chain, which remembers a verified path
        process-wide while ``now`` is inside its validity window).
        """
        assert peer.leaf is not None
        if facts is None:
            facts = await self.store.est_facts(cert_serial=peer.leaf.serial_number, crl_number=True)
        record = facts.client_certificate
        if record is not None and record.cert_serial != format(peer.leaf.serial_number, "x"):
            raise AssertionError("the facts were read for another certificate")
        if not self._recorded_here(peer, record, now=now):
            try:
                verify_chain(peer.leaf, anchors=[self.keys.ca_cert], now=now, role=Role.LDEVID)
            except ChainInvalid as exc:
                raise Forbidden(f"LDevID not valid: {exc.detail}", check=exc.check) from exc
        if record is None:
            raise Forbidden("LDevID unknown to this registrar", check="ldevid.unknown")
        if record.state == "revoked" or (
            self.listed_on_crl is not None and await self.listed_on_crl(peer.leaf.serial_number, facts.crl_number)
        ):
            # A certificate the domain published as revoked stays revoked,
            # even if its row was since edited (RFC 5280 3.3).
            raise Forbidden("LDevID has been revoked", check="ldevid.revoked", serial=record.device_serial)
        device = facts.device
        if device is not None and device.state in BLOCKED:
            # Decommissioning revokes every LDevID; this also covers one that
            # was issued concurrently with the revocation.
            raise Forbidden(
                f"device {device.serial} is {device.state}", check=f"ldevid.device-{device.state}",
                serial=device.serial,
            )
        return record, device

    async def client_device(self, peer: PeerIdentity, *, now: datetime, what: str) -> str:
        """IDevID or LDevID: the device serial behind the TLS client."""
        if peer.leaf is not None and self.is_ldevid(peer.leaf):
            return (await self.ldevid_record(peer, now=now)).device_serial
        return await self.idevid_device(peer, what=what)
