"""Config schemas declared once (brski.settings), on the MASA's config as the example."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from brski.errors import ConfigError
from masa.config import MasaConfig, database_url, example_config, load_config


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "masa.toml"
    path.write_text(text)
    return path


def test_the_generated_example_loads_and_documents_every_key(tmp_path: Path) -> None:
    text = example_config()
    path = _write(tmp_path, text)
    cfg = load_config(path, {})
    assert cfg.port == 8443 and cfg.ownership == "open"
    assert cfg.tls_cert == tmp_path / "certs/dev/masa/tls.crt"  # relative to the file
    assert cfg.database == f"sqlite:///{tmp_path}/var/masa.db"
    tables = tomllib.loads(text)
    documented = {k for body in tables.values() for k in body} | {"ready_file"}  # unset ones are comments
    assert documented == {f for f in MasaConfig.__dataclass_fields__}


@pytest.mark.parametrize(
    ("line", "check", "words"),
    [
        ('nonceless_voucher_days = "30"', "config.type", "expected an integer"),
        ("nonceless_voucher_days = true", "config.type", "expected an integer"),
        ("nonceless_voucher_days = 0", "config.range", "1..3650"),
        ('ownership = "everyone"', "config.choice", "'open', 'sales-records'"),
        ("manufacturer_anchors = 'one.pem'", "config.type", "a list of paths"),
        ("signer_chain = [1]", "config.type", "a list of paths"),
        ("rate_limit_per_minute = -1", "config.range", "0.."),
        ("colour = 'blue'", "config.unknown-key", "colour"),
    ],
)
def test_bad_values_name_the_key_and_the_file(tmp_path: Path, line: str, check: str, words: str) -> None:
    text = example_config().replace("[masa]\n", f"[masa]\n{line}\n")
    lines = text.splitlines()
    key = line.split(" = ")[0]
    # keep only the first definition of the key (the injected one)
    seen, kept = False, []
    for ln in lines:
        if ln.startswith(f"{key} = "):
            if seen:
                continue
            seen = True
        kept.append(ln)
    path = _write(tmp_path, "\n".join(kept) + "\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    assert info.value.check == check and words in info.value.detail and str(path) in info.value.detail


def test_flags_override_the_file_and_missing_settings_are_named(tmp_path: Path) -> None:
    path = _write(tmp_path, example_config())
    cfg = load_config(path, {"port": 9000, "tls_cert": "elsewhere.crt", "host": None})
    assert cfg.port == 9000 and cfg.tls_cert == Path.cwd() / "elsewhere.crt" and cfg.host == "127.0.0.1"
    with pytest.raises(ConfigError) as info:
        load_config(None, {"tls_cert": "a", "tls_key": "b"})
    assert info.value.check == "config.missing" and "signer_cert" in info.value.detail
    with pytest.raises(ConfigError) as info:
        load_config(path, {"port": "9000"})
    assert info.value.check == "config.type" and "--port" in info.value.detail


def test_database_url_reads_only_the_store_but_still_refuses_typos(tmp_path: Path) -> None:
    assert database_url(_write(tmp_path, '[masa]\ndatabase = "sqlite:///m.db"\n'), None) == f"sqlite:///{tmp_path}/m.db"
    with pytest.raises(ConfigError):
        database_url(_write(tmp_path, "[masa]\ndatabse = 'x'\n"), None)
