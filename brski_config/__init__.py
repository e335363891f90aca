"""Reading TOML config files and the files they name, for every role.

The schema of each role's file, its precedence (defaults < file < flags) and
path resolution are in :mod:`brski.settings`, which being part of the sans-IO
core reads no file; this package reads the file, resolves a relative SQLite
URL against it and loads the trust certificates it names.  It is its own
package, beside the core rather than in the servers' ``brski_web``, because
the pledge simulator and the join proxy read config files too and import no
server plumbing.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from cryptography import x509

from brski.errors import BrskiError, ConfigError
from brski.pki import load_certs

__all__ = ["read_certs", "read_toml", "resolve_sqlite_url"]


def read_toml(path: Path | None) -> tuple[dict[str, Any], str, Path]:
    """The parsed tables of ``path`` (none without a file), its name for error
    messages, and the directory relative paths in it are resolved against."""
    if path is None:
        return {}, "flags", Path.cwd()
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}", check="config.file") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {path} is not valid TOML: {exc}", check="config.syntax") from exc
    return data, str(path), path.parent.resolve()


def resolve_sqlite_url(url: str, base: Path) -> str:
    """A relative SQLite path in a config file is relative to the file."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/"):
        return prefix + str(base / url[len(prefix) :])
    return url


def read_certs(paths: list[Path]) -> list[x509.Certificate]:
    """Every certificate in the given PEM files, for trust settings read at start-up."""
    out: list[x509.Certificate] = []
    for path in paths:
        try:
            out.extend(load_certs(path.read_bytes()))
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror}", check="config.file") from exc
        except BrskiError as exc:
            raise ConfigError(f"{path}: {exc.detail}", check="config.certificate") from exc
    return out
