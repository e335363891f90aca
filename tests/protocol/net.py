"""Both apps in-process behind the real pyOpenSSL TLS transport, on loopback
(helpers; the ``net`` fixture in conftest.py starts one per module).

Each test module gets its own development PKI (``brski.devpki.build_dev_pki``
written to a tmp dir), its own MASA and registrar stores, and both servers
running on a background event loop, so tests are plain synchronous functions
that speak real HTTPS with real client certificates (stdlib ``ssl``, i.e. a
different TLS implementation from the servers', as in deployment) and read
the stores directly to check that nothing was issued or signed. Each module
runs once per store engine (``engine``: SQLite files, or schemas on the
session's PostgreSQL cluster, see tests/conftest.py).

Wiring is the production one: ``create_app(config)`` with the role's own
config loader, ``brski_web.serve.server_tls("pyopenssl", ...)`` and
``brski_web.tls.start_tls_server(runner.server, ...)``.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import ssl
import threading
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from brski.artifact import sign_artifact
from brski.devpki import DevPki, build_dev_pki, idevid_masa_url_extension
from brski.oids import MT_VOUCHER_CMS_JSON
from brski.pki import PrivateKey, fingerprint_sha256
from brski.voucher import Assertion, VoucherRequest
from brski_cli.pgcluster import PgCluster
from brski_web.serve import server_tls
from brski_web.tls import TlsServerConfig, bound_port, start_tls_server
from masa.app import SERVICE as MASA_SERVICE
from masa.app import create_app as create_masa_app
from masa.config import load_config as load_masa_config
from pledge_sim.config import load_config as load_pledge_config
from pledge_sim.service import EnrollResult, enroll_one
from registrar.app import SERVICE as REGISTRAR_SERVICE
from registrar.app import create_app as create_registrar_app
from registrar.config import load_config as load_registrar_config
from tests.pki_helpers import make_cert
from tests.store_helpers import raw_rows

T = TypeVar("T")
PEM = serialization.Encoding.PEM
NOW = datetime.now(UTC)

# Short for tests: the chunked-body-that-never-ends case waits this long.
BODY_TIMEOUT_S = 0.5


# --- certificates the dev PKI does not have ----------------------------------------


def key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def issue(
    subject: x509.Name,
    *,
    issuer_cert: x509.Certificate | None,
    issuer_key: PrivateKey | None,
    ca: bool = False,
    eku: tuple[x509.ObjectIdentifier, ...] = (),
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    extra: tuple[x509.ExtensionType, ...] = (),
    key: ec.EllipticCurvePrivateKey | None = None,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """One P-256 certificate valid around the real clock, without key usage
    (pki_helpers.make_cert); self-signed without an issuer."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    issuer = None if issuer_cert is None or issuer_key is None else (issuer_cert, issuer_key)
    cert, _ = make_cert(
        "", subject=subject, issuer=issuer, key=key, ca=ca, key_usage=None, eku=eku or None,
        not_before=not_before or NOW - timedelta(hours=1), not_after=not_after or NOW + timedelta(days=30),
        extra=[(ext, False) for ext in extra],
    )
    return cert, key


def name(cn: str, *, serial: str | None = None, org: str = "brski test") -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org)]
    if serial is not None:
        attrs.append(x509.NameAttribute(NameOID.SERIAL_NUMBER, serial))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


@dataclass(frozen=True)
class Identity:
    """A TLS client identity: leaf (+ chain) and key, also as files for ssl."""

    label: str
    cert: x509.Certificate | None
    key: PrivateKey | None
    chain: tuple[x509.Certificate, ...] = ()
    pem_path: Path | None = None
    key_path: Path | None = None


def write_identity(root: Path, label: str, cert: x509.Certificate, key: PrivateKey,
                   chain: tuple[x509.Certificate, ...] = ()) -> Identity:
    d = root / "identities"
    d.mkdir(exist_ok=True)
    pem = d / f"{label}.pem"
    pem.write_bytes(b"".join(c.public_bytes(PEM) for c in (cert, *chain)))
    kp = d / f"{label}.key"
    kp.write_bytes(key_pem(key))
    os.chmod(kp, 0o600)
    return Identity(label=label, cert=cert, key=key, chain=chain, pem_path=pem, key_path=kp)


NO_CERT = Identity(label="no-certificate", cert=None, key=None)


