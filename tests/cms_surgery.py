"""asn1crypto surgery on CMS SignedData for the negative tests of brski.cms:
edit a parsed ContentInfo, re-sign the edited signed attributes so that only
the rule under test fails, and assert a refusal by its check name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from asn1crypto import cms as asn1_cms
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding

from brski import cms
from brski.asn1 import encode_length
from brski.errors import (
    BrskiError,
)
from tests.cms_helpers import Key


def _edit(der: bytes, change: Callable[[Any], None]) -> bytes:
    """Apply ``change`` to the parsed ContentInfo and re-encode it."""
    content_info = asn1_cms.ContentInfo.load(der)
    change(content_info)
    return bytes(content_info.dump())


def _choice(cert: x509.Certificate) -> Any:
    return asn1_cms.CertificateChoices(
        name="certificate",
        value=asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER)),
    )


def _signer_info(content_info: Any) -> Any:
    return content_info["content"]["signer_infos"][0]


def _raw_sign(key: Key, data: bytes, digest: str = "sha256") -> bytes:
    algorithms: dict[str, Callable[[], hashes.HashAlgorithm]] = {
        "sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512,
    }
    hash_ = algorithms[digest]
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(hash_()))
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(data)
    return key.sign(data, padding.PKCS1v15(), hash_())


def _resign(signer_info: Any, key: Key, sign: Callable[[bytes], bytes] | None = None) -> None:
    """Re-sign the (edited) signed attributes, so that only the rule under test fails."""
    contents = signer_info["signed_attrs"].contents
    data = b"\x31" + encode_length(len(contents)) + contents
    signer_info["signature"] = sign(data) if sign else _raw_sign(key, data)


def _attrs(content_type: str, digest: bytes, *extra: dict[str, Any]) -> Any:
    return asn1_cms.CMSAttributes(
        [
            {"type": "content_type", "values": [content_type]},
            {"type": "message_digest", "values": [digest]},
            *extra,
        ]
    )


def _sha256(data: bytes) -> bytes:
    hasher = hashes.Hash(hashes.SHA256())
    hasher.update(data)
    return hasher.finalize()


def _refused(der: bytes, error: type[BrskiError], check: str, **kwargs: Any) -> BrskiError:
    with pytest.raises(error) as info:
        cms.verify(der, **kwargs)
    assert info.value.check == check, repr(info.value)
    return info.value
