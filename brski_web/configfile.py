"""TOML config files with command-line overrides, the way operators expect.

Precedence: built-in defaults < the config file < flags. Relative paths in a
file are resolved against the file's directory (so a config can travel with
its certificates); relative paths given as flags against the working
directory. Unknown keys are an error: a typo must not silently fall back to a
default in a security component.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography import x509

from brski.errors import BrskiError, ConfigError
from brski.pki import load_certs
from brski.settings import check_keys

__all__ = ["load_sections", "merge", "read_certs", "read_toml", "resolve_sqlite_url"]


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


def load_sections(path: Path | None, allowed: Mapping[str, set[str]]) -> tuple[dict[str, dict[str, Any]], Path]:
    """Read ``path`` (may be None) into ``{section: {key: value}}``, checking keys.

    Returns the sections and the base directory for relative paths.
    """
    data, source, base = read_toml(path)
    check_keys(allowed, data, source=source)
    out: dict[str, dict[str, Any]] = {name: {} for name in allowed}
    out.update({section: dict(body) for section, body in data.items()})
    return out, base


def merge(
    file_values: Mapping[str, Any],
    overrides: Mapping[str, Any],
    *,
    base: Path,
    path_keys: set[str],
    defaults: Mapping[str, Any],
) -> dict[str, Any]:
    """Defaults < file < overrides; ``path_keys`` become absolute Paths."""
    merged: dict[str, Any] = dict(defaults)
    for key, value in file_values.items():
        if key in path_keys and value is not None:
            value = [base / v for v in value] if isinstance(value, list) else base / value
        merged[key] = value
    for key, value in overrides.items():
        if value is None:
            continue
        if key in path_keys:
            value = [Path(v).resolve() for v in value] if isinstance(value, list) else Path(value).resolve()
        merged[key] = value
    return merged


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
