"""Shared by test_devpki.py and test_openssl_devpki.py (helpers, not tests)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from brski.devpki import DevPki, build_dev_pki

NOW = datetime(2031, 3, 4, 5, 6, 7, tzinfo=UTC)


MASA_URL = "https://masa.example.com:8443"


@pytest.fixture(scope="module")
def dev() -> DevPki:
    return build_dev_pki(
        pledges=3,
        masa_url=MASA_URL,
        registrar_hosts=("registrar.example", "192.0.2.7"),
        masa_hosts=("masa.example.com",),
        now=NOW,
    )
