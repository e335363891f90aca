"""RFC 7512 ``pkcs11:`` URIs: which token, which object, and where the PIN is.

Only what a signing key needs is understood: the token attributes (``token``,
``manufacturer``, ``serial``, ``model``), the object attributes (``object``
= CKA_LABEL, ``id`` = CKA_ID, ``type``), and the query attributes
``module-path`` (RFC 7512 section 2.3) and ``pin-source`` (a ``file:`` URI or
a path). ``pin-value`` is refused: a PIN is read from a file or the
environment, never from configuration (the config file is not a secret).
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote_to_bytes

from brski.errors import ConfigError

__all__ = ["Pkcs11Uri", "is_pkcs11_uri"]

_PATH_ATTRS = {
    "token", "manufacturer", "serial", "model", "object", "id", "type",
    "library-manufacturer", "library-description", "library-version", "slot-id",
    "slot-description", "slot-manufacturer",
}
_QUERY_ATTRS = {"module-path", "module-name", "pin-source"}
_TYPES = {"private", "public", "cert", "secret-key", "data"}
# RFC 7512 section 2.3: unreserved / pct-encoded / pk11-res-avail, plus "&" in
# the path (pk11-path-res-avail) or "/", "?", "|" in the query (pk11-query-res-avail).
_UNRESERVED = string.ascii_letters + string.digits + "-._~" + ":[]@!$'()*+,=%"
_PCHAR = set(_UNRESERVED + "&")
_QCHAR = set(_UNRESERVED + "/?|")


def is_pkcs11_uri(value: object) -> bool:
    return isinstance(value, str) and value[:7].lower() == "pkcs11:"


def _decode(value: str, what: str, *, query: bool = False) -> bytes:
    if not set(value) <= (_QCHAR if query else _PCHAR) or not _pct_ok(value):
        raise ConfigError(f"pkcs11 URI attribute {what} has characters RFC 7512 does not allow", check="pkcs11.uri")
    return unquote_to_bytes(value)


def _pct_ok(value: str) -> bool:
    i = value.find("%")
    while i != -1:
        if len(value) < i + 3 or not all(c in string.hexdigits for c in value[i + 1 : i + 3]):
            return False
        i = value.find("%", i + 3)
    return True


@dataclass(frozen=True, kw_only=True)
class Pkcs11Uri:
    """A parsed ``pkcs11:`` URI naming one private key in one token."""

    token: str | None = None
    manufacturer: str | None = None
    serial: str | None = None
    model: str | None = None
    object: str | None = None
    id: bytes | None = None
    type: str | None = None
    module_path: str | None = None
    pin_file: Path | None = None
    text: str = ""

    def __post_init__(self) -> None:
        if self.token is None and self.serial is None:
            raise ConfigError(
                f"{self.text!r}: name the token (token= or serial=, RFC 7512 section 2.3)", check="pkcs11.uri"
            )
        if self.object is None and self.id is None:
            raise ConfigError(f"{self.text!r}: name the key (object= or id=)", check="pkcs11.uri")
        if self.type not in (None, "private"):
            raise ConfigError(f"{self.text!r}: type={self.type} is not a private key", check="pkcs11.uri")

    @classmethod
    def parse(cls, text: str) -> Pkcs11Uri:
        if not is_pkcs11_uri(text):
            raise ConfigError(f"{text!r} is not a pkcs11: URI", check="pkcs11.uri")
        body = text[7:]
        path, _, query = body.partition("?")
        attrs: dict[str, bytes] = {}
        for part in filter(None, path.split(";")):
            name, eq, value = part.partition("=")
            if not eq or name not in _PATH_ATTRS:
                raise ConfigError(f"{text!r}: unknown path attribute {name!r}", check="pkcs11.uri")
            if name in attrs:
                raise ConfigError(f"{text!r}: {name} given twice", check="pkcs11.uri")
            attrs[name] = _decode(value, name)
        query_attrs: dict[str, str] = {}
        for part in filter(None, query.split("&")):
            name, eq, value = part.partition("=")
            if name == "pin-value":
                raise ConfigError(
                    "a PIN in the pkcs11 URI would put it in the configuration: "
                    "use pin-source, pkcs11_pin_file or pkcs11_pin_env",
                    check="pkcs11.pin-in-config",
                )
            if not eq or name not in _QUERY_ATTRS:
                raise ConfigError(f"{text!r}: unknown query attribute {name!r}", check="pkcs11.uri")
            query_attrs[name] = _decode(value, name, query=True).decode("utf-8", "replace")
        if "module-name" in query_attrs:
            raise ConfigError(f"{text!r}: give module-path, not module-name", check="pkcs11.uri")
        pin_file = None
        if "pin-source" in query_attrs:
            src = query_attrs["pin-source"]
            src = src[5:] if src.startswith("file:") else src
            if not src.startswith("/"):
                raise ConfigError(f"{text!r}: pin-source must be an absolute file path", check="pkcs11.uri")
            pin_file = Path(src)

        def s(name: str) -> str | None:
            return attrs[name].decode("utf-8", "replace") if name in attrs else None

        return cls(
            token=s("token"),
            manufacturer=s("manufacturer"),
            serial=s("serial"),
            model=s("model"),
            object=s("object"),
            id=attrs.get("id"),
            type=s("type"),
            module_path=query_attrs.get("module-path"),
            pin_file=pin_file,
            text=text,
        )
