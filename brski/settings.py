"""Configuration schemas declared once: a role's config dataclass *is* its schema.

Each field of a role's frozen config dataclass is declared with :func:`setting`:
its TOML section, default (or :data:`REQUIRED`), help text, whether it is a
path, and its allowed values or range. From that one declaration come

* the keys each section accepts (an unknown key is an error naming the file),
* the defaults and the required settings,
* type checks at load time, naming the key, the file and what was expected
  (``ldevid_validity_days = "365"`` is a configuration error, exit 2, not a
  ``TypeError`` traceback),
* path resolution (relative to the config file; flags relative to the
  working directory),
* the documented example file (:func:`example_toml`), which a test loads.

Cross-field rules stay in the dataclass's ``__post_init__``. Pure: the caller
reads the TOML file and passes its parsed tables.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from brski.errors import ConfigError

__all__ = ["REQUIRED", "Setting", "check_keys", "check_tables", "example_toml", "load_settings", "sections_of", "setting"]

T = TypeVar("T")


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()
_META = "brski.setting"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Setting:
    """What :func:`setting` records about one field."""

    section: str
    help: str
    path: bool = False
    choices: tuple[Any, ...] | None = None
    min: float | None = None
    max: float | None = None
    example: Any = None  # shown in the example file instead of the default
    raw: bool = False  # a table or array of tables the role parses itself
    uri_schemes: tuple[str, ...] = ()  # a path setting that also takes such a URI, kept as text
    key: str | None = None  # the TOML key, where it differs from the field's name


def setting(
    default: Any = REQUIRED,
    *,
    section: str,
    help: str,
    path: bool = False,
    choices: tuple[Any, ...] | None = None,
    min: float | None = None,
    max: float | None = None,
    example: Any = None,
    raw: bool = False,
    uri_schemes: tuple[str, ...] = (),
    key: str | None = None,
) -> Any:
    """Declare a config field (use as the dataclass field's default)."""
    meta = Setting(
        section=section, help=help, path=path, choices=choices, min=min, max=max, example=example, raw=raw,
        uri_schemes=uri_schemes, key=key,
    )
    metadata = {_META: meta}
    if default is REQUIRED:
        return dataclasses.field(default=REQUIRED, metadata=metadata)
    if isinstance(default, list | dict | tuple):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _key(f: dataclasses.Field[Any], meta: Setting) -> str:
    return meta.key or f.name


def _settings(cls: type) -> list[tuple[dataclasses.Field[Any], Setting, Any]]:
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        meta = f.metadata.get(_META)
        if isinstance(meta, Setting):
            out.append((f, meta, hints[f.name]))
    return out


def sections_of(cls: type) -> dict[str, set[str]]:
    """The keys each TOML section accepts."""
    out: dict[str, set[str]] = {}
    for f, meta, _ in _settings(cls):
        out.setdefault(meta.section, set()).add(_key(f, meta))
    return out


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if origin in (list, tuple):
        return f"a list of {_PLURALS.get(typing.get_args(tp)[0], 'values')}"
    return {
        str: "a string", int: "an integer", float: "a number", bool: "true or false",
        Path: "a path", type(None): "absent",
    }.get(tp, getattr(tp, "__name__", str(tp)))


_PLURALS = {str: "strings", int: "integers", float: "numbers", bool: "booleans", Path: "paths"}


def _coerce(value: Any, tp: Any, *, path: bool, base: Path) -> Any:
    """``value`` as ``tp``, or raise TypeError (the caller names the key)."""
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        for arg in typing.get_args(tp):
            if arg is type(None):
                if value is None:
                    return None
                continue
            try:
                return _coerce(value, arg, path=path, base=base)
            except TypeError:
                continue
        raise TypeError
    if origin is list:
        if not isinstance(value, list):
            raise TypeError
        (item,) = typing.get_args(tp)
        return [_coerce(v, item, path=path, base=base) for v in value]
    if origin is tuple:  # tuple[X, ...]: a TOML array (or the flags' list), kept immutable
        if not isinstance(value, list | tuple):
            raise TypeError
        item = typing.get_args(tp)[0]
        return tuple(_coerce(v, item, path=path, base=base) for v in value)
    if tp is Any:
        return value
    if tp is Path:
        if not isinstance(value, str | Path) or not str(value):
            raise TypeError
        return base / Path(value).expanduser() if path else Path(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise TypeError
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise TypeError
        return value
    if isinstance(value, tp):
        return value
    raise TypeError


def check_tables(cls: type, tables: Mapping[str, Any], *, source: str) -> None:
    """Refuse sections and keys the schema does not declare (a typo must not
    silently fall back to a default in a security component)."""
    check_keys(sections_of(cls), tables, source=source)


def check_keys(allowed: Mapping[str, set[str]], tables: Mapping[str, Any], *, source: str) -> None:
    """Refuse sections and keys outside ``allowed`` (``{section: keys}``)."""
    for section, body in tables.items():
        if section not in allowed:
            raise ConfigError(
                f"{source}: unknown section [{section}] (known: {', '.join(sorted(allowed))})",
                check="config.unknown-section",
            )
        if not isinstance(body, Mapping):
            raise ConfigError(f"{source}: [{section}] must be a table", check="config.syntax")
        unknown = set(body) - allowed[section]
        if unknown:
            raise ConfigError(
                f"{source}: unknown key(s) in [{section}]: {', '.join(sorted(unknown))}",
                check="config.unknown-key",
            )


def load_settings(
    cls: type[T],
    tables: Mapping[str, Mapping[str, Any]],
    overrides: Mapping[str, Any],
    *,
    source: str,
    base: Path,
) -> T:
    """Build ``cls`` from parsed TOML ``tables`` and flag ``overrides`` (by TOML key; None = unset).

    Defaults < file < flags. ``source`` names the file in every error; ``base``
    is its directory (relative paths in it resolve there; those given as flags
    resolve against the working directory).
    """
    check_tables(cls, tables, source=source)
    values: dict[str, Any] = {}
    missing: list[str] = []
    for f, meta, tp in _settings(cls):
        key = _key(f, meta)
        if overrides.get(key) is not None:
            raw, rel = overrides[key], Path.cwd()
            where = f"--{key.replace('_', '-')}"
        elif key in tables.get(meta.section, {}):
            raw, rel = tables[meta.section][key], base
            where = f"{source}: [{meta.section}] {key}"
        else:
            if f.default is REQUIRED:
                missing.append(f"[{meta.section}] {key}")
            continue
        if meta.raw:
            values[f.name] = raw
            continue
        if isinstance(raw, str) and any(raw.startswith(f"{scheme}:") for scheme in meta.uri_schemes):
            values[f.name] = raw  # e.g. an RFC 7512 pkcs11: URI where a key file may stand
            continue
        try:
            value = _coerce(raw, tp, path=meta.path, base=rel)
        except TypeError:
            raise ConfigError(f"{where} = {raw!r:.60}: expected {_describe(tp)}", check="config.type") from None
        _check_bounds(where, value, meta)
        values[f.name] = value
    if missing:
        raise ConfigError(f"{source}: missing required setting(s): {', '.join(missing)}", check="config.missing")
    return cls(**values)


def _check_bounds(where: str, value: Any, meta: Setting) -> None:
    items = value if isinstance(value, list | tuple) else [value]
    for item in items:
        if item is None:
            continue
        if meta.choices is not None and item not in meta.choices:
            raise ConfigError(
                f"{where} = {item!r:.60}: must be one of {', '.join(map(repr, meta.choices))}",
                check="config.choice",
            )
        if isinstance(item, int | float) and not isinstance(item, bool):
            if (meta.min is not None and item < meta.min) or (meta.max is not None and item > meta.max):
                low = "" if meta.min is None else f"{meta.min:g}"
                high = "" if meta.max is None else f"{meta.max:g}"
                raise ConfigError(f"{where} = {item!r}: must be in {low}..{high}", check="config.range")


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Path):
        return _toml(str(value))
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise TypeError(f"no TOML spelling for {value!r}")


def example_toml(cls: type, *, title: str) -> str:
    """The documented example config: every setting, its help, default or example."""
    by_section: dict[str, list[str]] = {}
    tables: dict[str, list[str]] = {}
    for f, meta, _ in _settings(cls):
        if meta.raw:  # tables the role parses itself: comments after the section's keys
            tail = tables.setdefault(meta.section, [])
            tail.extend(f"# {text}".rstrip() for text in meta.help.splitlines())
            tail.extend(f"# {text}".rstrip() for text in str(meta.example or "").splitlines())
            tail.append("")
            continue
        lines = by_section.setdefault(meta.section, [])
        for text in meta.help.splitlines():
            lines.append(f"# {text}".rstrip())
        if meta.example is not None:
            shown = meta.example
        elif f.default is not REQUIRED and f.default is not dataclasses.MISSING:
            shown = f.default
        elif f.default_factory is not dataclasses.MISSING:
            shown = f.default_factory()
        else:
            shown = None
        if f.default is REQUIRED:
            lines.append(f"{_key(f, meta)} = {_toml(shown)}    # required")
        elif shown is None:
            lines.append(f"# {_key(f, meta)} =    (unset)")
        else:
            lines.append(f"{_key(f, meta)} = {_toml(shown)}")
        lines.append("")
    out = [f"# {title}", ""]
    for section, lines in by_section.items():
        out.append(f"[{section}]")
        out.extend(lines)
        out.extend(tables.pop(section, []))
    return "\n".join(out).rstrip() + "\n"
