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


def _fleet_toml(path: Path, *, fenrir: str = "", extra: str = "") -> Path:
    """A settings file with a two-host fleet; ``fenrir`` adds lines to fenrir-chat's table."""
    path.write_text(
        '[hosts.fenrir-chat]\nbase_url = "http://fenrir:11434"\nmodel = "llama3.1:8b"\n'
        f'slots = 3\nkinds = ["text"]\n{fenrir}\n'
        '[hosts.skadi-code]\nbase_url = "http://skadi:11434"\nmodel = "qwen2.5-coder:7b"\n'
        f'slots = 2\nkinds = ["code"]\n{extra}'
    )
    return path


def test_the_seed_fleet_stays_pinned_to_its_kinds() -> None:
    """By default no host overflows: each kind runs only on its own host."""
    s = load_settings()
    assert all(not h.overflow and not h.models for h in s.hosts.values())
    assert s.speeds_for("code") == {"skadi-code": 1.0}


def test_overflow_speeds_and_models_per_kind_are_read_from_the_file(tmp_path: Path) -> None:
    """A host's overflow kinds come after the kind's own hosts, with their speed and model."""
    path = _fleet_toml(
        tmp_path / "ygg.toml", fenrir='overflow = { code = 0.7 }\nmodels = { code = "coder" }'
    )
    s = load_settings(path)
    assert s.speeds_for("code") == {"skadi-code": 1.0, "fenrir-chat": 0.7}
    assert list(s.speeds_for("code")) == ["skadi-code", "fenrir-chat"]
    fenrir = s.host("fenrir-chat")
    assert (fenrir.model_for("code"), fenrir.model_for("text")) == ("coder", "llama3.1:8b")
    assert (fenrir.speed_for("text"), fenrir.speed_for("reasoning")) == (1.0, None)


def test_an_overflow_kind_no_host_serves_names_the_key_and_the_file(tmp_path: Path) -> None:
    """Overflow into a kind that is no host's own kind is one error at that key, in that file."""
    path = _fleet_toml(tmp_path / "bad.toml", fenrir="overflow = { poetry = 0.5 }")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert str(info.value) == (
        f"settings file {path}: hosts.fenrir-chat.overflow.poetry: no host serves kind"
        " 'poetry' (hosts serve: code, text)"
    )


@pytest.mark.parametrize("speed", ["0", "-0.5", "10.5", "nan"])
def test_an_overflow_speed_out_of_range_names_the_key_and_the_file(
    tmp_path: Path, speed: str
) -> None:
    """A relative speed must be above 0 and at most 10; anything else names the key and file."""
    path = _fleet_toml(tmp_path / "bad.toml", fenrir=f"overflow = {{ code = {speed} }}")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    message = str(info.value)
    assert message.startswith(f"settings file {path}: hosts.fenrir-chat.overflow.code: speed")
    assert "0 < speed <= 10" in message


def test_overflow_into_a_hosts_own_kind_is_an_error(tmp_path: Path) -> None:
    """A kind cannot be both a host's own and its overflow: the speed would be ambiguous."""
    path = _fleet_toml(tmp_path / "bad.toml", fenrir="overflow = { text = 0.5 }")
    with pytest.raises(ConfigError, match=r"hosts\.fenrir-chat\.overflow\.text: 'text' is already"):
        load_settings(path)


def test_a_model_for_a_kind_the_host_does_not_run_is_an_error(tmp_path: Path) -> None:
    """``models`` may only name the host's own or overflow kinds."""
    path = _fleet_toml(tmp_path / "bad.toml", fenrir='models = { code = "coder" }')
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert str(info.value) == (
        f"settings file {path}: hosts.fenrir-chat.models.code: 'code' is in neither kinds"
        " nor overflow"
    )


def test_an_expected_time_for_a_kind_no_host_serves_is_an_error(tmp_path: Path) -> None:
    """``scheduling.expected_s`` naming an unserved kind is one error at that key, in that file."""
    path = _fleet_toml(tmp_path / "bad.toml", extra="[scheduling]\nexpected_s = { poetry = 5 }\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert str(info.value) == (
        f"settings file {path}: scheduling.expected_s.poetry: no host serves kind 'poetry'"
        " (hosts serve: code, text)"
    )


def test_scheduling_defaults_keep_beads_order_with_aging_on() -> None:
    """Aging is on by default, never off by accident; the order within a level is Beads' own."""
    scheduling = load_settings().scheduling
    assert scheduling.aging_s > 0
    assert scheduling.order == "beads"
    assert scheduling.default_s("code") == scheduling.expected_s["code"]
    assert scheduling.default_s("poetry") == scheduling.default_expected_s
    with pytest.raises(ConfigError, match=r"scheduling\.order"):
        load_settings(scheduling={"order": "random"})
