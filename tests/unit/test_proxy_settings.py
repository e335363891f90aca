"""The join proxy's [proxy] schema (brski.settings): its generated example and derived parts."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from brski.errors import ConfigError
from brski.settings import sections_of
from join_proxy.config import CircuitLimits, ProxyConfig, Upstream, example_config, load_config


def test_the_generated_example_loads_and_documents_every_key(tmp_path: Path) -> None:
    text = example_config()
    path = tmp_path / "proxy.toml"
    path.write_text(text)
    cfg = load_config(path, {})
    assert cfg.registrar == Upstream(host="fd00::2", port=8443) and cfg.announce_interfaces == ("pl1", "pl2")
    assert cfg.limits == CircuitLimits(max_circuits=256, max_circuits_per_source=8, connect_timeout_s=5.0,
                                       idle_timeout_s=30.0, max_circuit_s=300.0, max_circuit_bytes=4 << 20)
    shown = {k for body in tomllib.loads(text).values() for k in body}
    unset = {line[2:].split(" =")[0] for line in text.splitlines() if line.endswith("(unset)")}
    assert shown | unset == sections_of(ProxyConfig)["proxy"]


def test_flags_override_by_key_and_bad_ones_are_named(tmp_path: Path) -> None:
    path = tmp_path / "proxy.toml"
    path.write_text(example_config())
    cfg = load_config(path, {"registrar": "auto", "registrar_interfaces": ["dom1"], "ready_file": Path("r.json")})
    assert cfg.registrar is None and cfg.registrar_interfaces == ("dom1",) and cfg.ready_file == Path.cwd() / "r.json"
    with pytest.raises(ConfigError) as info:
        load_config(path, {"max_circuits": "9"})
    assert info.value.check == "config.type" and "--max-circuits" in info.value.detail
    path.write_text(example_config().replace('max_circuit_s = 300.0', 'max_circuit_s = "5m"'))
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    assert info.value.check == "config.type" and f"{path}: [proxy] max_circuit_s" in info.value.detail
