"""The digest and signature algorithms a BRSKI CMS signer may use, and the
arithmetic: which key signs with which scheme, the AlgorithmIdentifiers
written, and checking a signature over the signed attributes.

Declared once for both directions (:mod:`brski.cms` signs and verifies with
these tables), so an algorithm allowed for signing is one the verifier
accepts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from asn1crypto import algos as asn1_algos
from asn1crypto import core as asn1_core
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.oid import PublicKeyAlgorithmOID, SignatureAlgorithmOID

from brski.asn1 import ber_children, ber_element, decode_oid, encode_oid, encode_tlv
from brski.errors import ConfigError, MalformedInput, SignatureInvalid

if TYPE_CHECKING:
    from brski.pki import PrivateKey

__all__ = [
    "DIGEST_ALGORITHMS",
    "DIGEST_NAMES",
    "DIGEST_OIDS",
    "HASHES",
    "SIGNATURE_ALGORITHMS",
    "SIGNATURE_ALGORITHM_IDS",
    "check_signature",
    "digest_label",
    "raw_sign",
    "signature_scheme",
]

HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}
DIGEST_ALGORITHMS = frozenset(HASHES)

# RFC 5754 section 2 digest OIDs, by dotted value.
DIGEST_OIDS = {
    "2.16.840.1.101.3.4.2.1": "sha256",
    "2.16.840.1.101.3.4.2.2": "sha384",
    "2.16.840.1.101.3.4.2.3": "sha512",
}
DIGEST_NAMES = {name: oid for oid, name in DIGEST_OIDS.items()}

# Signature algorithm OID -> (scheme, hash it implies or None to take the
# SignerInfo digestAlgorithm). RFC 5753/5754 name the hash; the plain key
# OIDs are what some producers write instead (RFC 3370 section 3.2 allows
# rsaEncryption there; ecPublicKey is a common mistake we tolerate).
SIGNATURE_ALGORITHMS: dict[str, tuple[str, str | None]] = {
    SignatureAlgorithmOID.ECDSA_WITH_SHA256.dotted_string: ("ecdsa", "sha256"),
    SignatureAlgorithmOID.ECDSA_WITH_SHA384.dotted_string: ("ecdsa", "sha384"),
    SignatureAlgorithmOID.ECDSA_WITH_SHA512.dotted_string: ("ecdsa", "sha512"),
    PublicKeyAlgorithmOID.EC_PUBLIC_KEY.dotted_string: ("ecdsa", None),
    SignatureAlgorithmOID.ED25519.dotted_string: ("ed25519", None),
    SignatureAlgorithmOID.RSA_WITH_SHA256.dotted_string: ("pkcs1v15", "sha256"),
    SignatureAlgorithmOID.RSA_WITH_SHA384.dotted_string: ("pkcs1v15", "sha384"),
    SignatureAlgorithmOID.RSA_WITH_SHA512.dotted_string: ("pkcs1v15", "sha512"),
    PublicKeyAlgorithmOID.RSAES_PKCS1_v1_5.dotted_string: ("pkcs1v15", None),
    SignatureAlgorithmOID.RSASSA_PSS.dotted_string: ("pss", None),
}

# AlgorithmIdentifier elements by asn1crypto-style name (see signature_scheme):
# ECDSA and Ed25519 take no parameters (RFC 5758 3.2, RFC 8410 3); RSA takes NULL (RFC 4055 5).
SIGNATURE_ALGORITHM_IDS = {
    "sha256_ecdsa": encode_tlv(0x30, encode_oid("1.2.840.10045.4.3.2")),
    "sha384_ecdsa": encode_tlv(0x30, encode_oid("1.2.840.10045.4.3.3")),
    "sha512_ecdsa": encode_tlv(0x30, encode_oid("1.2.840.10045.4.3.4")),
    "ed25519": encode_tlv(0x30, encode_oid("1.3.101.112")),
    "sha256_rsa": encode_tlv(0x30, encode_oid("1.2.840.113549.1.1.11") + b"\x05\x00"),
}


_WEAK_DIGESTS = {
    "1.2.840.113549.2.5": "MD5",
    "1.3.14.3.2.26": "SHA-1",
    "2.16.840.1.101.3.4.2.4": "SHA-224",
}


def digest_label(oid: str) -> str:
    weak = _WEAK_DIGESTS.get(oid)
    return f"{oid} ({weak})" if weak else oid


def signature_scheme(key: PrivateKey) -> tuple[str, str]:
    """(digest name, asn1crypto signature algorithm name) for a signing key."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        # RFC 5753 section 2.1.1 / RFC 5754 section 3.3: hash matched to the curve.
        by_curve = {"secp256r1": "sha256", "secp384r1": "sha384", "secp521r1": "sha512"}
        digest = by_curve.get(key.curve.name)
        if digest is None:
            raise ConfigError(f"curve {key.curve.name} not supported", check="cms.key-type")
        return digest, f"{digest}_ecdsa"
    if isinstance(key, ed25519.Ed25519PrivateKey):
        # RFC 8419 section 3: with signed attributes, the message digest is SHA-512.
        return "sha512", "ed25519"
    if isinstance(key, rsa.RSAPrivateKey):
        return "sha256", "sha256_rsa"
    raise ConfigError(f"unsupported signing key {type(key).__name__}", check="cms.key-type")