# --- the running pair ----------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def problem(self) -> dict[str, Any]:
        try:
            doc = json.loads(self.body)
        except ValueError:
            return {}
        return doc if isinstance(doc, dict) else {}

    @property
    def check(self) -> str | None:
        """The failed check, from problem JSON or the RFC 8995 5.6 plain-text form."""
        if "check" in self.problem:
            return str(self.problem["check"])
        text = self.body.decode("utf-8", "replace")
        if "(check: " in text:
            return text.rsplit("(check: ", 1)[1].split(")", 1)[0]
        return None


@dataclass
class Net:
    """MASA + registrar serving on loopback; helpers to talk to and inspect them."""

    root: Path
    pki: DevPki
    loop: asyncio.AbstractEventLoop
    masa_port: int = 0
    registrar_port: int = 0
    masa_app: web.Application | None = None
    registrar_app: web.Application | None = None
    _cleanup: list[Any] = field(default_factory=list)
    _next_pledge: int = 0
    reserved: set[str] = field(default_factory=set)  # serials fresh_serial() never hands out
    databases: dict[str, str] = field(default_factory=dict)  # role -> store URL (default: SQLite in root)

    def db_url(self, role: str) -> str:
        """The store URL ``role`` ("masa" or "registrar") runs on."""
        return self.databases.get(role) or f"sqlite:///{self.root / role}.db"

    # -- running code on the servers' loop
    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)

    @property
    def masa(self) -> Any:
        assert self.masa_app is not None
        return self.masa_app[MASA_SERVICE]

    @property
    def registrar(self) -> Any:
        assert self.registrar_app is not None
        return self.registrar_app[REGISTRAR_SERVICE]

    # -- files and identities
    def path(self, rel: str) -> Path:
        return self.root / "pki" / rel

    def pledge(self, serial: str) -> Identity:
        return Identity(
            label=serial,
            cert=self.pki.cert(f"pledges/{serial}/idevid.crt"),
            key=self.pki.key(f"pledges/{serial}/idevid.key"),
            chain=tuple(self.pki.certs(f"pledges/{serial}/chain.pem")),
            pem_path=self._pledge_pem(serial),
            key_path=self.path(f"pledges/{serial}/idevid.key"),
        )

    def _pledge_pem(self, serial: str) -> Path:
        p = self.root / "identities" / f"{serial}.pem"
        if not p.exists():
            p.parent.mkdir(exist_ok=True)
            p.write_bytes(self.pki.files[f"pledges/{serial}/idevid.crt"] + self.pki.files[f"pledges/{serial}/chain.pem"])
        return p

    def fresh_serial(self) -> str:
        """A pledge no other test of this module has used."""
        while True:
            serial = self.pki.pledge_serials[self._next_pledge]
            self._next_pledge += 1
            if serial not in self.reserved:
                return serial

    # -- HTTP over real TLS
    def request(
        self,
        role: str,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        identity: Identity = NO_CERT,
    ) -> Reply:
        port = self.masa_port if role == "masa" else self.registrar_port
        trust = "manufacturer/root-ca.crt" if role == "masa" else "registrar/domain-ca.crt"
        ctx = ssl.create_default_context(cafile=str(self.path(trust)))
        ctx.check_hostname = False
        if identity.pem_path is not None and identity.key_path is not None:
            ctx.load_cert_chain(str(identity.pem_path), str(identity.key_path))
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
        finally:
            conn.close()

    # -- what the stores hold (read directly, not through our store code)
    def rows(self, role: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return raw_rows(self.db_url(role), sql, params)

    def count(self, role: str, table: str) -> int:
        return int(self.rows(role, f"SELECT count(*) FROM {table}")[0][0])

    def last_event(self, role: str) -> tuple[Any, ...]:
        return self.rows(role, "SELECT kind, outcome, check_name, device_serial FROM events ORDER BY id DESC LIMIT 1")[0]

    def snapshot(self) -> dict[str, int]:
        """What "nothing issued or signed" is measured against."""
        return {
            "registrar.certificates": self.count("registrar", "certificates"),
            "registrar.vouchers": self.count("registrar", "vouchers"),
            "masa.vouchers": self.count("masa", "vouchers"),
            "masa.audit_log": self.count("masa", "audit_log"),
        }

    # -- the reference pledge
    def enroll(self, serial: str | None = None, **overrides: Any) -> EnrollResult:
        serial = serial or self.fresh_serial()
        cfg = load_pledge_config(
            None,
            {
                "registrar": f"https://127.0.0.1:{self.registrar_port}",
                "dir": str(self.path(f"pledges/{serial}")),
                "out": str(self.root / "out" / serial),
                "timeout": 30.0,
                **overrides,
            },
        )

        async def no_sleep(_s: float) -> None:
            return None

        return asyncio.run(enroll_one(cfg, sleep=no_sleep))


def pledge_request(
    net: Net,
    ident: Identity,
    *,
    serial: str | None = None,
    nonce: bytes | None = b"n" * 16,
    assertion: Assertion | None = Assertion.PROXIMITY,
    proximity: bytes | None = None,
    omit_proximity: bool = False,
    sign_key: PrivateKey | None = None,
    sign_cert: x509.Certificate | None = None,
) -> bytes:
    """A pledge voucher-request as ``ident`` would send it, with one thing changed."""
    from brski.pki import cert_der, device_serial

    assert ident.cert is not None and ident.key is not None
    vr = VoucherRequest(
        created_on=datetime.now(UTC),
        assertion=assertion,
        serial_number=serial if serial is not None else device_serial(ident.cert),
        nonce=nonce,
        proximity_registrar_cert=None if omit_proximity else (proximity or cert_der(net.pki.cert("registrar/tls.crt"))),
    )
    return sign_artifact(
        vr,
        media_type=MT_VOUCHER_CMS_JSON,
        key=sign_key or ident.key,
        cert=sign_cert or ident.cert,
        chain=ident.chain,
    )


VR_HEADERS = {"Content-Type": MT_VOUCHER_CMS_JSON, "Accept": MT_VOUCHER_CMS_JSON}


def start_net(
    root: Path,
    *,
    pledges: int = 24,
    registrar: dict[str, Any] | None = None,
    masa: dict[str, Any] | None = None,
    databases: dict[str, str] | None = None,
) -> Net:
    """Generate the PKI, import the devices, start MASA then registrar
    (stores: ``databases`` by role, else SQLite files in ``root``)."""
    pki = build_dev_pki(pledges=pledges, masa_url="https://localhost:1", now=NOW - timedelta(minutes=5))
    for rel, data in pki.files.items():
        p = root / "pki" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        if rel.endswith(".key"):
            os.chmod(p, 0o600)
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True, name="protocol-servers").start()
    net = Net(root=root, pki=pki, loop=loop, databases=dict(databases or {}))
    P = net.path

    def server_files(role: str, **files: str) -> dict[str, Any]:
        """What both servers are configured with: their TLS identity and store,
        the manufacturer anchor, the body timeout, and ``files`` from the PKI."""
        return {
            "tls_cert": str(P(f"{role}/tls.crt")),
            "tls_key": str(P(f"{role}/tls.key")),
            "database": net.db_url(role),
            "manufacturer_anchors": [str(P("manufacturer/root-ca.crt"))],
            "body_read_timeout_s": BODY_TIMEOUT_S,
            **{key: str(P(path)) for key, path in files.items()},
        }

    masa_cfg = load_masa_config(
        None,
        {
            **server_files(
                "masa", signer_cert="masa/voucher-signer.crt", signer_key="masa/voucher-signer.key"
            ),
            **(masa or {}),
        },
    )

    async def serve(app: web.Application, cert: Path, key: Path, client_cas: list[Path]) -> int:
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        tls = server_tls("pyopenssl", cert=cert, key=key, client_cas=client_cas, client_auth="optional")
        assert runner.server is not None
        assert isinstance(tls, TlsServerConfig)  # the pyopenssl backend's settings
        server = await start_tls_server(runner.server, host="127.0.0.1", port=0, cfg=tls)
        net._cleanup.append((runner, server))
        return bound_port(server)

    net.masa_app = create_masa_app(masa_cfg)
    net.masa_port = net.call(serve(net.masa_app, masa_cfg.tls_cert, masa_cfg.tls_key, [P("manufacturer/root-ca.crt")]))

    async def import_devices() -> None:
        for serial in pki.pledge_serials:
            await net.masa.store.add_manufactured_device(
                serial, idevid_fingerprint=fingerprint_sha256(pki.cert(f"pledges/{serial}/idevid.crt")), at=NOW
            )

    net.call(import_devices())
    reg_cfg = load_registrar_config(
        None,
        {
            **server_files(
                "registrar",
                ca_cert="registrar/domain-ca.crt",
                ca_key="registrar/domain-ca.key",
                ra_cert="registrar/ra.crt",
                ra_key="registrar/ra.key",
            ),
            "masa_trust": [str(P("manufacturer/root-ca.crt"))],
            "masa_url_override": f"https://127.0.0.1:{net.masa_port}",
            "masa_timeout_s": 30.0,
            **(registrar or {}),
        },
    )
    net.registrar_app = create_registrar_app(reg_cfg)
    net.registrar_port = net.call(
        serve(net.registrar_app, reg_cfg.tls_cert, reg_cfg.tls_key, [P("manufacturer/root-ca.crt"), reg_cfg.ca_cert])
    )
    return net


