"""The import rules of the layout, read from the source (nothing is imported).

* The pledge simulator uses TLS and config files without the servers'
  plumbing: no module of ``pledge_sim`` imports ``brski_web`` (or aiohttp's
  server side through it), nor ``brski_storage``: it writes no store (the
  fleet's IDevIDs reach the MASA through ``brski masa devices import``).
* The sans-IO core ``brski`` imports no database, thread, queue, socket or
  event loop, and nothing above it.
* The roles never import the CLI package or each other.
* ``brski_tls`` and ``brski_config`` sit beside the core for every role: they
  import no role, no ``brski_web``, no ``brski_cli`` and no aiohttp.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ROLES = ("masa", "registrar", "pledge_sim", "join_proxy")


def _imports(package: str) -> dict[str, set[str]]:
    """Top-level package of every import (module level and function level) per file."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(ROOT))] = names
    return found


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("pledge_sim", {"brski_web", "brski_cli", "brski_storage", "masa", "registrar"}),
        (
            "brski",
            {
                "sqlite3",
                "psycopg",
                "threading",
                "queue",
                "socket",
                "asyncio",
                "aiohttp",
                "brski_storage",
                "brski_web",
                "brski_tls",
                "brski_config",
                "brski_cli",
                *ROLES,
            },
        ),
        ("masa", {"brski_cli", "registrar", "pledge_sim", "join_proxy"}),
        ("registrar", {"brski_cli", "masa", "pledge_sim", "join_proxy"}),
        ("join_proxy", {"brski_cli", "brski_storage", "masa", "registrar", "pledge_sim"}),
        ("brski_tls", {"brski_web", "brski_cli", "aiohttp", *ROLES}),
        ("brski_config", {"brski_web", "brski_cli", "aiohttp", *ROLES}),
    ],
)
def test_package_imports_nothing_forbidden(package: str, forbidden: set[str]) -> None:
    files = _imports(package)
    assert files, f"no modules found under {package}"
    offending = {
        path: sorted(names & forbidden) for path, names in files.items() if names & forbidden
    }
    assert offending == {}
