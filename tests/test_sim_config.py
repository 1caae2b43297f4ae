"""A simulated host's service times: fixed cost, tokens, and its speed at overflow kinds."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from yggcelery.settings import load_settings
from yggcelery.sim import SimFleet, SimHostConfig

MODEL = "llama3.1:8b"


def fenrir(**kw: object) -> SimHostConfig:
    """fenrir: text is its own kind; it may run code at half speed."""
    values: dict[str, object] = {
        "name": "fenrir",
        "model": MODEL,
        "kind": "text",
        "kinds": ("text",),
        "speeds": {"code": 0.5},
        "base_s": {"text": 2.0, "code": 4.0},
        "per_token_s": 0.01,
        "default_output_tokens": 100,
    }
    return SimHostConfig(**(values | kw))  # type: ignore[arg-type]


def test_an_overflow_kind_takes_one_over_speed_as_long() -> None:
    """Code at speed 0.5 takes twice its work (4 s + 1 s of tokens); text takes its own time."""
    config = fenrir()
    assert config.service_s(kind="code", output_tokens=None) == pytest.approx(10.0)
    assert config.service_s(kind="text", output_tokens=None) == pytest.approx(3.0)
    assert config.speed_for(None) == config.speed_for("text") == 1.0


def test_overflow_speeds_come_from_the_host_settings_and_go_back() -> None:
    """A host's ``overflow`` becomes the simulator's speeds, and its settings carry them back."""
    hosts = {name: host.model_dump() for name, host in load_settings().hosts.items()}
    hosts["fenrir-chat"]["overflow"] = {"code": 0.7}
    settings = load_settings(hosts=hosts)
    config = SimHostConfig.from_settings("fenrir-chat", settings.hosts["fenrir-chat"], settings.sim)
    assert dict(config.speeds) == {"code": 0.7}
    assert config.host_settings("http://127.0.0.1:1").overflow == {"code": 0.7}


@pytest.fixture
def fleet() -> Iterator[SimFleet]:
    """fenrir alone, fast (time scale 0.001), on a free port."""
    started = SimFleet([fenrir(time_scale=0.001)]).start()
    yield started
    started.stop()


def test_a_service_time_asked_of_the_kinds_own_host_is_stretched_on_overflow(
    fleet: SimFleet,
) -> None:
    """A bead asking 10 s of code (its own host's time) is served 20 s on fenrir at 0.5."""
    host = fleet["fenrir"]
    body = {"model": MODEL, "messages": [{"role": "user", "content": "go"}], "stream": False}
    for bead, kind in (("b-code", "code"), ("b-text", "text")):
        headers = {"X-Ygg-Bead": bead, "X-Ygg-Kind": kind, "X-Ygg-Service-S": "10"}
        response = httpx.post(f"{host.url}/api/chat", json=body, headers=headers, timeout=30)
        assert response.status_code == 200
    served = {r["bead"]: r["service_s"] for r in host.records()}
    assert served == {"b-code": pytest.approx(20.0), "b-text": pytest.approx(10.0)}
