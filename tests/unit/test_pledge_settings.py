"""The pledge simulator's [pledge] schema (brski.settings): example, types, resolution."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from brski import oids
from brski.errors import ConfigError
from pledge_sim.config import PledgeSettings, example_config, load_config


def _pki(root: Path) -> Path:
    """The files of a dev-PKI pledge directory (contents do not matter to the config)."""
    pledge = root / "certs/dev/pledges/PLG-000001"
    pledge.mkdir(parents=True)
    for name in ("idevid.crt", "idevid.key"):
        (pledge / name).write_text("x")
    (root / "certs/dev/manufacturer").mkdir(parents=True)
    (root / "certs/dev/manufacturer/root-ca.crt").write_text("x")
    return pledge


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pledge.toml"
    path.write_text(text)
    return path


def _with(line: str) -> str:
    key = line.split(" = ")[0]
    kept = [ln for ln in example_config().splitlines() if not ln.startswith(f"{key} = ")]
    return "\n".join(kept).replace("[pledge]\n", f"[pledge]\n{line}\n") + "\n"


def test_the_generated_example_loads_and_documents_every_key(tmp_path: Path) -> None:
    pledge = _pki(tmp_path)
    text = example_config()
    cfg = load_config(_write(tmp_path, text), {})
    assert (cfg.registrar_url, cfg.host, cfg.port) == ("https://localhost:8444", "localhost", 8444)
    assert cfg.idevid == pledge / "idevid.crt" and cfg.anchors == (tmp_path / "certs/dev/manufacturer/root-ca.crt",)
    assert cfg.out == tmp_path / "out/PLG-000001" and cfg.media_type == oids.MT_VOUCHER_CMS_JSON
    assert cfg.max_voucher_attempts == 10 and not cfg.discover
    shown = {k for body in tomllib.loads(text).values() for k in body}
    unset = {line[2:].split(" =")[0] for line in text.splitlines() if line.endswith("(unset)")}
    assert shown | unset == set(PledgeSettings.__dataclass_fields__)


@pytest.mark.parametrize(
    ("line", "check", "words"),
    [
        ('max_voucher_attempts = "3"', "config.type", "expected an integer"),
        ("max_enroll_attempts = 0", "config.range", "1.."),
        ("timeout = 0", "config.range", "0.001..3600"),
        ("chunked = 'yes'", "config.type", "true or false"),
        ('format = "xml"', "config.choice", "'cms', 'cose', 'jws'"),
        ('key_type = "rsa"', "config.choice", "'ec-p256'"),
        ("interfaces = [1]", "config.type", "a string or a list of strings"),
        ("anchors = 3", "config.type", "a path or a list of paths"),
        ("colour = 'blue'", "config.unknown-key", "colour"),
        ('registrar = "http://r:8444"', "pledge.config.registrar", "https://host[:port]"),
        ('dir = "nowhere"', "pledge.config", "not a directory"),
    ],
)
def test_bad_values_name_the_key_and_the_file(tmp_path: Path, line: str, check: str, words: str) -> None:
    _pki(tmp_path)
    path = _write(tmp_path, _with(line))
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    assert info.value.check == check and words in info.value.detail and str(path) in info.value.detail
    assert line.split(" = ")[0] in info.value.detail


def test_flags_override_the_file_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _pki(tmp_path)
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    (elsewhere / "a.crt").write_text("x")
    monkeypatch.chdir(elsewhere)
    path = _write(tmp_path, example_config())
    cfg = load_config(path, {"anchor": ["a.crt"], "registrar": "auto", "interfaces": [], "format": "cose"})
    assert cfg.anchors == (elsewhere / "a.crt",) and cfg.discover and cfg.interfaces == ()
    assert cfg.media_type == oids.MT_VOUCHER_COSE_CBOR
    with pytest.raises(ConfigError) as info:
        load_config(path, {"registrar": "auto"}, purpose="reenroll")
    assert info.value.check == "pledge.config.registrar"
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, "[plege]\n"), {})
    assert info.value.check == "config.unknown-section"
