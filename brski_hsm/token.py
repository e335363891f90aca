"""Signing keys that live in a PKCS#11 token and never leave it.

:class:`TokenEcKey` is a ``cryptography`` ``EllipticCurvePrivateKey`` whose
``sign()`` calls C_Sign (CKM_ECDSA over a digest computed here: hashing is
not a key operation). cryptography's X.509, CRL, OCSP and CSR builders call
``sign()`` on any object of that type, and our CMS, COSE and JWS signers do the
same, so a token key goes everywhere a PEM key went and no signing code
changes. ``private_numbers()`` and ``private_bytes()`` raise: nothing can ask
this object for the key.

One session per (module, token) per process, logged in once (PKCS#11 logs in
an application, not a session), shared by every key on that token and
guarded by a lock (a PKCS#11 session runs one operation at a time). A
process that forks must open its tokens again in the child (PKCS#11 v2.40
section 6.7.7): a session inherited across ``fork()`` is refused here.
"""

from __future__ import annotations

import os
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pkcs11
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.util.ec import encode_ec_public_key, encode_named_curve_parameters

from brski.errors import ConfigError, LocalError
from brski_hsm.uri import Pkcs11Uri

__all__ = [
    "KeyUnavailable",
    "Pkcs11Settings",
    "TokenEcKey",
    "close_tokens",
    "generate_token_key",
    "load_token_key",
    "token_has_key",
]

_CURVES: dict[str, type[ec.EllipticCurve]] = {"secp256r1": ec.SECP256R1, "secp384r1": ec.SECP384R1}


class KeyUnavailable(LocalError):
    """The token refused or failed a signature: nothing was signed."""

    http_status = 503


@dataclass(frozen=True, kw_only=True)
class Pkcs11Settings:
    """Where the module and the PIN are, for every ``pkcs11:`` key of a role.

    A URI's own ``module-path`` and ``pin-source`` win. The PIN comes from a
    file (``pin_file``, first line) or an environment variable (``pin_env``),
    never from the configuration itself.
    """

    module: str | None = None
    pin_file: Path | None = None
    pin_env: str | None = None

    def module_for(self, uri: Pkcs11Uri) -> str:
        module = uri.module_path or self.module
        if not module:
            raise ConfigError(
                f"{uri.text}: no PKCS#11 module (set pkcs11_module or module-path in the URI)",
                check="pkcs11.module",
            )
        return module

    def pin_for(self, uri: Pkcs11Uri) -> str:
        path = uri.pin_file or self.pin_file
        if path is not None:
            try:
                lines = path.read_text().splitlines()
            except OSError as exc:
                raise ConfigError(f"cannot read the PKCS#11 PIN file {path}: {exc.strerror}", check="pkcs11.pin") from exc
            pin = lines[0] if lines else ""
        elif self.pin_env:
            pin = os.environ.get(self.pin_env, "")
            if not pin:
                raise ConfigError(f"environment variable {self.pin_env} (the PKCS#11 PIN) is not set", check="pkcs11.pin")
        else:
            raise ConfigError(
                f"{uri.text}: no PIN source (pkcs11_pin_file, pkcs11_pin_env or pin-source in the URI)",
                check="pkcs11.pin",
            )
        if not pin:
            raise ConfigError(f"{uri.text}: the PKCS#11 PIN is empty", check="pkcs11.pin")
        return pin


class _Token:
    def __init__(self, session: Any, *, pid: int, label: str, rw: bool) -> None:
        self.session = session
        self.rw = rw
        self.pid = pid
        self.label = label
        self.lock = threading.Lock()

    def check_process(self) -> None:
        if os.getpid() != self.pid:
            raise KeyUnavailable(
                f"token {self.label!r} was opened before fork(); open keys in each worker",
                check="pkcs11.forked-session",
            )


_tokens: dict[tuple[str, str | None, str | None], _Token] = {}
_tokens_guard = threading.Lock()


