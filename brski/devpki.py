"""A complete, throw-away PKI for development, demos and end-to-end tests.

One call yields every certificate and key the three roles need, as bytes keyed
by relative path, so tests can use it in memory and the CLI can write it to
disk. Pure: no clock reads (``now=``), no file I/O.

Hierarchy (all P-256, ECDSA-SHA256)::

    manufacturer/root-ca            self-signed, pathLen 1, notAfter 9999
      manufacturer/idevid-ca        pathLen 0, notAfter 9999
        pledges/<SERIAL>/idevid     802.1AR IDevID (serialNumber, id-pe-masa-url)
      masa/voucher-signer           signs vouchers (keyUsage digitalSignature)
      masa/tls                      serverAuth + clientAuth
      masa/admin                    clientAuth, CN=masa admin (the MASA console's operator)
    registrar/domain-ca             self-signed, pathLen 0 (also issues LDevIDs)
      registrar/tls                 serverAuth + clientAuth + id-kp-cmcRA
      registrar/ra                  id-kp-cmcRA + clientAuth
      registrar/admin               clientAuth, CN=admin
      registrar/radius              serverAuth + clientAuth, CN=radius: the
                                    RADIUS server's EAP-TLS certificate and its
                                    client certificate towards the registrar's
                                    network-access endpoint

With ``external_key``, the domain CA, RA and voucher-signer keys come from
the caller (e.g. generated in a PKCS#11 token) and no ``.key`` file is written
for them; the registrar then also gets ``registrar/masa-client`` (cmcRA +
clientAuth, a file key) for its TLS connection to the MASA, since TLS needs a
key OpenSSL can read.

The manufacturer CAs get the 802.1AR "no well-defined expiration" date as
well: an IDevID that never expires is useless under a root that does.
"""

from __future__ import annotations

import ipaddress
import string
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import MappingProxyType

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from brski import oids
from brski.ca import EE_KEY_USAGE
from brski.errors import ConfigError
from brski.mud import mud_url_extension
from brski.pki import PrivateKey, load_cert, load_certs, load_private_key

__all__ = ["EXTERNAL_KEY_PATHS", "DevPki", "build_dev_pki", "idevid_masa_url_extension"]

#: The signing keys ``build_dev_pki(external_key=...)`` asks the caller for.
EXTERNAL_KEY_PATHS = ("registrar/domain-ca", "registrar/ra", "masa/voucher-signer")

# RFC 5280 section 4.1.2.5: "no well-defined expiration date" is 99991231235959Z,
# the value 802.1AR and RFC 8995 section 2.6.2 ask for on IDevIDs.
NO_EXPIRY = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
BACKDATE = timedelta(hours=1)
DOMAIN_CA_LIFETIME = timedelta(days=3650)
EE_LIFETIME = timedelta(days=730)

_SERIAL_CHARS = set(string.ascii_letters + string.digits + "-_.")


@dataclass(frozen=True, kw_only=True)
class DevPki:
    """The generated files. Keys are relative POSIX paths, values PEM bytes."""

    files: Mapping[str, bytes]
    pledge_serials: tuple[str, ...] = ()
    _cert_cache: dict[str, x509.Certificate] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        for path, content in self.files.items():
            # Paths are later joined onto a user-chosen directory: refuse
            # anything that could escape it.
            parts = path.split("/")
            if not path or path.startswith("/") or any(p in ("", ".", "..") for p in parts):
                raise ConfigError(f"bad dev PKI path {path!r}", check="devpki.path")
            if not isinstance(content, bytes):
                raise ConfigError(f"{path!r} content must be bytes", check="devpki.content")
        for serial in self.pledge_serials:
            if f"pledges/{serial}/idevid.crt" not in self.files:
                raise ConfigError(f"pledge {serial!r} has no IDevID", check="devpki.pledge")
        object.__setattr__(self, "files", MappingProxyType(dict(self.files)))

    def cert(self, path: str) -> x509.Certificate:
        """The certificate at ``path`` ("registrar/tls" or "registrar/tls.crt")."""
        if not path.endswith((".crt", ".pem")):
            path += ".crt"
        cached = self._cert_cache.get(path)
        if cached is None:
            cached = load_cert(self._get(path))
            self._cert_cache[path] = cached
        return cached

    def certs(self, path: str) -> list[x509.Certificate]:
        """Every certificate of a bundle such as "manufacturer/anchors.pem"."""
        return load_certs(self._get(path))

    def key(self, path: str) -> PrivateKey:
        """The private key at ``path`` ("registrar/tls" or "registrar/tls.key")."""
        if not path.endswith(".key"):
            path += ".key"
        return load_private_key(self._get(path))

    def key_paths(self) -> Iterator[str]:
        """Paths holding private keys: the CLI writes these with mode 0600."""
        return (p for p in sorted(self.files) if p.endswith(".key"))

    def pledge_dir(self, serial: str) -> str:
        return f"pledges/{serial}"

    def _get(self, path: str) -> bytes:
        try:
            return self.files[path]
        except KeyError:
            raise ConfigError(f"no {path!r} in the dev PKI", check="devpki.missing") from None


