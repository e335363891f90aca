"""A lab on one machine: the MASA and the registrar as real processes.

``make demo``, the end-to-end tests and the benchmark all need the same
thing: a development PKI, a config file per server, both servers started as
separate processes on loopback, and a clean SIGTERM at the end. This module
does that and nothing else; it speaks to the servers only through their
command lines and ready files, the way an operator's tooling would.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

__all__ = ["Lab", "LabError", "authority", "ensure_dev_pki", "free_port"]


class LabError(RuntimeError):
    pass


def free_port() -> int:
    """A port the kernel considers free right now (tests accept the tiny race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def authority(host: str, port: int) -> str:
    """``host:port`` with an IPv6 literal bracketed."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def ensure_dev_pki(
    certs: Path,
    *,
    pledges: int,
    masa_url: str,
    force: bool = False,
    masa_hosts: tuple[str, ...] = ("localhost", "127.0.0.1"),
    registrar_hosts: tuple[str, ...] = ("localhost", "127.0.0.1"),
) -> bool:
    """Generate the development PKI into ``certs`` unless it is already there.

    Returns True when it generated one. An existing PKI whose IDevIDs name
    another MASA URL is regenerated only with ``force``.
    """
    from brski.devpki import build_dev_pki
    from brski_cli.pki_cmd import write_dev_pki

    marker = certs / "manufacturer" / "root-ca.crt"
    if marker.exists() and not force:
        return False
    pki = build_dev_pki(
        pledges=pledges,
        masa_url=masa_url,
        now=datetime.now(UTC),
        masa_hosts=masa_hosts,
        registrar_hosts=registrar_hosts,
    )
    write_dev_pki(certs, pki, force=force)
    return True


@dataclass
class _Proc:
    name: str
    popen: subprocess.Popen[bytes]
    ready_file: Path
    log_path: Path
    url: str = ""


@dataclass
class Lab:
    """Two servers sharing one development PKI under ``workdir``."""

    workdir: Path
    certs: Path
    masa_port: int = 8443
    registrar_port: int = 8444
    # Plain HTTP for the registrar's CRL and OCSP (0: a free port, picked by write_configs).
    registrar_http_port: int = 0
    host: str = "127.0.0.1"
    python: str = sys.executable
    ownership: str = "open"
    # Extra lines for the registrar's [registrar] table (admission policy; the
    # network lab's mdns_interfaces and proxy_addresses).
    registrar_extra: tuple[str, ...] = ()
    extra_env: dict[str, str] = field(default_factory=dict)
    # The names the servers are reached by (the network lab: their namespace's address).
    masa_public: str = "localhost"
    registrar_public: str = "localhost"
    # Argv prefix per process (the network lab: ``ip netns exec NS``).
    command_prefix: dict[str, list[str]] = field(default_factory=dict)
    # Keys in a PKCS#11 token (`brski pki init --pkcs11` wrote certs/pkcs11-keys.json):
    # the module, and the environment variable holding the PIN (set it in extra_env).
    pkcs11_module: str | None = None
    pkcs11_pin_env: str = "BRSKI_PKCS11_PIN"
    # Plain-HTTP /metrics, /healthz, /readyz per server (0: none).
    masa_metrics_port: int = 0
    registrar_metrics_port: int = 0
    # Store URLs (default: SQLite files in workdir) and worker processes per server.
    registrar_database: str | None = None
    masa_database: str | None = None
    workers: int = 1
    _procs: dict[str, _Proc] = field(default_factory=dict)

    @property
    def masa_url(self) -> str:
        return f"https://{authority(self.masa_public, self.masa_port)}"

    @property
    def registrar_url(self) -> str:
        return f"https://{authority(self.registrar_public, self.registrar_port)}"

    @property
    def revocation_url(self) -> str:
        """Base of the CRL (``/crl``) and OCSP (``/ocsp``) URLs in every LDevID."""
        host = self.registrar_public if self.host in ("::", "0.0.0.0") else self.host
        return f"http://{authority(host, self.registrar_http_port)}"

    def db_url(self, role: str) -> str:
        """The store URL ``role`` ("registrar" or "masa") runs on."""
        chosen = self.registrar_database if role == "registrar" else self.masa_database
        return chosen or f"sqlite:///{self.workdir.resolve()}/{role}.db"

    # --- configuration -----------------------------------------------------------

    def write_configs(self) -> tuple[Path, Path]:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.registrar_http_port:
            self.registrar_http_port = free_port()
        c = self.certs.resolve()
        index = c / "pkcs11-keys.json"
        token = json.loads(index.read_text()) if index.exists() else {}

        def key(path: str) -> str:
            return token.get(path) or f"{c}/{path}.key"

        def hsm() -> list[str]:
            if not token:
                return []
            out = [f'pkcs11_pin_env = "{self.pkcs11_pin_env}"']
            return [*out, f'pkcs11_module = "{self.pkcs11_module}"'] if self.pkcs11_module else out

        masa = self.workdir / "masa.toml"
        masa.write_text(
            "\n".join(
                [
                    "[server]",
                    f'host = "{self.host}"',
                    f"port = {self.masa_port}",
                    f'tls_cert = "{c}/masa/tls.crt"',
                    f'tls_key = "{c}/masa/tls.key"',
                    f'client_cas = ["{c}/registrar/domain-ca.crt"]',
                    *([f"metrics_port = {self.masa_metrics_port}"] if self.masa_metrics_port else []),
                    f"workers = {self.workers}",
                    "",
                    "[masa]",
                    f'database = "{self.db_url("masa")}"',
                    f'signer_cert = "{c}/masa/voucher-signer.crt"',
                    f'signer_key = "{key("masa/voucher-signer")}"',
                    *hsm(),
                    f'manufacturer_anchors = ["{c}/manufacturer/root-ca.crt"]',
                    f'ownership = "{self.ownership}"',
                    f'admin_ca = ["{c}/manufacturer/root-ca.crt"]',
                    'admin_subjects = ["CN=masa admin,O=brski dev manufacturer"]',
                    "",
                ]
            )
        )
        registrar = self.workdir / "registrar.toml"
        registrar.write_text(
            "\n".join(
                [
                    "[server]",
                    f'host = "{self.host}"',
                    f"port = {self.registrar_port}",
                    f"http_port = {self.registrar_http_port}",
                    *([f"metrics_port = {self.registrar_metrics_port}"] if self.registrar_metrics_port else []),
                    f"workers = {self.workers}",
                    f'tls_cert = "{c}/registrar/tls.crt"',
                    f'tls_key = "{c}/registrar/tls.key"',
                    "",
                    "[registrar]",
                    f'database = "{self.db_url("registrar")}"',
                    f'ca_cert = "{c}/registrar/domain-ca.crt"',
                    f'ca_key = "{key("registrar/domain-ca")}"',
                    f'ra_cert = "{c}/registrar/ra.crt"',
                    f'ra_key = "{key("registrar/ra")}"',
                    *hsm(),
                    *(
                        [f'masa_client_cert = "{c}/registrar/masa-client.crt"',
                         f'masa_client_key = "{c}/registrar/masa-client.key"']
                        if "registrar/ra" in token else []
                    ),
                    f'manufacturer_anchors = ["{c}/manufacturer/root-ca.crt"]',
                    f'masa_trust = ["{c}/manufacturer/root-ca.crt"]',
                    f'public_url = "{self.registrar_url}"',
                    f'revocation_url = "{self.revocation_url}"',
                    'admin_subjects = ["CN=admin,O=brski dev domain"]',
                    *self.registrar_extra,
                    "",
                ]
            )
        )
        return masa, registrar

    def _run_cli(self, *args: str, timeout: float = 120) -> str:
        proc = subprocess.run(
            [self.python, "-m", "brski_cli", *args],
            capture_output=True,
            text=True,
            env={**os.environ, **self.extra_env},
            timeout=timeout,
        )
        if proc.returncode != 0:
            raise LabError(f"brski {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc.stdout

    def pledge_dirs(self) -> list[Path]:
        """The dev PKI's pledge directories, in serial order."""
        return sorted(p for p in (self.certs / "pledges").iterdir() if p.is_dir())

    def enroll(self, pledge_dir: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
        """``brski pledge enroll --json`` for one pledge, as its own process."""
        return subprocess.run(
            [
                self.python, "-m", "brski_cli", "pledge", "enroll",
                "--dir", str(pledge_dir),
                "--registrar", self.registrar_url,
                "--anchor", str(self.certs / "manufacturer" / "root-ca.crt"),
                "--out", str(out),
                "--json",
                *extra,
            ],
            capture_output=True,
            text=True,
            env={**os.environ, **self.extra_env},
            timeout=120,
        )

    def fleet_idevids(self, count: int) -> Path:
        """Issue ``count`` IDevIDs from the dev manufacturer CA and have the MASA
        record them, each step by the role that owns it: ``brski pledge
        fleet-idevids`` writes pledge dirs and a PEM bundle, ``brski masa devices
        import`` (the MASA's CLI on its own store) reads the bundle. Returns the
        directory the fleet reads (``--idevid-dir``)."""
        out = Path(tempfile.mkdtemp(prefix="fleet-idevids-", dir=self.workdir))
        timeout = 120 + count / 100  # issuing and importing scale with the count
        self._run_cli(
            "pledge", "fleet-idevids",
            "--count", str(count),
            "--manufacturer-ca", str(self.certs / "manufacturer/idevid-ca.crt"),
            "--manufacturer-key", str(self.certs / "manufacturer/idevid-ca.key"),
            "--masa-url", self.masa_url,
            "--out", str(out),
            timeout=timeout,
        )
        self._run_cli(
            "masa", "devices", "import", "--config", str(self.workdir / "masa.toml"), str(out / "idevids.pem"),
            timeout=timeout,
        )
        return out

    def fleet_command(self, *, count: int, concurrency: int, processes: int, json_path: Path, extra: tuple[str, ...] = ()) -> list[str]:
        """``brski pledge fleet`` against this lab, on ``count`` fresh IDevIDs that
        :meth:`fleet_idevids` issued and the MASA recorded before this returns, so
        the fleet's clock covers enrolments only (the benchmark and the e2e test
        run the fleet this one way)."""
        return [
            self.python, "-m", "brski_cli", "pledge", "fleet",
            "--registrar", self.registrar_url,
            "--count", str(count),
            "--concurrency", str(concurrency),
            "--processes", str(processes),
            "--idevid-dir", str(self.fleet_idevids(count)),
            "--anchor", str(self.certs / "manufacturer/root-ca.crt"),
            "--json", str(json_path),
            *extra,
        ]

    def import_devices(self) -> str:
        """Tell the MASA which devices its factory made (the dev PKI's pledges)."""
        return self._run_cli("masa", "devices", "import", "--config", str(self.workdir / "masa.toml"), str(self.certs / "pledges"))

    # --- processes ---------------------------------------------------------------

    def up(self) -> None:
        """Configs written, the MASA told its devices, both servers listening."""
        self.write_configs()
        self.import_devices()
        self.start("masa")
        self.start("registrar")

    def start(self, name: str, *, timeout: float = 30.0, detach: bool = False) -> str:
        """Start ``masa``, ``registrar`` or ``join_proxy`` (``python -m NAME serve
        --config WORKDIR/NAME.toml``) and wait until it listens. ``detach``: in a
        session of its own, so that it outlives this process (``brski lab up``)."""
        if name in self._procs and self._procs[name].popen.poll() is None:
            raise LabError(f"{name} is already running")
        ready = self.workdir / f"{name}.ready"
        ready.unlink(missing_ok=True)
        log_path = self.workdir / f"{name}.log"
        log = log_path.open("ab")
        popen = subprocess.Popen(
            [
                *self.command_prefix.get(name, []),
                self.python, "-m", name, "serve",
                "--config", str(self.workdir / f"{name}.toml"),
                "--ready-file", str(ready),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.extra_env},
            start_new_session=detach,
        )
        log.close()
        proc = _Proc(name=name, popen=popen, ready_file=ready, log_path=log_path)
        self._procs[name] = proc
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if popen.poll() is not None:
                raise LabError(f"{name} exited with {popen.returncode} before listening:\n{self.log_tail(name)}")
            if ready.exists():
                try:
                    proc.url = json.loads(ready.read_text())["url"]
                    return proc.url
                except (ValueError, KeyError):
                    pass
            time.sleep(0.05)
        self.stop(name)
        raise LabError(f"{name} did not listen within {timeout:.0f} s:\n{self.log_tail(name)}")

    def running(self, name: str) -> bool:
        """Whether ``name`` was started and still runs."""
        proc = self._procs.get(name)
        return proc is not None and proc.popen.poll() is None

    def pid(self, name: str) -> int:
        return self._procs[name].popen.pid

    def stop(self, name: str, *, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        """Stop a server; returns its exit code (None if it was not running)."""
        proc = self._procs.get(name)
        if proc is None or proc.popen.poll() is not None:
            return proc.popen.returncode if proc else None
        proc.popen.send_signal(sig)
        try:
            return proc.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.popen.kill()
            return proc.popen.wait()

    def stop_all(self) -> dict[str, int | None]:
        return {name: self.stop(name) for name in list(self._procs)}

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.workdir / f"{name}.log"
        if not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()
