"""A client context limited to TLS 1.1, for tests that check servers refuse it."""

from __future__ import annotations

import ssl
import warnings


def restrict_to_tls11(ctx: ssl.SSLContext) -> bool:
    """Make ``ctx`` offer TLS 1.1 only; False where the local OpenSSL cannot."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
            ctx.minimum_version = ssl.TLSVersion.TLSv1_1
            ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    except (ssl.SSLError, ValueError):
        return False
    return True
