"""Where a role's signing keys come from: a PEM file, or a PKCS#11 token.

The domain CA key, the registrar's cmcRA key and the MASA's voucher-signing
key are configured as a path or as an RFC 7512 ``pkcs11:`` URI; either way the
role gets a ``brski.pki.PrivateKey`` and signs through it (see
:mod:`brski_hsm.token` for why that is enough).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import ParamSpec, TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from brski.errors import BrskiError, ConfigError
from brski.pki import PrivateKey, load_private_key
from brski_hsm.token import (
    KeyUnavailable,
    Pkcs11Settings,
    TokenEcKey,
    close_tokens,
    generate_token_key,
    load_token_key,
    token_has_key,
)
from brski_hsm.uri import Pkcs11Uri, is_pkcs11_uri

__all__ = [
    "KeyRef",
    "KeyUnavailable",
    "Pkcs11Settings",
    "Pkcs11Uri",
    "TokenEcKey",
    "close_tokens",
    "generate_token_key",
    "is_pkcs11_uri",
    "load_key",
    "load_token_key",
    "probe_key",
    "signing",
    "token_has_key",
]

P = ParamSpec("P")
T = TypeVar("T")

#: A configured key: a PEM file, or a ``pkcs11:`` URI (kept as text).
KeyRef = Path | str

_PROBE = b"brski key probe"


def load_key(ref: KeyRef, *, pkcs11: Pkcs11Settings | None = None, cert: x509.Certificate | None = None) -> PrivateKey:
    """The key ``ref`` names; with ``cert``, proven to be that certificate's key
    (one signature, verified) so a wrong label fails at start-up, not at the
    first pledge."""
    key: PrivateKey
    if isinstance(ref, str) and is_pkcs11_uri(ref):
        key = load_token_key(ref, pkcs11 or Pkcs11Settings())
    else:
        path = Path(ref)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read private key {path}: {exc.strerror}", check="config.file") from exc
        key = load_private_key(data)
    if cert is not None:
        try:
            probe_key(key, cert)
        except BrskiError as exc:
            raise ConfigError(f"{ref}: {exc.detail}", check=exc.check) from exc
    return key


def probe_key(key: PrivateKey, cert: x509.Certificate) -> None:
    """Sign a probe and verify it with ``cert``: the key is usable and is the
    certificate's (readiness checks call this; a token that went away fails)."""
    public = cert.public_key()
    try:
        if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(public, ec.EllipticCurvePublicKey):
            public.verify(key.sign(_PROBE, ec.ECDSA(hashes.SHA256())), _PROBE, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, ed25519.Ed25519PrivateKey) and isinstance(public, ed25519.Ed25519PublicKey):
            public.verify(key.sign(_PROBE), _PROBE)
        elif isinstance(key, rsa.RSAPrivateKey) and isinstance(public, rsa.RSAPublicKey):
            sig = key.sign(_PROBE, padding.PKCS1v15(), hashes.SHA256())
            public.verify(sig, _PROBE, padding.PKCS1v15(), hashes.SHA256())
        else:
            raise InvalidSignature
    except InvalidSignature:
        raise KeyUnavailable(
            f"the key is not the one certified in {cert.subject.rfc4514_string()}", check="config.key-mismatch"
        ) from None


async def signing(key: object, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """``fn(*args, **kwargs)``, run off the event loop when ``key`` is in a token.

    A hardware HSM's C_Sign can take milliseconds (a network HSM tens), and
    python-pkcs11 releases the GIL while it waits: in a thread, the worker
    keeps serving other connections meanwhile. A PEM key signs in tens of
    microseconds, less than the thread hand-off, so it stays inline.
    """
    if isinstance(key, TokenEcKey):
        return await asyncio.to_thread(fn, *args, **kwargs)
    return fn(*args, **kwargs)
