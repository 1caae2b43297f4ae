"""The test bed's settings files and its requirements, without creating a namespace.

The bed itself (namespaces, faults, processes) is tested as root by tests/test_distributed.py.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from yggcelery.settings import load_settings
from yggcelery.testing import netns
from yggcelery.testing.netbed_files import (
    ADDRESSES,
    GPU_HOSTS,
    SENTINEL_MASTER,
    BedPlan,
    machine_files,
    to_toml,
    write_examples,
)

OPS_NETBED = Path(__file__).resolve().parents[1] / "ops" / "netbed"
PLANS = {
    "plain": BedPlan(workspace=Path("/srv/ygg/workspace")),
    "cloud": BedPlan(cloud=True),
    "sentinel": BedPlan(sentinel=True, cloud=True),
}


def test_ops_netbed_holds_exactly_the_files_the_bed_writes(tmp_path: Path) -> None:
    """ops/netbed/ is the output of --write-examples: same files, same text."""
    write_examples(tmp_path)
    written = {p.relative_to(tmp_path): p.read_text() for p in tmp_path.rglob("*") if p.is_file()}
    shipped = {
        p.relative_to(OPS_NETBED): p.read_text()
        for p in OPS_NETBED.rglob("*")
        if p.is_file() and p.name != "README.md"
    }
    regenerate = "python -m yggcelery.testing.netbed --write-examples ops/netbed"
    assert shipped == written, f"ops/netbed is stale: {regenerate}"


@pytest.mark.parametrize("plan", PLANS.values(), ids=PLANS.keys())
def test_every_machines_ygg_toml_is_valid_settings_naming_real_addresses(
    plan: BedPlan, tmp_path: Path
) -> None:
    """Each machine's ygg.toml loads as ygg settings; hosts and broker are on 198.18.0.0/15."""
    for machine in plan.machines:
        files = machine_files(plan, machine, data_dir=tmp_path)
        if "ygg.toml" not in files:
            continue
        path = tmp_path / f"{machine}.toml"
        path.write_text(files["ygg.toml"])
        settings = load_settings(path)
        assert {h.base_url for h in settings.hosts.values()} == {
            f"http://{ADDRESSES[m]}:11434" for m in GPU_HOSTS
        }
        assert "198.18.0." in settings.broker_url and "127.0.0.1" not in settings.broker_url
        assert settings.broker_kind == "redis"


def test_only_the_control_machine_names_the_beads_workspace_and_a_metrics_address() -> None:
    """Beads and the dispatcher's /metrics live on control; GPU hosts get the simulator's speed."""
    plan = BedPlan(workspace=Path("/w"), time_scale=0.25)
    control = tomllib.loads(machine_files(plan, "control", data_dir=Path("/d"))["ygg.toml"])
    skadi = tomllib.loads(machine_files(plan, "skadi", data_dir=Path("/d"))["ygg.toml"])
    assert control["beads"]["dir"] == "/w/.beads"
    assert control["metrics_address"] == ADDRESSES["control"]
    assert "beads" not in skadi and skadi["metrics_port"] == 0
    assert skadi["sim"] == {"time_scale": 0.25} and "sim" not in control


def test_sentinel_plans_point_every_url_at_the_three_sentinels() -> None:
    """With Sentinels, broker and results list the three Sentinels; sentinel.conf on each."""
    plan = PLANS["sentinel"]
    data = tomllib.loads(machine_files(plan, "surtr", data_dir=Path("/d"))["ygg.toml"])
    assert data["broker_url"] == (
        "sentinel://198.18.0.10:26379/0;sentinel://198.18.0.11:26379/0;"
        "sentinel://198.18.0.20:26379/0"
    )
    assert data["result_backend"].endswith("/1") and data["sentinel_master"] == SENTINEL_MASTER
    replica = machine_files(plan, "replica", data_dir=Path("/d"))
    assert "replicaof 198.18.0.10 6379" in replica["redis.conf"]
    assert f"sentinel monitor {SENTINEL_MASTER} 198.18.0.10 6379 2" in replica["sentinel.conf"]


def test_overrides_merge_into_a_section_without_replacing_it() -> None:
    """A plan's overrides change one key of a section and keep the others."""
    plan = BedPlan(overrides={"retry": {"max_attempts": 1}})
    data = tomllib.loads(machine_files(plan, "skadi", data_dir=Path("/d"))["ygg.toml"])
    assert data["retry"]["max_attempts"] == 1 and data["retry"]["max_retries"] == 2


def test_to_toml_writes_nested_tables_that_read_back_the_same() -> None:
    """Scalars, arrays, booleans and nested tables survive a round trip through tomllib."""
    data = {"a": "x\"y", "n": 3, "f": 0.5, "on": True,
            "t": {"list": ["p", "q"], "deep": {"k": "v"}}}  # fmt: skip
    assert tomllib.loads(to_toml(data, header="two\nlines")) == data


def test_missing_requirements_names_root_when_not_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without root the reason says so (the uid is faked: these tests run as root in CI)."""
    monkeypatch.setattr(netns.os, "geteuid", lambda: 1000)
    reason = netns.missing_requirements()
    assert reason is not None and "root" in reason and "1000" in reason


def test_missing_requirements_names_the_missing_tool(monkeypatch: pytest.MonkeyPatch) -> None:
    """A missing nft is named, with the package that has it (PATH lookup faked for one tool)."""
    real = netns.shutil.which
    monkeypatch.setattr(netns.os, "geteuid", lambda: 0)
    monkeypatch.setattr(netns.shutil, "which", lambda t: None if t == "nft" else real(t) or t)
    reason = netns.missing_requirements()
    assert reason is not None and "nft" in reason and "nftables" in reason
