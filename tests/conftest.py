"""Fixtures shared by every test directory."""

from __future__ import annotations

# Fixtures that unit tests and their out-of-process counterparts in e2e/ share.
pytest_plugins = ["tests.devpki_helpers", "tests.voucher_cli_helpers"]
