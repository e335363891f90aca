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

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509

from brski.ca import authority_key_id, signature_hash
from brski.errors import ConfigError, MalformedInput
from brski.pki import PrivateKey

__all__ = [
    "REASONS",
    "RevokedEntry",
    "build_crl",
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
