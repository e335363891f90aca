"""Certificate Revocation Lists for the domain CA (RFC 5280 section 5), pure.

The registrar publishes one full CRL for every LDevID it issued: version 2
(5.1.2.1), signed by the domain CA with the hash it uses for certificates,
with thisUpdate and nextUpdate (5.1.2.4, 5.1.2.5: conforming CAs MUST
include nextUpdate), the authorityKeyIdentifier (5.2.1, MUST) and a
monotonically increasing cRLNumber (5.2.3, MUST; the caller keeps the
counter durably). Entries carry a reasonCode (5.3.1) except for
"unspecified", which RFC 5280 says SHOULD be expressed by omitting it.

Nothing here reads a clock: ``now`` comes from the caller.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509

from brski.ca import authority_key_id, signature_hash
from brski.errors import ConfigError, MalformedInput, SignatureInvalid
from brski.pki import PrivateKey

__all__ = [
    "REASONS",
    "CertRow",
    "CrlDisagreement",
    "PublishedCrl",
    "RevokedEntry",
    "build_crl",
    "crl_disagreements",
    "parse_reason",
    "reason_name",
]

# RFC 5280 5.3.1 CRLReason names, as operators type them (--reason).
REASONS: dict[str, x509.ReasonFlags] = {
    "unspecified": x509.ReasonFlags.unspecified,
    "keyCompromise": x509.ReasonFlags.key_compromise,
    "cACompromise": x509.ReasonFlags.ca_compromise,
    "affiliationChanged": x509.ReasonFlags.affiliation_changed,
    "superseded": x509.ReasonFlags.superseded,
    "cessationOfOperation": x509.ReasonFlags.cessation_of_operation,
    "privilegeWithdrawn": x509.ReasonFlags.privilege_withdrawn,
}
_BY_FLAG = {flag: name for name, flag in REASONS.items()}


def parse_reason(text: str | None) -> x509.ReasonFlags:
    """An RFC 5280 reason name (case-insensitive, '-' and '_' ignored)."""
    if text is None or text == "":
        return x509.ReasonFlags.unspecified
    wanted = text.replace("-", "").replace("_", "").lower()
    for name, flag in REASONS.items():
        if name.lower() == wanted:
            return flag
    raise MalformedInput(
        f"unknown revocation reason {text!r}; one of {', '.join(REASONS)}",
        check="revocation.reason",
    )


def reason_name(flag: x509.ReasonFlags) -> str:
    return _BY_FLAG.get(flag, "unspecified")


@dataclass(frozen=True, kw_only=True)
class RevokedEntry:
    serial: int
    revoked_at: datetime
    reason: x509.ReasonFlags = x509.ReasonFlags.unspecified


def build_crl(
    *,
    ca_cert: x509.Certificate,
    ca_key: PrivateKey,
    entries: Iterable[RevokedEntry],
    number: int,
    now: datetime,
    validity: timedelta,
) -> x509.CertificateRevocationList:
    """Sign a complete CRL listing ``entries``; nextUpdate = ``now + validity``."""
    if now.tzinfo is None:
        raise ConfigError("now must be timezone-aware", check="crl.now-naive")
    if validity <= timedelta(0):
        raise ConfigError("CRL validity must be positive", check="crl.validity")
    # RFC 5280 5.2.3: a non-negative integer of at most 20 octets.
    if not 0 < number < (1 << 159):
        raise ConfigError("CRL number must be positive and fit in 20 octets", check="crl.number")
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now)
        .next_update(now + validity)
        .add_extension(authority_key_id(ca_cert, ca_key), critical=False)
        .add_extension(x509.CRLNumber(number), critical=False)
    )
    for entry in entries:
        revoked = (
            x509.RevokedCertificateBuilder()
            .serial_number(entry.serial)
            .revocation_date(entry.revoked_at)
        )
        if entry.reason is not x509.ReasonFlags.unspecified:
            revoked = revoked.add_extension(x509.CRLReason(entry.reason), critical=False)
        builder = builder.add_revoked_certificate(revoked.build())
    return builder.sign(ca_key, signature_hash(ca_key))


# --- RFC 5280 3.3: a CRL never drops an unexpired revoked certificate ----------------


class PublishedCrl:
    """A CRL this CA published, parsed once: O(1) "is this serial listed?".

    Only the serial numbers are read up front; an entry's date and reason
    only when it is asked for (OCSP answers for a listed serial).
    """

    def __init__(self, der: bytes, *, ca_cert: x509.Certificate | None = None) -> None:
        try:
            self._crl = x509.load_der_x509_crl(der)
            self.serials = frozenset(r.serial_number for r in self._crl)
        except ValueError as exc:
            raise MalformedInput(f"stored CRL unreadable: {exc}", check="crl.unreadable") from exc
        if ca_cert is not None and not self._crl.is_signature_valid(ca_cert.public_key()):  # type: ignore[arg-type]
            raise SignatureInvalid("stored CRL is not signed by the domain CA", check="crl.signature")

    def entry(self, serial: int) -> RevokedEntry | None:
        if serial not in self.serials:
            return None
        found = self._crl.get_revoked_certificate_by_serial_number(serial)
        return None if found is None else _entry(found)

    def entries(self) -> list[RevokedEntry]:
        return [_entry(r) for r in self._crl]


def _entry(revoked: x509.RevokedCertificate) -> RevokedEntry:
    try:
        reason = revoked.extensions.get_extension_for_class(x509.CRLReason).value.reason
    except x509.ExtensionNotFound:
        reason = x509.ReasonFlags.unspecified
    return RevokedEntry(serial=revoked.serial_number, revoked_at=revoked.revocation_date_utc, reason=reason)


@dataclass(frozen=True, kw_only=True)
class CertRow:
    """What the store says of one certificate: its state and when it expires."""

    state: str
    not_after: datetime | None


@dataclass(frozen=True, kw_only=True)
class CrlDisagreement:
    """A published CRL entry the store no longer backs; ``check`` names how."""

    serial: int
    check: str
    detail: str


def crl_disagreements(
    published: Iterable[int], rows: Mapping[int, CertRow], *, now: datetime
) -> list[CrlDisagreement]:
    """Entries of the last published CRL that the store's rows contradict.

    RFC 5280 3.3: an entry stays on every CRL until the certificate expires
    (revocation is never undone). So every entry of the previous CRL must be
    a revoked row, or a row past its notAfter; a missing row or one that is
    'issued' again means the store was edited (or restored from an older
    backup) and must not be believed.
    """
    out: list[CrlDisagreement] = []
    for serial in sorted(published):
        row = rows.get(serial)
        if row is None:
            out.append(CrlDisagreement(serial=serial, check="crl.entry-without-row",
                                       detail="listed as revoked, but the store has no such certificate"))
        elif row.state != "revoked" and (row.not_after is None or row.not_after > now):
            out.append(CrlDisagreement(serial=serial, check="crl.entry-unrevoked",
                                       detail=f"listed as revoked, but the store says {row.state!r}"))
    return out
