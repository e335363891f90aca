"""Run commands and daemons inside named network namespaces."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Daemon", "NetnsError", "ctrl_dir", "have_netns", "in_ns", "run"]

# sockaddr_un.sun_path is 108 bytes with its NUL (unix(7)); the control socket
# is DIR/IFNAME, an interface name up to 15 characters.
_SUN_PATH_MAX = 107 - 1 - 15


class NetnsError(RuntimeError):
    pass


def in_ns(ns: str | None, argv: Sequence[str]) -> list[str]:
    """``argv`` run inside namespace ``ns`` (None: the current one)."""
    return ["ip", "netns", "exec", ns, *argv] if ns else list(argv)


def run(ns: str | None, *argv: str, check: bool = True, timeout: float = 30.0, input: str | None = None) -> str:
    proc = subprocess.run(in_ns(ns, argv), capture_output=True, text=True, timeout=timeout, input=input)
    if check and proc.returncode != 0:
        raise NetnsError(f"{' '.join(argv)} in {ns or 'host'} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def ctrl_dir(workdir: Path) -> Path:
    """Where hostapd or wpa_supplicant working in ``workdir`` put their control
    sockets: ``workdir/ctrl``, or, when that path is too long for a Unix socket,
    a directory of its own under the temporary directory, named for ``workdir``."""
    preferred = workdir / "ctrl"
    if len(os.fsencode(preferred)) <= _SUN_PATH_MAX:
        return preferred
    tag = hashlib.sha256(os.fsencode(workdir.resolve())).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"brski-ctrl-{tag}"


def have_netns() -> str | None:
    """None when namespaces and the programs work here, else why not."""
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    for prog in ("ip", "nft", "hostapd", "hostapd_cli", "wpa_supplicant", "wpa_cli", "freeradius"):
        if shutil.which(prog) is None and not Path(f"/usr/sbin/{prog}").exists():
            return f"{prog} is not installed (tools/sysdeps/network-access.txt)"
    return None


@dataclass
class Daemon:
    """A foreground process in a namespace, its output in ``log``."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @classmethod
    def start(cls, name: str, ns: str | None, argv: Sequence[str], log: Path) -> Daemon:
        out = log.open("ab")
        try:
            popen = subprocess.Popen(in_ns(ns, argv), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            out.close()
        return cls(name=name, popen=popen, log=log)

    def wait_for(self, text: str, timeout: float = 20.0) -> None:
        """Until ``text`` appears in the log (or the process died)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log.read_text(errors="replace"):
                return
            if self.popen.poll() is not None:
                break
            time.sleep(0.05)
        raise NetnsError(f"{self.name}: no {text!r} (exit {self.popen.poll()}):\n{self.tail()}")

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        if self.popen.poll() is not None:
            return
        # Its own session: `ip netns exec` execs the program, so the pid is the daemon's.
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
