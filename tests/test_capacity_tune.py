"""ygg tune as a library: found vs configured per host, suggested slots, ygg.toml lines."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from yggcelery.capacity.reading import Parallelism, ServerReading
from yggcelery.capacity.tune import suggest, toml_lines, tune, write_slots
from yggcelery.settings import HostSettings, Settings, load_settings
from yggcelery.sim import SimFleet, SimHostConfig

HOST = HostSettings(base_url="http://127.0.0.1:1", model="m:1b", slots=3, kinds=("text",))


def reading(
    parallel: Parallelism | None, *, model: str | None = None, context: int | None = None
) -> ServerReading:
    """A llama.cpp reading of fenrir with ``parallel``."""
    return ServerReading(
        host="fenrir",
        url=HOST.base_url,
        kind="llamacpp",
        parallel=parallel,
        model=model,
        context=context,
    )


def test_the_suggestion_is_what_the_server_runs() -> None:
    """Reported 2 with slots 3: suggest 2; the line shows both and the change."""
    found = Parallelism(slots=2, how="reported", source="/slots lists 2")
    tuning = suggest("fenrir", HOST, reading(found, model="m:1b", context=4096))
    assert (tuning.suggested, tuning.changes) == (2, True)
    assert tuning.line() == (
        "fenrir: llamacpp, m:1b, context 4096, parallel 2 (reported: /slots lists 2); slots 3 -> 2"
    )


def test_a_measured_floor_says_it_may_run_more_and_the_cap_is_64() -> None:
    """All requests ran at once: suggest that many, noting it may be more; 200 is capped at 64."""
    floor = suggest(
        "fenrir",
        HOST,
        reading(Parallelism(slots=6, how="measured", source="6 of 6", at_least=True)),
    )
    big = suggest("fenrir", HOST, reading(Parallelism(slots=200, how="reported", source="KV")))
    assert floor.suggested == 6 and "may run more" in floor.why
    assert big.suggested == 64 and "capped at 64" in big.why


def test_nothing_is_suggested_without_a_reading() -> None:
    """A failed probe or an unknown parallelism: no suggestion, and the reason."""
    failed = ServerReading.failed("fenrir", HOST.base_url, "host fenrir: GET x: cannot connect")
    assert suggest("fenrir", HOST, failed).suggested is None
    assert suggest("fenrir", HOST, failed).line() == "fenrir: host fenrir: GET x: cannot connect"
    assert suggest("fenrir", HOST, reading(None)).why == "parallelism unknown"


@pytest.fixture
def fleet_settings() -> Iterator[Settings]:
    """The seed fleet (2/3/2) on llama.cpp servers started with --parallel 2, 1 and 4."""
    base = load_settings()
    parallel = {"surtr-reasoning": 2, "fenrir-chat": 1, "skadi-code": 4}
    configs = [
        replace(
            SimHostConfig.from_settings(name, host, base.sim, port=0, time_scale=0.05),
            server="llamacpp",
            parallel=parallel[name],
        )
        for name, host in base.hosts.items()
    ]
    with SimFleet(configs) as fleet:
        hosts = {
            n: h.model_copy(update={"server": "llamacpp"})
            for n, h in fleet.host_overrides().items()
        }
        yield load_settings(hosts=hosts)


def test_tune_reads_every_host_and_prints_the_toml_lines(fleet_settings: Settings) -> None:
    """2 matches; fenrir 3 -> 1 and skadi 2 -> 4; the lines set exactly those slots."""
    tunings = {t.host: t for t in tune(fleet_settings)}
    assert {n: (t.configured, t.suggested) for n, t in tunings.items()} == {
        "surtr-reasoning": (2, 2),
        "fenrir-chat": (3, 1),
        "skadi-code": (2, 4),
    }
    assert tunings["surtr-reasoning"].line().endswith("slots 2 (keep)")
    lines = toml_lines(tunings.values())
    assert tomllib.loads(lines)["hosts"] == {
        "surtr-reasoning": {"slots": 2},
        "fenrir-chat": {"slots": 1},
        "skadi-code": {"slots": 4},
    }


def test_tune_then_write_changes_only_the_slots(fleet_settings: Settings, tmp_path: Path) -> None:
    """The suggestions written into a ygg.toml: the file reads back with them, all else equal."""
    path = tmp_path / "ygg.toml"
    text = "".join(
        f'[hosts.{name}]\nbase_url = "{h.base_url}"  # sim\nmodel = "{h.model}"\n'
        f'slots = {h.slots}\nkinds = ["{h.kinds[0]}"]\nserver = "llamacpp"\n\n'
        for name, h in fleet_settings.hosts.items()
    )
    path.write_text(text)
    write_slots(path, {t.host: t.suggested for t in tune(fleet_settings) if t.suggested})
    assert path.read_text() == text.replace("slots = 3", "slots = 1").replace(
        f'{fleet_settings.hosts["skadi-code"].model}"\nslots = 2',
        f'{fleet_settings.hosts["skadi-code"].model}"\nslots = 4',
    )
    assert {n: h.slots for n, h in load_settings(path).hosts.items()} == {
        "surtr-reasoning": 2,
        "fenrir-chat": 1,
        "skadi-code": 4,
    }
