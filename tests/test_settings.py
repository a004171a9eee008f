"""Settings: defaults with no file, errors naming file and key, env overrides, secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import ConfigError
from pipeline.settings import load_settings


def test_defaults_run_with_no_config_file(tmp_path: Path) -> None:
    s = load_settings(root=tmp_path, env={})
    assert s.config_path is None
    assert s.provider == "outbox"
    assert s.database_url == f"sqlite:///{tmp_path / 'var' / 'newsletter.db'}"
    assert set(s.topics) == {"updates", "offers"}
    assert s.outbox_dir == tmp_path / "var" / "outbox"


def test_unknown_key_names_file_and_key(tmp_path: Path) -> None:
    cfg = tmp_path / "newsletter.toml"
    cfg.write_text('[site]\nnmae = "typo"\n')
    with pytest.raises(ConfigError) as err:
        load_settings(cfg, env={})
    assert str(cfg) in str(err.value)
    assert "site.nmae" in str(err.value)


def test_wrong_type_names_key_and_value(tmp_path: Path) -> None:
    cfg = tmp_path / "newsletter.toml"
    cfg.write_text('[send]\nrate = "fast"\n')
    with pytest.raises(ConfigError, match=r"send\.rate must be a number, got 'fast'"):
        load_settings(cfg, env={})


def test_invalid_toml_is_a_config_error(tmp_path: Path) -> None:
    cfg = tmp_path / "newsletter.toml"
    cfg.write_text("[site\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(cfg, env={})


def test_environment_overrides_file(tmp_path: Path) -> None:
    cfg = tmp_path / "newsletter.toml"
    cfg.write_text('[provider]\nname = "outbox"\n[store]\nurl = "sqlite:///x.db"\n')
    env = {"NEWSLETTER_PROVIDER": "Postmark", "NEWSLETTER_DATABASE_URL": "postgresql://h/db"}
    s = load_settings(cfg, env=env)
    assert s.provider == "postmark"
    assert s.database_url == "postgresql://h/db"


def test_missing_secret_says_where_to_set_it(tmp_path: Path) -> None:
    s = load_settings(root=tmp_path, env={})
    with pytest.raises(ConfigError) as err:
        s.secret("POSTMARK_SERVER_TOKEN", needed_for="provider postmark")
    assert "provider postmark needs POSTMARK_SERVER_TOKEN in the environment" in str(err.value)


def test_local_secret_key_is_made_once_and_kept(tmp_path: Path) -> None:
    s = load_settings(root=tmp_path, env={})
    first = s.secret_key()
    assert len(first) >= 32
    assert load_settings(root=tmp_path, env={}).secret_key() == first
    assert (tmp_path / "var" / "secret.key").stat().st_mode & 0o077 == 0


def test_custom_topics_replace_defaults(tmp_path: Path) -> None:
    cfg = tmp_path / "newsletter.toml"
    cfg.write_text('[topics.news]\nname = "News"\n')
    assert list(load_settings(cfg, env={}).topics) == ["news"]