def _open_token(uri: Pkcs11Uri, settings: Pkcs11Settings, *, rw: bool = False) -> _Token:
    module = settings.module_for(uri)
    key = (module, uri.token, uri.serial)
    with _tokens_guard:
        tok = _tokens.get(key)
        if tok is not None and tok.pid == os.getpid():
            if tok.rw or not rw:
                return tok
            tok.session.close()  # reopened read-write below (logs in again)
        try:
            lib = pkcs11.lib(module)
        except pkcs11.exceptions.PKCS11Error as exc:
            raise ConfigError(f"cannot load PKCS#11 module {module}: {exc}", check="pkcs11.module") from exc
        tokens = [
            t for t in lib.get_tokens(token_label=uri.token, token_serial=uri.serial.encode() if uri.serial else None)
            if (uri.manufacturer is None or t.manufacturer_id == uri.manufacturer)
            and (uri.model is None or t.model == uri.model)
        ]
        if len(tokens) != 1:
            raise ConfigError(
                f"{uri.text}: {'no token' if not tokens else 'more than one token'} matches in {module}",
                check="pkcs11.token",
            )
        token = tokens[0]
        pin = settings.pin_for(uri)
        try:
            session = token.open(user_pin=pin, rw=rw)
        except (pkcs11.exceptions.PinIncorrect, pkcs11.exceptions.PinInvalid, pkcs11.exceptions.PinLocked) as exc:
            raise ConfigError(f"{uri.text}: the token refused the PIN ({type(exc).__name__})", check="pkcs11.pin") from exc
        except pkcs11.exceptions.PKCS11Error as exc:
            raise ConfigError(f"{uri.text}: cannot open a session: {exc!r}", check="pkcs11.token") from exc
        tok = _Token(session, pid=os.getpid(), label=str(token.label), rw=rw)
        _tokens[key] = tok
        return tok


def close_tokens() -> None:
    """Close every session this process opened (at shutdown; tests)."""
    with _tokens_guard:
        for tok in _tokens.values():
            if tok.pid == os.getpid():
                try:
                    tok.session.close()
                except pkcs11.exceptions.PKCS11Error:
                    pass
        _tokens.clear()


class TokenEcKey(ec.EllipticCurvePrivateKey):
    """An EC private key in a token: signs there; cannot be exported."""

    def __init__(self, *, token: _Token, private: Any, public: ec.EllipticCurvePublicKey, uri: str) -> None:
        self._token = token
        self._private = private
        self._public = public
        self.uri = uri

    @property
    def curve(self) -> ec.EllipticCurve:
        return self._public.curve

    @property
    def key_size(self) -> int:
        return self._public.curve.key_size

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._public

    def sign(self, data: bytes | bytearray | memoryview, signature_algorithm: ec.EllipticCurveSignatureAlgorithm) -> bytes:
        if not isinstance(signature_algorithm, ec.ECDSA):
            raise KeyUnavailable("token keys sign ECDSA only", check="pkcs11.algorithm")
        algorithm = signature_algorithm.algorithm
        if isinstance(algorithm, utils.Prehashed):
            digest = bytes(data)
        else:
            h = hashes.Hash(algorithm)
            h.update(bytes(data))
            digest = h.finalize()
        self._token.check_process()
        try:
            with self._token.lock:
                raw = self._private.sign(digest, mechanism=Mechanism.ECDSA)
        except pkcs11.exceptions.PKCS11Error as exc:
            raise KeyUnavailable(f"the token did not sign with {self.uri}: {exc!r}", check="pkcs11.sign-failed") from exc
        # PKCS#11 returns r || s (v2.40 section 2.3.1); X.509 and CMS want the DER SEQUENCE.
        n = len(raw) // 2
        return utils.encode_dss_signature(int.from_bytes(raw[:n], "big"), int.from_bytes(raw[n:], "big"))

    def exchange(self, algorithm: ec.ECDH, peer_public_key: ec.EllipticCurvePublicKey) -> bytes:
        self._refuse("ECDH")

    def private_numbers(self) -> ec.EllipticCurvePrivateNumbers:
        self._refuse("export")

    def private_bytes(
        self,
        encoding: serialization.Encoding,
        format: serialization.PrivateFormat,
        encryption_algorithm: serialization.KeySerializationEncryption,
    ) -> bytes:
        self._refuse("export")

    def _refuse(self, what: str) -> NoReturn:
        raise KeyUnavailable(f"{self.uri} lives in a PKCS#11 token: no {what}", check="pkcs11.not-exportable")

    def __copy__(self) -> TokenEcKey:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> TokenEcKey:
        return self

    def attributes(self) -> dict[str, bool]:
        """The token's protection flags on this key (PKCS#11 v2.40 section 4.9)."""
        with self._token.lock:
            return {
                "sensitive": bool(self._private[Attribute.SENSITIVE]),
                "extractable": bool(self._private[Attribute.EXTRACTABLE]),
                "always_sensitive": bool(self._private[Attribute.ALWAYS_SENSITIVE]),
                "never_extractable": bool(self._private[Attribute.NEVER_EXTRACTABLE]),
            }

    def try_export(self) -> bytes:
        """Ask the token for CKA_VALUE, as an attacker with the PIN would (tests, audits)."""
        with self._token.lock:
            return bytes(self._private[Attribute.VALUE])


