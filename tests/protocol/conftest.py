"""The ``net`` fixture: one in-process MASA and registrar over real TLS per
module (built by :mod:`tests.protocol.net`, where the helpers live)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.protocol.net import Net, start_net, stop_net


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    n = start_net(tmp_path_factory.mktemp("protocol"))
    yield n
    stop_net(n)
