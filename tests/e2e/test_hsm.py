"""End to end with every signing key in a PKCS#11 token (SoftHSM2).

`brski pki init --pkcs11` generates the domain CA, registrar RA and MASA
voucher-signer keys in a token and writes no key file for them; the MASA and
the registrar run from `pkcs11:` URIs with the PIN in the environment. Pledges
onboard in every voucher format, so the token signs CMS, COSE and JWS
vouchers and voucher-requests, LDevIDs, the CRL and OCSP responses; each of
those is verified here against the certificates alone. Then the token is asked
for the keys through python-pkcs11 and refuses; OpenSC's pkcs11-tool reads
the same flags (sensitive, never extractable).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pkcs11
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp

from brski import oids
from brski.artifact import verify_artifact
from brski.voucher import Voucher, VoucherRequest
from brski_cli.lab import Lab, free_port
from brski_hsm import KeyUnavailable, Pkcs11Settings, close_tokens, load_token_key
from tests.conftest import ENGINES
from tests.e2e.labtools import engine_databases, rows
from tests.store_helpers import as_bytes

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
PIN = "4321-e2e"
TOKEN = "brski-e2e"
FORMATS = {"cms": oids.MT_VOUCHER_CMS_JSON, "cose": oids.MT_VOUCHER_COSE_CBOR, "jws": oids.MT_VOUCHER_JWS_JSON}

pytestmark = pytest.mark.skipif(
    not Path(MODULE).exists() or shutil.which("softhsm2-util") is None,
    reason="SoftHSM2 is not installed (tools/sysdeps/hsm.txt)",
)


@pytest.fixture(scope="module")
def token_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Fresh SoftHSM2 tokens in a temporary directory (SOFTHSM2_CONF): one per
    store engine, each engine's lab generating its own keys in its token. All
    are made up front: this process loads the module once, and SoftHSM2 reads
    its token directory when it does."""
    root = tmp_path_factory.mktemp("softhsm")
    (root / "tokens").mkdir()
    conf = root / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {root / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n")
    env = {"SOFTHSM2_CONF": str(conf), "BRSKI_PKCS11_PIN": PIN}
    for engine in ENGINES:
        subprocess.run(
            ["softhsm2-util", "--init-token", "--free", "--label", f"{TOKEN}-{engine}", "--pin", PIN,
             "--so-pin", "5678-e2e"],
            check=True, capture_output=True, env={**os.environ, **env},
        )
    return env


@pytest.fixture(scope="module")
def token(engine: str) -> str:
    """The label of this engine's token."""
    return f"{TOKEN}-{engine}"


@pytest.fixture(scope="module")
def hsm_lab(
    tmp_path_factory: pytest.TempPathFactory, token_env: dict[str, str], token: str, engine: str,
    request: pytest.FixtureRequest,
) -> Iterator[Lab]:
    root = tmp_path_factory.mktemp("hsmlab")
    masa_port, registrar_port = free_port(), free_port()
    certs = root / "certs"
    init = subprocess.run(
        [
            sys.executable, "-m", "brski_cli", "pki", "init", "--out", str(certs), "--pledges", "3",
            "--masa-url", f"https://localhost:{masa_port}",
            "--pkcs11", f"pkcs11:token={token}", "--pkcs11-module", MODULE,
        ],
        capture_output=True, text=True, env={**os.environ, **token_env}, timeout=120,
    )
    assert init.returncode == 0, init.stdout + init.stderr
    lab = Lab(
        workdir=root / "run", certs=certs, masa_port=masa_port, registrar_port=registrar_port,
        extra_env=token_env, pkcs11_module=MODULE, **engine_databases(engine, request),
    )
    lab.up()
    yield lab
    lab.stop_all()


def test_pki_init_leaves_no_key_file_for_the_token_keys(hsm_lab: Lab, token: str) -> None:
    index = json.loads((hsm_lab.certs / "pkcs11-keys.json").read_text())
    assert set(index) == {"registrar/domain-ca", "registrar/ra", "masa/voucher-signer"}
    for path, uri in index.items():
        assert uri.startswith(f"pkcs11:token={token};object=")
        assert not (hsm_lab.certs / f"{path}.key").exists()
        assert (hsm_lab.certs / f"{path}.crt").exists()
    for name in ("masa.toml", "registrar.toml"):
        text = (hsm_lab.workdir / name).read_text()
        assert "pkcs11:" in text and PIN not in text  # the PIN is never in a config


def test_pki_init_refuses_a_token_that_already_holds_the_keys(
    hsm_lab: Lab, token_env: dict[str, str], token: str, tmp_path: Path
) -> None:
    """A second init must not add keys beside the ones the running PKI uses."""
    out = tmp_path / "again"
    proc = subprocess.run(
        [sys.executable, "-m", "brski_cli", "pki", "init", "--out", str(out),
         "--pkcs11", f"pkcs11:token={token}", "--pkcs11-module", MODULE],
        capture_output=True, text=True, env={**os.environ, **token_env}, timeout=120,
    )
    assert proc.returncode == 1 and "pkcs11.key-exists" in proc.stderr, proc.stderr
    assert not out.exists()


def test_pledges_onboard_in_every_format_with_every_signature_from_the_token(hsm_lab: Lab, tmp_path: Path) -> None:
    domain_ca = x509.load_pem_x509_certificate((hsm_lab.certs / "registrar/domain-ca.crt").read_bytes())
    ra = x509.load_pem_x509_certificate((hsm_lab.certs / "registrar/ra.crt").read_bytes())
    signer = x509.load_pem_x509_certificate((hsm_lab.certs / "masa/voucher-signer.crt").read_bytes())
    ldevids = []
    for (fmt, media), pledge_dir in zip(sorted(FORMATS.items()), hsm_lab.pledge_dirs(), strict=True):
        out = tmp_path / fmt
        proc = hsm_lab.enroll(pledge_dir, out, "--format", fmt)
        assert proc.returncode == 0, f"{fmt}: {proc.stdout}{proc.stderr}\n{hsm_lab.log_tail('registrar')}"
        serial = json.loads(proc.stdout)["serial"]
        # LDevID: signed by the domain CA key, which exists only in the token.
        ldevid = x509.load_pem_x509_certificate((out / "ldevid.crt").read_bytes())
        ldevid.verify_directly_issued_by(domain_ca)
        ldevids.append(ldevid)
        # Voucher (MASA's token key) and registrar voucher-request (RA token key).
        ((blob,),) = rows(hsm_lab.db_url("registrar"), "SELECT voucher FROM vouchers WHERE serial = ?", (serial,))
        art = verify_artifact(as_bytes(blob), media_type=media, kind=Voucher)
        assert art.signer.public_key() == signer.public_key()
        ((rvr,),) = rows(
            hsm_lab.db_url("registrar"), "SELECT registrar_request FROM voucher_requests WHERE serial = ?", (serial,)
        )
        req = verify_artifact(as_bytes(rvr), media_type=media, kind=VoucherRequest)
        assert req.signer.public_key() == ra.public_key()

    # CRL and OCSP: signed by the domain CA key in the token.
    with urllib.request.urlopen(f"{hsm_lab.revocation_url}/crl", timeout=30) as resp:
        crl = x509.load_der_x509_crl(resp.read())
    key = domain_ca.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    assert crl.is_signature_valid(key)
    request = ocsp.OCSPRequestBuilder().add_certificate(ldevids[0], domain_ca, hashes.SHA256()).build()
    http = urllib.request.Request(
        f"{hsm_lab.revocation_url}/ocsp", data=request.public_bytes(serialization.Encoding.DER),
        headers={"Content-Type": "application/ocsp-request"}, method="POST",
    )
    with urllib.request.urlopen(http, timeout=30) as resp:
        answer = ocsp.load_der_ocsp_response(resp.read())
    assert answer.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
    assert answer.certificate_status == ocsp.OCSPCertStatus.GOOD
    algorithm = answer.signature_hash_algorithm
    assert algorithm is not None
    key.verify(answer.signature, answer.tbs_response_bytes, ec.ECDSA(algorithm))


def test_the_token_keys_cannot_be_extracted(
    hsm_lab: Lab, token_env: dict[str, str], token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in token_env.items():
        monkeypatch.setenv(name, value)
    index = json.loads((hsm_lab.certs / "pkcs11-keys.json").read_text())
    settings = Pkcs11Settings(module=MODULE, pin_env="BRSKI_PKCS11_PIN")
    try:
        for path, uri in index.items():
            key = load_token_key(uri, settings)
            # PKCS#11 v2.40 section 4.9: generated sensitive and never extractable.
            assert key.attributes() == {
                "sensitive": True, "extractable": False, "always_sensitive": True, "never_extractable": True,
            }, path
            with pytest.raises(pkcs11.exceptions.AttributeSensitive):
                key.try_export()
            with pytest.raises(KeyUnavailable):
                key.private_bytes(
                    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                )
            cert = x509.load_pem_x509_certificate((hsm_lab.certs / f"{path}.crt").read_bytes())
            assert key.public_key() == cert.public_key()
    finally:
        close_tokens()
    # A client we did not write reads the token's flags on each key.
    tool = shutil.which("pkcs11-tool")
    if tool is None:
        pytest.skip("pkcs11-tool (opensc) not installed")
    listed = subprocess.run(
        [tool, "--module", MODULE, "--token-label", token, "--login", "--pin", PIN, "--list-objects", "--type", "privkey"],
        capture_output=True, text=True, env={**os.environ, **token_env}, timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    access: dict[str, str] = {}
    label = ""
    for line in listed.stdout.splitlines():
        field, _, value = line.strip().partition(":")
        if field == "label":
            label = value.strip()
        elif field == "Access":
            access[label] = value.strip()
    assert set(access) == {"brski-domain-ca", "brski-registrar-ra", "brski-masa-voucher-signer"}, listed.stdout
    for label, flags in access.items():
        words = {w.strip() for w in flags.split(",")}
        assert {"sensitive", "always sensitive", "never extractable"} <= words, (label, flags)
        assert "extractable" not in words, (label, flags)


def test_a_concurrent_fleet_onboards_through_the_token(hsm_lab: Lab, tmp_path: Path) -> None:
    """Concurrent onboardings share each role's one token session (signatures
    serialised by its lock): every pledge enrols, every LDevID verifies."""
    count = 12
    summary_path = tmp_path / "fleet.json"
    proc = subprocess.run(
        hsm_lab.fleet_command(count=count, concurrency=6, processes=1, json_path=summary_path, extra=("--no-progress",)),
        capture_output=True, text=True, timeout=300, env={**os.environ, **hsm_lab.extra_env},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr + hsm_lab.log_tail("registrar")
    summary = json.loads(summary_path.read_text())
    assert summary["successes"] == count and summary["failures"] == 0, summary
    domain_ca = x509.load_pem_x509_certificate((hsm_lab.certs / "registrar/domain-ca.crt").read_bytes())
    issued = rows(
        hsm_lab.db_url("registrar"),
        "SELECT c.der FROM certificates c WHERE c.state = 'issued' AND c.device_serial NOT LIKE 'PLG-%'",
    )
    assert len(issued) == count
    for (der,) in issued:
        x509.load_der_x509_certificate(as_bytes(der)).verify_directly_issued_by(domain_ca)


@pytest.mark.parametrize(
    ("change", "env", "message"),
    [
        ({}, {"BRSKI_PKCS11_PIN": "wrong-pin"}, "the token refused the PIN"),
        ({}, {"BRSKI_PKCS11_PIN": ""}, "BRSKI_PKCS11_PIN (the PKCS#11 PIN) is not set"),
        ({"signer_key": "pkcs11:token={token};object=no-such-key"}, {}, "no EC key pair with that label/id"),
        ({"signer_key": "pkcs11:token={token};object=brski-domain-ca"}, {}, "is not the one certified"),
        ({"signer_key": "pkcs11:token={token};object=x?pin-value=1234"}, {}, "a PIN in the pkcs11 URI"),
    ],
    ids=["wrong-pin", "no-pin", "unknown-label", "key-of-another-cert", "pin-in-config"],
)
def test_a_misconfigured_token_key_stops_the_server_at_start(
    hsm_lab: Lab, token: str, tmp_path: Path, change: dict[str, str], env: dict[str, str], message: str
) -> None:
    """Exit code 2 and a line naming the problem, before any port is opened."""
    config = (hsm_lab.workdir / "masa.toml").read_text()
    for key, template in change.items():
        value = template.format(token=token)
        config = "\n".join(f'{key} = "{value}"' if line.startswith(f"{key} =") else line for line in config.splitlines())
    bad = tmp_path / "masa.toml"
    bad.write_text(config)
    proc = subprocess.run(
        [sys.executable, "-m", "masa", "serve", "--config", str(bad), "--port", "0"],
        capture_output=True, text=True, timeout=60, env={**os.environ, **hsm_lab.extra_env, **env},
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr, proc.stderr
    assert PIN not in proc.stderr