def stop_net(net: Net) -> None:
    async def stop() -> None:
        for runner, server in reversed(net._cleanup):
            server.close()
            await runner.cleanup()
            await server.wait_closed()

    net.call(stop())
    net.loop.call_soon_threadsafe(net.loop.stop)


def engine_databases(engine: str, request: pytest.FixtureRequest) -> dict[str, str]:
    """``start_net(databases=...)`` putting both stores on ``engine``."""
    if engine == "sqlite":
        return {}
    cluster: PgCluster = request.getfixturevalue("postgres")
    return {"registrar": cluster.new_schema("registrar"), "masa": cluster.new_schema("masa")}


@contextmanager
def running_net(
    root: Path, engine: str, request: pytest.FixtureRequest, **options: Any
) -> Iterator[Net]:
    """A module's ``net`` fixture: :func:`start_net` in ``root`` with its stores on
    ``engine`` and ``options``, stopped when the module is done (or failed)."""
    n = start_net(root, databases=engine_databases(engine, request), **options)
    try:
        yield n
    finally:
        stop_net(n)


# --- identities shared by the refusal and matrix modules ----------------------------


def other_manufacturer(root: Path, *, masa_url: str = "https://localhost:1") -> DevPki:
    """A second, unrelated dev PKI: unknown manufacturer, foreign registrar domain."""
    pki = build_dev_pki(pledges=2, masa_url=masa_url, now=NOW - timedelta(minutes=5), serial_prefix="OTH")
    for rel, data in pki.files.items():
        p = root / "other" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return pki


