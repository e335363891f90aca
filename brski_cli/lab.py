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
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

__all__ = ["Lab", "LabError", "ensure_dev_pki", "free_port"]


class LabError(RuntimeError):
    pass


def free_port() -> int:
    """A port the kernel considers free right now (tests accept the tiny race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_dev_pki(certs: Path, *, pledges: int, masa_url: str, force: bool = False) -> bool:
    """Generate the development PKI into ``certs`` unless it is already there.

    Returns True when it generated one. An existing PKI whose IDevIDs name
    another MASA URL is regenerated only with ``force``.
    """
    from brski.devpki import build_dev_pki
    from brski_cli.pki_cmd import write_dev_pki

    marker = certs / "manufacturer" / "root-ca.crt"
    if marker.exists() and not force:
        return False
    pki = build_dev_pki(pledges=pledges, masa_url=masa_url, now=datetime.now(UTC))
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
    extra_env: dict[str, str] = field(default_factory=dict)
    # Store URLs (default: SQLite files in workdir) and worker processes per server.
    registrar_database: str | None = None
    masa_database: str | None = None
    workers: int = 1
    _procs: dict[str, _Proc] = field(default_factory=dict)

    @property
    def masa_url(self) -> str:
        return f"https://localhost:{self.masa_port}"

    @property
    def registrar_url(self) -> str:
        return f"https://localhost:{self.registrar_port}"

    @property
    def revocation_url(self) -> str:
        """Base of the CRL (``/crl``) and OCSP (``/ocsp``) URLs in every LDevID."""
        return f"http://{self.host}:{self.registrar_http_port}"

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
                    f"workers = {self.workers}",
                    "",
                    "[masa]",
                    f'database = "{self.db_url("masa")}"',
                    f'signer_cert = "{c}/masa/voucher-signer.crt"',
                    f'signer_key = "{c}/masa/voucher-signer.key"',
                    f'manufacturer_anchors = ["{c}/manufacturer/root-ca.crt"]',
                    f'ownership = "{self.ownership}"',
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
                    f"workers = {self.workers}",
                    f'tls_cert = "{c}/registrar/tls.crt"',
                    f'tls_key = "{c}/registrar/tls.key"',
                    "",
                    "[registrar]",
                    f'database = "{self.db_url("registrar")}"',
                    f'ca_cert = "{c}/registrar/domain-ca.crt"',
                    f'ca_key = "{c}/registrar/domain-ca.key"',
                    f'ra_cert = "{c}/registrar/ra.crt"',
                    f'ra_key = "{c}/registrar/ra.key"',
                    f'manufacturer_anchors = ["{c}/manufacturer/root-ca.crt"]',
                    f'masa_trust = ["{c}/manufacturer/root-ca.crt"]',
                    f'public_url = "https://localhost:{self.registrar_port}"',
                    f'revocation_url = "{self.revocation_url}"',
                    'admin_subjects = ["CN=admin,O=brski dev domain"]',
                    "",
                ]
            )
        )
        return masa, registrar

    def _run_cli(self, *args: str) -> str:
        proc = subprocess.run(
            [self.python, "-m", "brski_cli", *args],
            capture_output=True,
            text=True,
            env={**os.environ, **self.extra_env},
            timeout=120,
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

    def fleet_command(self, *, count: int, concurrency: int, processes: int, json_path: Path, extra: tuple[str, ...] = ()) -> list[str]:
        """``brski pledge fleet`` against this lab: IDevIDs generated from the dev
        manufacturer CA and imported into the MASA's store before the clock starts
        (the benchmark and the e2e test run the fleet this one way)."""
        return [
            self.python, "-m", "brski_cli", "pledge", "fleet",
            "--registrar", self.registrar_url,
            "--count", str(count),
            "--concurrency", str(concurrency),
            "--processes", str(processes),
            "--manufacturer-ca", str(self.certs / "manufacturer/idevid-ca.crt"),
            "--manufacturer-key", str(self.certs / "manufacturer/idevid-ca.key"),
            "--masa-url", self.masa_url,
            "--masa-db", self.db_url("masa"),
            "--anchor", str(self.certs / "manufacturer/root-ca.crt"),
            "--json", str(json_path),
            *extra,
        ]

    def import_devices(self) -> str:
        """Tell the MASA which devices its factory made (the dev PKI's pledges)."""
        return self._run_cli("masa", "devices", "import", "--config", str(self.workdir / "masa.toml"), str(self.certs / "pledges"))

    # --- processes ---------------------------------------------------------------

    def start(self, name: str, *, timeout: float = 30.0) -> str:
        """Start ``masa`` or ``registrar`` and wait until it listens."""
        if name in self._procs and self._procs[name].popen.poll() is None:
            raise LabError(f"{name} is already running")
        ready = self.workdir / f"{name}.ready"
        ready.unlink(missing_ok=True)
        log_path = self.workdir / f"{name}.log"
        log = log_path.open("ab")
        popen = subprocess.Popen(
            [
                self.python, "-m", name, "serve",
                "--config", str(self.workdir / f"{name}.toml"),
                "--ready-file", str(ready),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **self.extra_env},
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