def _find(session: Any, cls: ObjectClass, uri: Pkcs11Uri) -> Any:
    return session.get_key(object_class=cls, key_type=KeyType.EC, label=uri.object, id=uri.id)


def load_token_key(uri_text: str, settings: Pkcs11Settings) -> TokenEcKey:
    """The EC key a ``pkcs11:`` URI names, with its public half from the token."""
    uri = Pkcs11Uri.parse(uri_text)
    tok = _open_token(uri, settings)
    with tok.lock:
        try:
            private = _find(tok.session, ObjectClass.PRIVATE_KEY, uri)
            public = _find(tok.session, ObjectClass.PUBLIC_KEY, uri)
        except pkcs11.exceptions.NoSuchKey as exc:
            raise ConfigError(f"{uri_text}: no EC key pair with that label/id in the token", check="pkcs11.key-missing") from exc
        except pkcs11.exceptions.MultipleObjectsReturned as exc:
            raise ConfigError(f"{uri_text}: names more than one key", check="pkcs11.key-ambiguous") from exc
        spki = encode_ec_public_key(public)
    pub = serialization.load_der_public_key(spki)
    if not isinstance(pub, ec.EllipticCurvePublicKey) or pub.curve.name not in _CURVES:
        raise ConfigError(f"{uri_text}: only P-256 and P-384 token keys are supported", check="pkcs11.key-type")
    return TokenEcKey(token=tok, private=private, public=pub, uri=uri_text)


def token_has_key(uri_text: str, settings: Pkcs11Settings) -> bool:
    """Does the token already hold a private key under this URI's label/id?"""
    uri = Pkcs11Uri.parse(uri_text)
    tok = _open_token(uri, settings)
    with tok.lock:
        try:
            _find(tok.session, ObjectClass.PRIVATE_KEY, uri)
        except pkcs11.exceptions.NoSuchKey:
            return False
        except pkcs11.exceptions.MultipleObjectsReturned:
            return True
        return True


def generate_token_key(uri_text: str, settings: Pkcs11Settings, *, curve: str = "secp256r1") -> TokenEcKey:
    """Generate a key pair in the token under the URI's label: private half
    CKA_SENSITIVE and not CKA_EXTRACTABLE, so the token never lets it out."""
    uri = Pkcs11Uri.parse(uri_text)
    if uri.object is None:
        raise ConfigError(f"{uri_text}: a new key needs a label (object=)", check="pkcs11.uri")
    if curve not in _CURVES:
        raise ConfigError(f"curve {curve} is not supported", check="pkcs11.key-type")
    tok = _open_token(uri, settings, rw=True)
    key_id = uri.id or secrets.token_bytes(8)
    with tok.lock:
        try:
            _find(tok.session, ObjectClass.PRIVATE_KEY, uri)
        except pkcs11.exceptions.NoSuchKey:
            pass
        except pkcs11.exceptions.MultipleObjectsReturned:
            raise ConfigError(f"{uri_text}: the token already holds keys with that label", check="pkcs11.key-exists") from None
        else:
            raise ConfigError(f"{uri_text}: the token already holds a key with that label", check="pkcs11.key-exists")
        params = tok.session.create_domain_parameters(
            KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters(curve)}, local=True
        )
        params.generate_keypair(
            store=True,
            label=uri.object,
            id=key_id,
            public_template={Attribute.VERIFY: True},
            private_template={
                Attribute.SIGN: True,
                Attribute.SENSITIVE: True,
                Attribute.EXTRACTABLE: False,
                Attribute.DERIVE: False,
                Attribute.DECRYPT: False,
                Attribute.UNWRAP: False,
            },
        )
    return load_token_key(uri_text, settings)