def idevid_without_serial(net: Net) -> Identity:
    """Issued by the trusted IDevID CA, but with no subject serialNumber (RFC 8995 2.3.1)."""
    cert, key = issue(
        name("pledge without serial"),
        issuer_cert=net.pki.cert("manufacturer/idevid-ca.crt"),
        issuer_key=net.pki.key("manufacturer/idevid-ca.key"),
        extra=(idevid_masa_url_extension("https://localhost:1"),),
    )
    return write_identity(net.root, "no-serial", cert, key, (net.pki.cert("manufacturer/idevid-ca.crt"),))


def domain_issued(net: Net, label: str, *, eku: tuple[x509.ObjectIdentifier, ...] = (ExtendedKeyUsageOID.CLIENT_AUTH,),
                  serial: str | None = None, not_before: datetime | None = None,
                  not_after: datetime | None = None) -> Identity:
    """A certificate from the domain CA (e.g. an RA without cmcRA, an expired LDevID)."""
    cert, key = issue(
        name(label, serial=serial, org="brski dev domain"),
        issuer_cert=net.pki.cert("registrar/domain-ca.crt"),
        issuer_key=net.pki.key("registrar/domain-ca.key"),
        eku=eku,
        not_before=not_before,
        not_after=not_after,
    )
    return write_identity(net.root, label, cert, key)


def unrelated_ca_identity(net: Net) -> Identity:
    ca_cert, ca_key = issue(name("unrelated CA", org="elsewhere"), issuer_cert=None, issuer_key=None, ca=True)
    cert, key = issue(
        name("unrelated client", serial="PLG-000001", org="elsewhere"),
        issuer_cert=ca_cert, issuer_key=ca_key, eku=(ExtendedKeyUsageOID.CLIENT_AUTH,),
    )
    return write_identity(net.root, "unrelated", cert, key, (ca_cert,))
