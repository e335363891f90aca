"""The domain CA's certificates on SQLite: recorded once signed (with the
checks a reservation made, in the same transaction), or reserved before
signing and completed with the DER, revoked (RFC 5280 5.3.1 reason kept for
the CRL).

A mixin for :class:`brski_storage.sqlite_registrar.SqliteRegistrarStore`; it
relies on the host class for ``self._db`` and ``_apply`` (the host's one way to
change a device's state).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime

from brski.errors import Conflict, NotFound
from brski_storage.base import CertificateRecord, NewEvent
from brski_storage.certificates import Supersede
from brski_storage.evidence import record_state
from brski_storage.records import StateChange
from brski_storage.sqlite import Database, RowReader, from_ts, from_ts_opt, require_device, to_ts
from brski_storage.sqlite_events import PreparedEvent, with_events

__all__ = ["DEVICE_ROWS", "KEY_NEWEST", "SqliteCertificateMixin", "certificate_rows", "normalize_cert_serial", "renewed_device"]

def normalize_cert_serial(value: int | str) -> str:
    """One spelling per serial (lower-case hex, no leading zeros, no colons),
    so "0A", "0a" and 10 cannot slip past the UNIQUE constraint as three."""
    if isinstance(value, bool):
        raise TypeError("certificate serial must be int or hex str")
    if isinstance(value, int):
        number = value
    else:
        try:
            number = int(value.replace(":", "").strip(), 16)
        except ValueError:
            raise ValueError(f"certificate serial is not hex: {value!r}") from None
    if number <= 0:
        raise ValueError("certificate serial must be positive (RFC 5280 4.1.2.2)")
    return format(number, "x")


_certificates = RowReader(
    CertificateRecord,
    "certificates",
    "cert_serial, device_serial, spki_sha256, state, der, not_before, not_after,"
    " reserved_at, issued_at, revoked_at, revocation_reason",
    not_before=from_ts_opt,
    not_after=from_ts_opt,
    reserved_at=from_ts,
    issued_at=from_ts_opt,
    revoked_at=from_ts_opt,
)


#: Certificate rows as the stores read them (also for :meth:`est_facts`).
certificate_rows = _certificates

#: The newest row for a key (renewals share one), through the (spki_sha256, id) index.
KEY_NEWEST = "WHERE spki_sha256 = ? ORDER BY id DESC LIMIT 1"
#: A device's rows in reservation order, through certificates_by_device.
DEVICE_ROWS = "WHERE device_serial = ? ORDER BY id"


def _get_cert(conn: sqlite3.Connection, cert_serial: str) -> CertificateRecord | None:
    return _certificates.one(conn, "WHERE cert_serial = ?", (cert_serial,))


def _require_cert(conn: sqlite3.Connection, cert_serial: str) -> CertificateRecord:
    cert = _get_cert(conn, cert_serial)
    if cert is None:
        raise NotFound(
            f"unknown certificate serial {cert_serial}", check="storage.unknown-certificate"
        )
    return cert


def _require_cert_state(conn: sqlite3.Connection, cert_serial: str, state: str, refusal: str) -> CertificateRecord:
    """The certificate, which must be in ``state`` (else Conflict, saying ``refusal``)."""
    current = _require_cert(conn, cert_serial)
    if current.state != state:
        raise Conflict(f"certificate {cert_serial} is {current.state}, {refusal}", check="storage.certificate-state")
    return current


def renewed_device(conn: sqlite3.Connection, previous: str) -> str:
    """The device of certificate ``previous``, which a same-key renewal may
    renew only while it is issued (NotFound, Conflict otherwise); the trigger
    and the partial unique index of migration 0003 enforce the rest."""
    row = conn.execute("SELECT device_serial, state FROM certificates WHERE cert_serial = ?", (previous,)).fetchone()
    if row is None:
        raise NotFound(f"unknown certificate serial {previous}", check="storage.unknown-certificate")
    if row[1] != "issued":
        raise Conflict(
            f"certificate {previous} is {row[1]}; only issued ones are renewed", check="storage.certificate-state"
        )
    return str(row[0])


class SqliteCertificateMixin:
    _db: Database

    @staticmethod
    def _apply(conn: sqlite3.Connection, serial: str, change: StateChange, ts: str) -> None:
        raise NotImplementedError  # the host store's one way to change a device's state

    async def reserve_certificate(
        self, *, cert_serial: int | str, device_serial: str, spki_sha256: bytes, at: datetime
    ) -> CertificateRecord:
        serial = normalize_cert_serial(cert_serial)
        if len(spki_sha256) != 32:
            raise ValueError("spki_sha256 must be a 32-byte SHA-256 digest")
        ts = to_ts(at)

        def run(conn: sqlite3.Connection) -> CertificateRecord:
            require_device(conn, device_serial)
            # The UNIQUE constraints decide; the writer maps them to Conflict.
            conn.execute(
                "INSERT INTO certificates (cert_serial, device_serial, spki_sha256, state,"
                " reserved_at) VALUES (?, ?, ?, 'reserved', ?)",
                (serial, device_serial, spki_sha256, ts),
            )
            record_state(conn, "registrar", [("certificate", serial)], at=ts, device_serial=device_serial)
            return _require_cert(conn, serial)

        # Visible is what a reservation needs, not durable (RegistrarStore.reserve_certificate).
        return await self._db.write(run, flush=False)

    async def record_issued_certificate(
        self,
        *,
        cert_serial: int | str,
        device_serial: str,
        spki_sha256: bytes,
        der: bytes,
        not_before: datetime,
        not_after: datetime,
        at: datetime,
        renews: int | str | None = None,
        events: Sequence[NewEvent] = (),
        then: StateChange | None = None,
    ) -> CertificateRecord:
        recorded, _ = await self._record_issued(
            cert_serial=cert_serial, device_serial=device_serial, spki_sha256=spki_sha256, der=der,
            not_before=not_before, not_after=not_after, at=at, renews=renews, events=events, then=then,
            supersede=None,
        )
        return recorded

    async def record_issued_superseding(
        self,
        *,
        supersede: Supersede,
        cert_serial: int | str,
        device_serial: str,
        spki_sha256: bytes,
        der: bytes,
        not_before: datetime,
        not_after: datetime,
        at: datetime,
        events: Sequence[NewEvent] = (),
        then: StateChange | None = None,
    ) -> tuple[CertificateRecord, tuple[CertificateRecord, ...]]:
        return await self._record_issued(
            cert_serial=cert_serial, device_serial=device_serial, spki_sha256=spki_sha256, der=der,
            not_before=not_before, not_after=not_after, at=at, renews=None, events=events, then=then,
            supersede=supersede,
        )

    async def _record_issued(
        self,
        *,
        cert_serial: int | str,
        device_serial: str,
        spki_sha256: bytes,
        der: bytes,
        not_before: datetime,
        not_after: datetime,
        at: datetime,
        renews: int | str | None,
        events: Sequence[NewEvent],
        then: StateChange | None,
        supersede: Supersede | None,
    ) -> tuple[CertificateRecord, tuple[CertificateRecord, ...]]:
        serial = normalize_cert_serial(cert_serial)
        previous = None if renews is None else normalize_cert_serial(renews)
        if len(spki_sha256) != 32:
            raise ValueError("spki_sha256 must be a 32-byte SHA-256 digest")
        ts, first, last = to_ts(at), to_ts(not_before), to_ts(not_after)
        params = (serial, device_serial, spki_sha256, previous, der, first, last, ts, ts)

        def run(conn: sqlite3.Connection) -> tuple[CertificateRecord, tuple[CertificateRecord, ...]]:
            # What reserve_certificate / reserve_renewal check before signing,
            # checked here, in the transaction that records the certificate.
            if previous is None:
                require_device(conn, device_serial)
            else:
                renewed_device(conn, previous)
            # The UNIQUE constraints (serial; key once; a certificate renewed
            # once) and the renewal trigger (same key, same device) decide;
            # the writer maps them to Conflict.
            conn.execute(
                "INSERT INTO certificates (cert_serial, device_serial, spki_sha256, renews, state, der,"
                " not_before, not_after, reserved_at, issued_at) VALUES (?, ?, ?, ?, 'issued', ?, ?, ?, ?, ?)",
                params,
            )
            if then is not None:
                self._apply(conn, device_serial, then, ts)
            earlier: list[str] = []
            if supersede is not None:
                # The device's certificates recorded before this one (by id:
                # the writer commits in id order) and still issued.
                earlier = [str(r[0]) for r in conn.execute(
                    "SELECT cert_serial FROM certificates WHERE device_serial = ? AND state = 'issued'"
                    " AND id < (SELECT id FROM certificates WHERE cert_serial = ?) ORDER BY id",
                    (device_serial, serial),
                )]
                for old in earlier:
                    conn.execute(
                        "UPDATE certificates SET state = 'revoked', revoked_at = ?, revocation_reason = 'superseded'"
                        " WHERE cert_serial = ?",
                        (ts, old),
                    )
            record_state(
                conn, "registrar",
                [("certificate", serial), ("device", device_serial), *(("certificate", old) for old in earlier)],
                at=ts, device_serial=device_serial,
            )
            # The new row as written, not read back: its columns hold exactly these values.
            issued = from_ts(ts)
            recorded = CertificateRecord(
                cert_serial=serial, device_serial=device_serial, spki_sha256=bytes(spki_sha256), state="issued",
                der=bytes(der), not_before=from_ts(first), not_after=from_ts(last), reserved_at=issued,
                issued_at=issued, revoked_at=None, revocation_reason=None,
            )
            return recorded, tuple(_require_cert(conn, old) for old in earlier)

        issue = with_events(run, events)
        if supersede is None:
            job = issue
        else:
            by = supersede

            def job(conn: sqlite3.Connection) -> tuple[CertificateRecord, tuple[CertificateRecord, ...]]:
                recorded, revoked = issue(conn)
                for old in revoked:  # chained after the issuance's own events
                    PreparedEvent(NewEvent(
                        at=at, kind="credential.revoked", device_serial=device_serial, outcome="allow",
                        check=by.check, detail={"cert_serial": old.cert_serial, "reason": "superseded", "by": by.by},
                    )).chain(conn)
                return recorded, revoked

        # Flushed before it is answered (RFC 7030 4.2: the certificate a 200 carries).
        return await self._db.write(job)

    async def complete_certificate(
        self,
        cert_serial: int | str,
        *,
        der: bytes,
        not_before: datetime,
        not_after: datetime,
        at: datetime,
        events: Sequence[NewEvent] = (),
        then: StateChange | None = None,
    ) -> CertificateRecord:
        serial = normalize_cert_serial(cert_serial)
        ts = to_ts(at)
        params = (der, to_ts(not_before), to_ts(not_after), ts, serial)

        def run(conn: sqlite3.Connection) -> CertificateRecord:
            current = _require_cert_state(conn, serial, "reserved", "not reserved")
            conn.execute(
                "UPDATE certificates SET state = 'issued', der = ?, not_before = ?,"
                " not_after = ?, issued_at = ? WHERE cert_serial = ?",
                params,
            )
            if then is not None:
                self._apply(conn, current.device_serial, then, ts)
            record_state(
                conn,
                "registrar",
                [("certificate", serial), ("device", current.device_serial)],
                at=ts,
                device_serial=current.device_serial,
            )
            return _require_cert(conn, serial)

        return await self._db.write(with_events(run, events))

    async def get_certificate(self, cert_serial: int | str) -> CertificateRecord | None:
        serial = normalize_cert_serial(cert_serial)
        return self._db.read_now(lambda conn: _get_cert(conn, serial))

    async def certificate_by_spki(self, spki_sha256: bytes) -> CertificateRecord | None:
        return self._db.read_now(
            lambda conn: _certificates.one(conn, "WHERE spki_sha256 = ?", (spki_sha256,))
        )

    async def latest_certificate_for_key(self, spki_sha256: bytes) -> CertificateRecord | None:
        # The newest row for the key (renewals share one) through the
        # (spki_sha256, id) index, once per enrolment: inline, in one read (see read_now).
        return self._db.read_now(lambda conn: _certificates.one(conn, KEY_NEWEST, (spki_sha256,)))

    async def current_certificate(self, device_serial: str) -> CertificateRecord | None:
        where = "WHERE device_serial = ? AND state = 'issued' ORDER BY issued_at DESC, id DESC LIMIT 1"
        return await self._db.read(lambda conn: _certificates.one(conn, where, (device_serial,)))

    async def revoke_certificate(
        self, cert_serial: int | str, *, reason: str, at: datetime
    ) -> CertificateRecord:
        serial = normalize_cert_serial(cert_serial)
        ts = to_ts(at)

        def run(conn: sqlite3.Connection) -> CertificateRecord:
            current = _require_cert_state(conn, serial, "issued", "only issued ones can be revoked")
            conn.execute(
                "UPDATE certificates SET state = 'revoked', revoked_at = ?, revocation_reason = ?"
                " WHERE cert_serial = ?",
                (ts, reason, serial),
            )
            record_state(conn, "registrar", [("certificate", serial)], at=ts, device_serial=current.device_serial)
            return _require_cert(conn, serial)

        return await self._db.write(run)

    async def revoked_certificates(self) -> list[CertificateRecord]:
        where = "WHERE state = 'revoked' ORDER BY revoked_at, id"
        return await self._db.read(lambda conn: _certificates.all(conn, where))

    async def list_certificates(self, device_serial: str) -> list[CertificateRecord]:
        # One device's few rows through certificates_by_device, read twice per
        # enrolment (issuance limit, supersede): inline (see read_now).
        return self._db.read_now(lambda conn: _certificates.all(conn, DEVICE_ROWS, (device_serial,)))