def raw_sign(key: PrivateKey, data: bytes, digest: str) -> bytes:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(HASHES[digest]()))
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(data)
    return key.sign(data, padding.PKCS1v15(), HASHES[digest]())


def _pss_parameters(params: Any) -> tuple[str, padding.PSS]:
    """RFC 4055 section 3.1 RSASSA-PSS-params, limited to SHA-2 and MGF1."""
    if isinstance(params, asn1_core.Void):
        raise MalformedInput("RSASSA-PSS without parameters", check="cms.signature-algorithm")
    hash_name = params["hash_algorithm"]["algorithm"].native
    mgf = params["mask_gen_algorithm"]
    mgf_hash = mgf["parameters"]["algorithm"].native if mgf["algorithm"].native == "mgf1" else None
    salt = params["salt_length"].native
    if (
        hash_name not in HASHES
        or mgf_hash not in HASHES
        or params["trailer_field"].native != "trailer_field_bc"
        or not isinstance(salt, int)
        or not 0 <= salt <= 1024
    ):
        raise MalformedInput("unsupported RSASSA-PSS parameters", check="cms.signature-algorithm")
    return hash_name, padding.PSS(mgf=padding.MGF1(HASHES[mgf_hash]()), salt_length=salt)


def check_signature(
    signer: x509.Certificate, *, algorithm: bytes, digest_name: str, signature: bytes, data: bytes
) -> None:
    # The extractors checked it is an AlgorithmIdentifier (BER allowed there).
    _, _, cs, ce, _ = ber_element(algorithm, 0, len(algorithm))
    fields = ber_children(algorithm, cs, ce)
    oid = decode_oid(algorithm[fields[0][2] : fields[0][3]])
    scheme = SIGNATURE_ALGORITHMS.get(oid)
    if scheme is None:
        raise MalformedInput(
            f"signature algorithm {oid} not supported", check="cms.signature-algorithm"
        )
    kind, implied_hash = scheme
    # RFC 5652 section 5.4 (RFC 5753 section 2.1.1 for ECDSA, RFC 4056
    # section 2 for PSS): the signature over the signed attributes uses the
    # SignerInfo's digestAlgorithm. A signatureAlgorithm naming another hash
    # is refused: verifying with the hash it names would accept a SignerInfo
    # that declares SHA-384 over a SHA-256 signature.
    if implied_hash is not None and implied_hash != digest_name:
        raise SignatureInvalid(
            f"signatureAlgorithm {oid} hashes with {implied_hash}, digestAlgorithm is {digest_name}",
            check="cms.digest-mismatch",
        )
    hash_name = digest_name
    try:
        public_key = signer.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise MalformedInput(
            "the signer certificate has an unusable key", check="cms.signer-key"
        ) from exc
    wrong_key = SignatureInvalid(
        f"signer key {type(public_key).__name__} does not fit {oid}", check="cms.signer-key"
    )
    try:
        if kind == "ecdsa":
            if not isinstance(public_key, ec.EllipticCurvePublicKey):
                raise wrong_key
            public_key.verify(signature, data, ec.ECDSA(HASHES[hash_name]()))
        elif kind == "ed25519":
            if not isinstance(public_key, ed25519.Ed25519PublicKey):
                raise wrong_key
            public_key.verify(signature, data)
        else:
            if not isinstance(public_key, rsa.RSAPublicKey):
                raise wrong_key
            if kind == "pss":
                identifier = asn1_algos.SignedDigestAlgorithm.load(algorithm, strict=True)
                pss_hash, pss = _pss_parameters(identifier["parameters"])
                if pss_hash != digest_name:
                    raise SignatureInvalid(
                        f"RSASSA-PSS hashes with {pss_hash}, digestAlgorithm is {digest_name}",
                        check="cms.digest-mismatch",
                    )
                public_key.verify(signature, data, pss, HASHES[pss_hash]())
            else:
                public_key.verify(signature, data, padding.PKCS1v15(), HASHES[hash_name]())
    except (InvalidSignature, ValueError) as exc:
        raise SignatureInvalid(
            "signature over the signed attributes does not verify", check="cms.signature"
        ) from exc
