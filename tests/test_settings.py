"""Settings: the seed fleet by default, TOML below env, one clear error naming key and file."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from yggcelery.errors import ConfigError
from yggcelery.settings import load_settings, to_env


def test_defaults_describe_the_seed_fleet() -> None:
    """surtr 2 reasoning, fenrir 3 text, skadi 2 code, each with URL, dialect and model."""
    s = load_settings()
    assert {n: (h.slots, h.kinds) for n, h in s.hosts.items()} == {
        "surtr-reasoning": (2, ("reasoning",)),
        "fenrir-chat": (3, ("text",)),
        "skadi-code": (2, ("code",)),
    }
    assert all(h.dialect == "ollama" and h.model and h.base_url for h in s.hosts.values())
    assert s.timeouts.visibility_s > s.timeouts.task_hard_s


def test_toml_file_is_read_and_env_overrides_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ygg.toml sets values; a YGG_* variable beats the file."""
    Path("ygg.toml").write_text('broker_url = "redis://db:6379/0"\n[dispatch]\npoll_s = 5\n')
    monkeypatch.setenv("YGG_DISPATCH__POLL_S", "0.5")
    s = load_settings()
    assert s.broker_url == "redis://db:6379/0"
    assert s.dispatch.poll_s == 0.5


def test_invalid_value_names_the_key_and_the_file(tmp_path: Path) -> None:
    """A bad slot count is one ConfigError naming hosts.skadi-code.slots and the file."""
    path = tmp_path / "bad.toml"
    path.write_text(
        '[hosts.skadi-code]\nbase_url = "http://skadi:11434"\nmodel = "m"\n'
        'slots = 0\nkinds = ["code"]\n'
    )
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert str(path) in str(info.value)
    assert "hosts.skadi-code.slots" in str(info.value)


def test_toml_syntax_error_names_the_file_and_line(tmp_path: Path) -> None:
    """Broken TOML is reported with the file and TOML's own position."""
    path = tmp_path / "broken.toml"
    path.write_text("[hosts\n")
    with pytest.raises(ConfigError, match=r"broken.toml: invalid TOML.*line 1"):
        load_settings(path)


def test_unknown_key_is_rejected(tmp_path: Path) -> None:
    """A typo in a section is an error, not silently ignored."""
    path = tmp_path / "typo.toml"
    path.write_text("[dispatch]\npol_s = 1\n")
    with pytest.raises(ConfigError, match=r"dispatch.pol_s"):
        load_settings(path)


def test_bad_broker_url_fails_with_one_line() -> None:
    """An unsupported broker scheme is a ConfigError naming broker_url."""
    with pytest.raises(ConfigError, match=r"broker_url.*unsupported URL scheme 'http'"):
        load_settings(broker_url="http://nope")


def test_missing_named_config_file_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """YGG_CONFIG pointing nowhere is reported, not ignored."""
    monkeypatch.setenv("YGG_CONFIG", "/nonexistent/ygg.toml")
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings()


def test_visibility_timeout_must_exceed_the_hard_limit() -> None:
    """A visibility timeout at or below the hard time limit would run tasks twice."""
    with pytest.raises(ConfigError, match="visibility_s"):
        load_settings(timeouts={"task_hard_s": 100, "task_soft_s": 90, "visibility_s": 100})


def test_to_env_round_trips_through_a_child_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings passed to a child as YGG_* variables come back equal, secrets included."""
    original = load_settings(flower={"password": "s3cret"}, dispatch={"poll_s": 0.3})
    for key, value in to_env(original).items():
        monkeypatch.setenv(key, value)
    assert load_settings() == original


@hsettings(max_examples=60, deadline=None)
@given(st.text(max_size=200))
def test_any_settings_file_text_loads_or_raises_config_error(text: str) -> None:
    """Whatever bytes ygg.toml holds, the result is Settings or one ConfigError, nothing else."""
    path = Path("prop.toml")
    path.write_text(text, encoding="utf-8")
    try:
        load_settings(path)
    except ConfigError as exc:
        assert "prop.toml" in str(exc) or "settings" in str(exc)


def test_empty_cloud_url_means_no_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty YGG_CLOUD__URL (as .env files leave it) disables the cloud fallback."""
    monkeypatch.setenv("YGG_CLOUD__URL", "")
    assert not load_settings().cloud.enabled


def test_a_default_kind_no_host_serves_fails_at_start_up() -> None:
    """Routing that could send work nowhere is a start-up error naming the kind."""
    with pytest.raises(ConfigError, match="default_kind 'poetry' is served by no host"):
        load_settings(routing={"default_kind": "poetry"})