# --- building blocks --------------------------------------------------------------


def _name(cn: str, org: str, serial: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org)]
    if serial is not None:
        # RFC 8995 section 2.3.1: the device serial lives in X520SerialNumber.
        attrs.append(x509.NameAttribute(NameOID.SERIAL_NUMBER, serial))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


_CA_KU = x509.KeyUsage(
    digital_signature=False,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)


def idevid_masa_url_extension(url: str) -> x509.UnrecognizedExtension:
    """id-pe-masa-url as RFC 8995 section 2.3.2 defines it: MASAURLSyntax ::= IA5String."""
    raw = url.encode("ascii")
    if len(raw) >= 128:
        # Long-form DER length, for completeness (a URL this long is unusual).
        length = len(raw).to_bytes((len(raw).bit_length() + 7) // 8, "big")
        header = bytes([0x16, 0x80 | len(length)]) + length
    else:
        header = bytes([0x16, len(raw)])
    return x509.UnrecognizedExtension(oids.ID_PE_MASA_URL, header + raw)


class _Issuer:
    """A CA certificate with its key, able to sign children."""

    def __init__(self, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
        self.cert = cert
        self.key = key


def _builder(
    *,
    subject: x509.Name,
    issuer: _Issuer | None,
    public_key: ec.EllipticCurvePublicKey,
    not_before: datetime,
    not_after: datetime,
) -> x509.CertificateBuilder:
    b = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(public_key)
        # RFC 5280 section 4.1.2.2: positive, unique, at most 20 octets;
        # 159 random bits also satisfy CA/B's >= 64 bits of entropy.
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
    if issuer is not None:
        # RFC 5280 section 4.2.1.1: AKI MUST be present unless self-signed.
        ski = issuer.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        b = b.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
    return b


def _make_ca(
    *,
    subject: x509.Name,
    issuer: _Issuer | None,
    path_length: int,
    not_before: datetime,
    not_after: datetime,
    key: ec.EllipticCurvePrivateKey | None = None,
) -> _Issuer:
    key = key or ec.generate_private_key(ec.SECP256R1())
    b = (
        _builder(
            subject=subject,
            issuer=issuer,
            public_key=key.public_key(),
            not_before=not_before,
            not_after=not_after,
        )
        # RFC 5280 sections 4.2.1.9 and 4.2.1.3: both MUST be critical on CAs.
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(_CA_KU, critical=True)
    )
    signer = issuer.key if issuer else key
    cert = b.sign(signer, hashes.SHA256())
    return _Issuer(cert, key)


def _make_ee(
    *,
    subject: x509.Name,
    issuer: _Issuer,
    not_before: datetime,
    not_after: datetime,
    key_usage: bool = True,
    eku: Sequence[x509.ObjectIdentifier] = (),
    hosts: Sequence[str] = (),
    extra: Sequence[x509.ExtensionType] = (),
    key: ec.EllipticCurvePrivateKey | None = None,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = key or ec.generate_private_key(ec.SECP256R1())
    b = _builder(
        subject=subject,
        issuer=issuer,
        public_key=key.public_key(),
        not_before=not_before,
        not_after=not_after,
    ).add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    if key_usage:
        b = b.add_extension(EE_KEY_USAGE, critical=True)
    if eku:
        b = b.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    if hosts:
        b = b.add_extension(
            x509.SubjectAlternativeName([_general_name(h) for h in hosts]), critical=False
        )
    for ext in extra:
        b = b.add_extension(ext, critical=False)
    return b.sign(issuer.key, hashes.SHA256()), key


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _validate_args(
    pledges: int,
    masa_url: str,
    registrar_hosts: Sequence[str],
    masa_hosts: Sequence[str],
    now: datetime,
    serial_prefix: str,
) -> None:
    if isinstance(pledges, bool) or not isinstance(pledges, int) or pledges < 0:
        raise ConfigError("pledges must be a non-negative integer", check="devpki.pledges")
    if pledges > 999_999:
        raise ConfigError("at most 999999 pledges", check="devpki.pledges")
    if not masa_url or not masa_url.isascii() or any(c.isspace() for c in masa_url):
        # RFC 8995 section 2.3.2: the extension is an IA5String.
        raise ConfigError(f"masa_url {masa_url!r} must be non-empty ASCII", check="devpki.masa-url")
    for label, hosts in (("registrar_hosts", registrar_hosts), ("masa_hosts", masa_hosts)):
        if isinstance(hosts, str) or not hosts or not all(hosts):
            raise ConfigError(f"{label} must be a non-empty list of names", check="devpki.hosts")
    if now.tzinfo is None:
        raise ConfigError("now must be timezone-aware", check="devpki.naive-time")
    if not serial_prefix or not set(serial_prefix) <= _SERIAL_CHARS:
        # The serial becomes a directory name and a PrintableString.
        raise ConfigError(f"bad serial prefix {serial_prefix!r}", check="devpki.serial-prefix")


def build_dev_pki(
    *,
    pledges: int,
    masa_url: str,
    registrar_hosts: Sequence[str] = ("localhost", "127.0.0.1"),
    masa_hosts: Sequence[str] = ("localhost", "127.0.0.1"),
    now: datetime,
    serial_prefix: str = "PLG",
    external_key: Callable[[str], ec.EllipticCurvePrivateKey] | None = None,
    mud_urls: Mapping[str, str] | None = None,
) -> DevPki:
    """Generate the whole development PKI; see the module docstring for the tree.

    ``external_key(path)`` is called for each of :data:`EXTERNAL_KEY_PATHS`.
    ``mud_urls``: serial -> MUD URL written into that pledge's IDevID
    (id-pe-mud-url, RFC 8520 10).
    """
    _validate_args(pledges, masa_url, registrar_hosts, masa_hosts, now, serial_prefix)
    now = now.astimezone(UTC)
    nb = now - BACKDATE
    ee_until = now + EE_LIFETIME
    files: dict[str, bytes] = {}
    mfr = "brski dev manufacturer"
    dom = "brski dev domain"

    external = {p: external_key(p) for p in EXTERNAL_KEY_PATHS} if external_key else {}

    def put_ca(path: str, iss: _Issuer) -> None:
        files[f"{path}.crt"] = _pem_cert(iss.cert)
        if path not in external:
            files[f"{path}.key"] = _pem_key(iss.key)

    def put_ee(path: str, pair: tuple[x509.Certificate, ec.EllipticCurvePrivateKey]) -> None:
        files[f"{path}.crt"] = _pem_cert(pair[0])
        if path not in external:
            files[f"{path}.key"] = _pem_key(pair[1])

    # --- manufacturer -----------------------------------------------------
    root = _make_ca(
        subject=_name("brski dev manufacturer root CA", mfr),
        issuer=None,
        path_length=1,
        not_before=nb,
        not_after=NO_EXPIRY,
    )
    idevid_ca = _make_ca(
        subject=_name("brski dev IDevID CA", mfr),
        issuer=root,
        path_length=0,
        not_before=nb,
        not_after=NO_EXPIRY,
    )
    put_ca("manufacturer/root-ca", root)
    put_ca("manufacturer/idevid-ca", idevid_ca)
    # Pledges and the registrar trust the manufacturer root: vouchers are
    # signed under it (RFC 8995 section 5.6.1).
    files["manufacturer/anchors.pem"] = _pem_cert(root.cert)

    # --- MASA ---------------------------------------------------------------
    put_ee(
        "masa/voucher-signer",
        _make_ee(
            subject=_name("brski dev MASA voucher signer", mfr),
            issuer=root,
            not_before=nb,
            not_after=ee_until,
            key=external.get("masa/voucher-signer"),
        ),
    )
    put_ee(
        "masa/tls",
        _make_ee(
            subject=_name(masa_hosts[0], mfr),
            issuer=root,
            not_before=nb,
            not_after=ee_until,
            eku=(ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH),
            hosts=masa_hosts,
        ),
    )

    put_ee(
        "masa/admin",
        _make_ee(
            subject=_name("masa admin", mfr),
            issuer=root,
            not_before=nb,
            not_after=ee_until,
            eku=(ExtendedKeyUsageOID.CLIENT_AUTH,),
        ),
    )

    # --- registrar (the owner's domain) -------------------------------------
    domain_ca = _make_ca(
        subject=_name("brski dev domain CA", dom),
        issuer=None,
        path_length=0,
        not_before=nb,
        not_after=now + DOMAIN_CA_LIFETIME,
        key=external.get("registrar/domain-ca"),
    )
    put_ca("registrar/domain-ca", domain_ca)
    files["registrar/ca-bundle.pem"] = _pem_cert(domain_ca.cert)
    # RFC 8995 section 5.6.2: the registrar's TLS certificate must chain to
    # pinned-domain-cert, which the registrar sets to the domain CA.
    put_ee(
        "registrar/tls",
        _make_ee(
            subject=_name(registrar_hosts[0], dom),
            issuer=domain_ca,
            not_before=nb,
            not_after=ee_until,
            # id-kp-cmcRA: discovered pledges take it as the mark of the
            # registrar (RFC 7030 3.6.1, RFC 8995 5.6.2).
            eku=(ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH, oids.ID_KP_CMC_RA),
            hosts=registrar_hosts,
        ),
    )
    # RFC 8995 section 5.5.4: the MASA requires id-kp-cmcRA on the registrar
    # voucher-request signer; clientAuth lets the same cert authenticate the
    # registrar's TLS connection to the MASA.
    put_ee(
        "registrar/ra",
        _make_ee(
            subject=_name("brski dev registrar RA", dom),
            issuer=domain_ca,
            not_before=nb,
            not_after=ee_until,
            eku=(oids.ID_KP_CMC_RA, ExtendedKeyUsageOID.CLIENT_AUTH),
            key=external.get("registrar/ra"),
        ),
    )
    if "registrar/ra" in external:
        # The RA key signs voucher-requests in the token; the TLS connection to
        # the MASA authenticates with this one (RFC 8995 5.5.4: the MASA
        # accepts a cmcRA certificate under the domain CA the request pins).
        put_ee(
            "registrar/masa-client",
            _make_ee(
                subject=_name("brski dev registrar MASA client", dom),
                issuer=domain_ca,
                not_before=nb,
                not_after=ee_until,
                eku=(oids.ID_KP_CMC_RA, ExtendedKeyUsageOID.CLIENT_AUTH),
            ),
        )
    put_ee(
        "registrar/admin",
        _make_ee(
            subject=_name("admin", dom),
            issuer=domain_ca,
            not_before=nb,
            not_after=ee_until,
            eku=(ExtendedKeyUsageOID.CLIENT_AUTH,),
        ),
    )
    # RFC 5216 5.3: the EAP server presents a certificate the peer can check
    # against the domain CA; the same key authenticates the RADIUS server to
    # the registrar when it asks for a network-access decision.
    put_ee(
        "registrar/radius",
        _make_ee(
            subject=_name("radius", dom),
            issuer=domain_ca,
            not_before=nb,
            not_after=ee_until,
            eku=(ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH),
        ),
    )

    # --- pledges ---------------------------------------------------------------
    masa_ext = idevid_masa_url_extension(masa_url)
    chain_pem = _pem_cert(idevid_ca.cert)
    serials: list[str] = []
    for i in range(1, pledges + 1):
        serial = f"{serial_prefix}-{i:06d}"
        serials.append(serial)
        # 802.1AR IDevID: no SAN, no EKU and (RFC 8995 section 2.3 RECOMMENDS
        # no key usage restrictions) no keyUsage, the long-lived notAfter of
        # section 2.6.2, and the MASA URI of section 2.3.2 (non-critical).
        put_ee(
            f"pledges/{serial}/idevid",
            _make_ee(
                subject=_name(f"brski dev pledge {serial}", mfr, serial=serial),
                issuer=idevid_ca,
                not_before=nb,
                not_after=NO_EXPIRY,
                key_usage=False,
                extra=(masa_ext, *((mud_url_extension(mud_urls[serial]),) if mud_urls and serial in mud_urls else ())),
            ),
        )
        files[f"pledges/{serial}/chain.pem"] = chain_pem

    return DevPki(files=files, pledge_serials=tuple(serials))
