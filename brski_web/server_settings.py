"""Settings every server role declares alike (``brski.settings`` fields).

Each function returns the field declaration for one key, in the section the
role keeps it in, so the MASA's and the registrar's schemas say the same
thing about the same key.
"""

from __future__ import annotations

from typing import Any

from brski.settings import setting

__all__ = [
    "LOG_LEVELS", "admin_fingerprints", "log_level", "metrics_host", "metrics_port", "pkcs11_module",
    "pkcs11_pin_env", "pkcs11_pin_file", "ready_file",
]

LOG_LEVELS = ("debug", "info", "warning", "error")


def ready_file(section: str) -> Any:
    return setting(None, section=section, path=True, help="write {url, port, pid} here once listening")


def log_level(section: str) -> Any:
    return setting("info", section=section, choices=LOG_LEVELS,
                   help="log threshold (one key=value line per request and decision, on stderr)")


def metrics_port(section: str, *, example: int) -> Any:
    return setting(None, section=section, min=0, max=65535, example=example,
                   help="plain-HTTP port serving /metrics, /healthz, /readyz (none: off)")


def metrics_host(section: str) -> Any:
    return setting(None, section=section, help="address for the metrics port (default: host)")


def admin_fingerprints(section: str) -> Any:
    return setting([], section=section, help="admin certificates by SHA-256 fingerprint (hex)")


def pkcs11_module(section: str) -> Any:
    return setting(None, section=section, help="PKCS#11 module for pkcs11: keys, e.g. /usr/lib/softhsm/libsofthsm2.so")


def pkcs11_pin_file(section: str) -> Any:
    return setting(None, section=section, path=True, help="file holding the token PIN")


def pkcs11_pin_env(section: str) -> Any:
    return setting(None, section=section, help="environment variable holding the token PIN")
