"""Per-registrar rate limits at the MASA (RFC 8995 section 11.1).

"The MASA is exposed to DoS attacks wherein attackers claim an unbounded
number of devices." A token bucket per registrar, keyed by the SHA-256 of the
SPKI of the certificate that signed the registrar voucher-request (the
identity the MASA has verified, not a TLS address a relay may share), bounds
how fast one registrar can make the MASA sign and log. A refused request gets
429 with Retry-After, before anything is signed or written.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from brski.errors import ConfigError, RateLimited

__all__ = ["RateLimiter"]


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Token buckets: ``burst`` requests at once, refilled at ``per_minute``.

    ``per_minute == 0`` switches limiting off. At most ``max_keys`` buckets are
    kept (least recently used dropped), so a flood of fresh registrar keys
    cannot grow memory without bound; a dropped bucket starts full again,
    which only ever errs towards serving.
    """

    def __init__(
        self,
        *,
        per_minute: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 10000,
    ) -> None:
        if per_minute < 0 or burst < 1 or max_keys < 1:
            raise ConfigError("rate limit: per_minute >= 0, burst >= 1", check="config.rate-limit")
        self.per_minute = per_minute
        self.burst = burst
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: OrderedDict[bytes, _Bucket] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.per_minute > 0

    def take(self, key: bytes, *, serial: str | None = None) -> None:
        """Spend one token for ``key`` or raise RateLimited (429, Retry-After)."""
        if not self.enabled:
            return
        now = self.clock()
        rate = self.per_minute / 60.0
        bucket = self._buckets.pop(key, None) or _Bucket(tokens=float(self.burst), updated=now)
        bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.updated) * rate)
        bucket.updated = now
        self._buckets[key] = bucket
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return
        wait = max(1, math.ceil((1.0 - bucket.tokens) / rate))
        extra = {"serial": serial} if serial is not None else {}
        raise RateLimited(
            f"this registrar exceeded {self.per_minute:g} voucher-requests per minute (burst {self.burst})",
            check="masa.rate-limited",
            retry_after=wait,
            **extra,
        )
