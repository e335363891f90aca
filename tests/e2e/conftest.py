"""The lab every end-to-end module runs against: MASA and registrar as real
processes over real TLS, with a fresh development PKI and stores.

Module scope: each test module gets its own servers and databases, so one
module's onboardings never show up in another module's store assertions.
Each module runs once per store engine (``engine``: SQLite files, or fresh
schemas on the session's PostgreSQL cluster, see tests/conftest.py).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from brski_cli.lab import Lab, ensure_dev_pki, free_port
from tests.e2e.labtools import engine_databases

PLEDGES = 3


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, engine: str, request: pytest.FixtureRequest) -> Iterator[Lab]:
    root = tmp_path_factory.mktemp("lab")
    masa_port, registrar_port = free_port(), free_port()
    certs = root / "certs"
    ensure_dev_pki(certs, pledges=PLEDGES, masa_url=f"https://localhost:{masa_port}")
    lab = Lab(workdir=root / "run", certs=certs, masa_port=masa_port, registrar_port=registrar_port,
              **engine_databases(engine, request))
    lab.up()
    yield lab
    lab.stop_all()
