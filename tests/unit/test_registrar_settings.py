"""The registrar's config schema (brski.settings): its generated example, types, tables."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from brski.errors import ConfigError
from brski.settings import sections_of
from registrar.config import RegistrarConfig, database_url, example_config, load_config


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "registrar.toml"
    path.write_text(text)
    return path


def _with(line: str) -> str:
    """The example with ``line`` setting [registrar] keys (the example's own lines for them dropped)."""
    keys = tuple(f"{ln.split(' = ')[0]} = " for ln in line.splitlines())
    kept = [ln for ln in example_config().splitlines() if not ln.startswith(keys)]
    return "\n".join(kept).replace("[registrar]\n", f"[registrar]\n{line}\n") + "\n"


def test_the_generated_example_loads_and_documents_every_key(tmp_path: Path) -> None:
    text = example_config()
    cfg = load_config(_write(tmp_path, text), {})
    assert cfg.port == 8444 and cfg.ldevid_validity_days == 365 and cfg.http_port == 8445
    assert cfg.ca_cert == tmp_path / "certs/dev/registrar/domain-ca.crt"  # relative to the file
    assert cfg.database == f"sqlite:///{tmp_path}/var/registrar.db"
    assert cfg.admission.unlisted_devices == "admit" and cfg.ldevid.csr_extras == "ignore"
    assert [m.policy for m in cfg.manufacturers] == ["brski"]
    shown = {k for body in tomllib.loads(text).values() for k in body}
    unset = {line[2:].split(" =")[0] for line in text.splitlines() if line.endswith("(unset)")}
    keys = set().union(*sections_of(RegistrarConfig).values())
    # The arrays of tables are documented as commented examples.
    assert shown | unset | {"manufacturers", "ldevid_profiles", "network_access"} == keys
    assert "# [[registrar.manufacturers]]" in text and "# [[registrar.ldevid_profiles]]" in text
    assert "# [registrar.network_access]" in text


@pytest.mark.parametrize(
    ("line", "check", "words"),
    [
        ('ldevid_validity_days = "365"', "config.type", "expected an integer"),
        ("ldevid_validity_days = 0", "config.range", "1..36500"),
        ('unlisted_devices = "maybe"', "config.choice", "'admit', 'queue', 'refuse'"),
        ('allow_serials = "PLG-1"', "config.type", "a list of strings"),
        ("approval_retry_after_s = 61", "config.range", "1..60"),
        ("reonboard_decommissioned = 1", "config.type", "true or false"),
        ('masa_trust = "ca.pem"', "config.type", "a list of paths"),
        ("ldevid_issuance_window_s = 2.5", "config.type", "expected an integer"),
        ('ldevid_csr_extras = "keep"', "config.choice", "'ignore', 'refuse'"),
        ("colour = 'blue'", "config.unknown-key", "colour"),
        # Tables parsed by their own rules, and cross-field rules: the file is named too.
        ("manufacturers = [{ name = 'acme', policy = 'sometimes', anchor = 'a.crt' }]", "config.manufacturers",
         "policy must be one of"),
        ("ldevid_profiles = [{ name = 'p', colour = 'x' }]", "config.ldevid-profiles", "ldevid_profiles"),
        ('masa_url_override = "http://masa"', "config.masa-url", "https://"),
    ],
)
def test_bad_values_name_the_key_and_the_file(tmp_path: Path, line: str, check: str, words: str) -> None:
    path = _write(tmp_path, _with(line))
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    assert info.value.check == check and words in info.value.detail and str(path) in info.value.detail
    key = line.split(" = ")[0]
    assert key in info.value.detail or check.startswith("config.ldevid") or check == "config.manufacturers"


def test_the_tables_resolve_against_the_file(tmp_path: Path) -> None:
    line = ("manufacturers = [{ name = 'acme', anchor = 'acme.crt' }, { name = 'anyone', policy = 'first-use' }]\n"
            "ldevid_profiles = [{ name = 'acme', manufacturer = 'acme', eku = ['clientAuth'] }]\n"
            'allow_serials = ["A-1"]')
    cfg = load_config(_write(tmp_path, _with(line)), {})
    assert [(m.name, m.anchor) for m in cfg.admission.manufacturers] == [
        ("acme", tmp_path / "acme.crt"), ("anyone", None),
    ]
    assert [m.name for m in cfg.manufacturers] == ["root-ca", "acme", "anyone"]  # the anchor list first
    assert cfg.ldevid.profiles[0].manufacturer == "acme" and cfg.admission.allow_serials == frozenset({"A-1"})


def test_flags_override_the_file_and_missing_settings_are_named(tmp_path: Path) -> None:
    path = _write(tmp_path, example_config())
    cfg = load_config(path, {"port": 9000, "ca_cert": "other.crt", "allow_crl_mismatch": True, "host": None})
    assert cfg.port == 9000 and cfg.ca_cert == Path.cwd() / "other.crt" and cfg.allow_crl_mismatch
    with pytest.raises(ConfigError) as info:
        load_config(path, {"http_port": "80"})
    assert info.value.check == "config.type" and "--http-port" in info.value.detail
    with pytest.raises(ConfigError) as info:
        load_config(None, {"tls_cert": "a", "tls_key": "b", "manufacturer_anchors": ["m"]})
    assert info.value.check == "config.missing" and "[registrar] ca_cert" in info.value.detail
    anchorless = "\n".join(ln for ln in example_config().splitlines() if not ln.startswith("manufacturer_anchors"))
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, anchorless), {})
    assert info.value.check == "config.anchors" and str(tmp_path) in info.value.detail


def test_database_url_reads_only_the_store_but_still_refuses_typos(tmp_path: Path) -> None:
    assert database_url(_write(tmp_path, '[registrar]\ndatabase = "sqlite:///r.db"\n'), None) == (
        f"sqlite:///{tmp_path}/r.db"
    )
    assert database_url(None, None) == "sqlite:///var/registrar.db"
    with pytest.raises(ConfigError) as info:
        database_url(_write(tmp_path, "[registrar]\ndatabse = 'x'\n"), None)
    assert info.value.check == "config.unknown-key"
