"""When a pledge should renew its LDevID: after a fraction of its validity.

RFC 7030 4.2.2 leaves "when" to the client; renewing at a fixed fraction of
the lifetime (0.5 is a common choice) leaves the other part as a margin for
registrar outages, so a device never depends on renewing at the last minute.
"""

from __future__ import annotations

from datetime import datetime

from cryptography import x509

from brski.errors import ConfigError

__all__ = ["renewal_due", "renewal_due_at"]


def renewal_due_at(cert: x509.Certificate, fraction: float) -> datetime:
    """notBefore + fraction * (notAfter - notBefore)."""
    if not 0.0 <= fraction <= 1.0:
        raise ConfigError("the renewal fraction must be between 0 and 1", check="pledge.renew-fraction")
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    return start + (end - start) * fraction


def renewal_due(cert: x509.Certificate, fraction: float, *, now: datetime) -> bool:
    return now >= renewal_due_at(cert, fraction)
