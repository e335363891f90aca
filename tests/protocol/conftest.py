"""The ``net`` fixture: one in-process MASA and registrar over real TLS per
module and store engine (built by :mod:`tests.protocol.net`, where the helpers
live); and ``tls_pki``, the certificates of the brski_web.tls transport tests
(:mod:`tests.protocol.tls_transport_helpers`), minted per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.protocol.net import Net, running_net
from tests.protocol.tls_transport_helpers import Pki, make_pki


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory, engine: str, request: pytest.FixtureRequest) -> Iterator[Net]:
    with running_net(tmp_path_factory.mktemp("protocol"), engine, request) as n:
        yield n


@pytest.fixture(scope="module")
def tls_pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("tlspki"))
