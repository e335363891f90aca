"""Helpers shared by the end-to-end modules (the fixture is in conftest.py)."""

from __future__ import annotations

import json
import ssl
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import TypedDict

import pytest

from brski_cli.lab import Lab
from brski_cli.pgcluster import PgCluster
from tests.store_helpers import raw_execute, raw_rows


class LabDatabases(TypedDict, total=False):
    """Lab's store-URL keyword arguments (none: SQLite files in its workdir)."""

    registrar_database: str
    masa_database: str


def engine_databases(engine: str, request: pytest.FixtureRequest) -> LabDatabases:
    """Lab keyword arguments putting both stores on ``engine``."""
    if engine == "sqlite":
        return {}
    cluster: PgCluster = request.getfixturevalue("postgres")
    return {"registrar_database": cluster.new_schema("registrar"), "masa_database": cluster.new_schema("masa")}


def pledge_dirs(lab: Lab) -> list[Path]:
    return lab.pledge_dirs()


def enroll(lab: Lab, pledge_dir: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """``brski pledge enroll`` as a separate process, as a lab would run it."""
    return lab.enroll(pledge_dir, out, *extra)


def openssl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=60)


def rows(db: Path | str, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    """Read a store directly, not through the project's storage code: a
    SQLite file, or a store URL of either engine (``lab.db_url(role)``)."""
    return raw_rows(db if isinstance(db, str) else f"sqlite:///{db}", sql, params)


def edit(url: str, *statements: str) -> None:
    """Change a store behind its servers' backs (``lab.db_url(role)``, either
    engine), in one transaction, as someone with database access would."""
    raw_execute(url, list(statements))


def post(
    lab: Lab,
    path: str,
    body: bytes,
    content_type: str,
    tmp_path: Path,
    *,
    accept: str = "application/voucher-cms+json, application/problem+json",
) -> tuple[int, dict[str, object]]:
    """A raw client holding a pledge's IDevID, for requests no pledge would send."""
    pledge = pledge_dirs(lab)[0]
    # The client sends its IDevID CA too, as a pledge does: the registrar
    # trusts the manufacturer root only.
    bundle = tmp_path / "idevid-bundle.pem"
    bundle.write_bytes((pledge / "idevid.crt").read_bytes() + (pledge / "chain.pem").read_bytes())
    ctx = ssl.create_default_context(cafile=str(lab.certs / "registrar" / "domain-ca.crt"))
    ctx.load_cert_chain(str(bundle), str(pledge / "idevid.key"))
    req = urllib.request.Request(
        lab.registrar_url + path,
        data=body,
        method="POST",
        headers={"Content-Type": content_type, "Accept": accept},
    )
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=30) as resp:
            return resp.status, {}
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")
