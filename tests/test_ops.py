"""The operations files in ``ops/``: example settings, systemd units, Prometheus rules, README.

They are checked against the code they drive: the settings loader, the ``ygg`` command line, the
metric names the dispatcher serves, and, where installed, ``systemd-analyze`` and ``promtool``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest
import yaml  # type: ignore[import-untyped]  # no types-PyYAML in the test extra

from yggcelery.cli.main import cli
from yggcelery.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
OPS = ROOT / "ops"
UNITS = OPS / "systemd"
PROMETHEUS = OPS / "prometheus"
EXAMPLE_TOML = OPS / "ygg.toml.example"

#: The seed fleet: host queue -> GPU slots.
FLEET = {"surtr-reasoning": 2, "fenrir-chat": 3, "skadi-code": 2}

#: Every metric the dispatcher serves (yggcelery.exporter.collector), plus Prometheus's own `up`.
KNOWN_METRICS = {
    "ygg_queue_depth",
    "ygg_slots_busy",
    "ygg_slots_free",
    "ygg_beads_ready",
    "ygg_task_duration_seconds",
    "ygg_task_duration_seconds_bucket",
    "ygg_task_duration_seconds_sum",
    "ygg_task_duration_seconds_count",
    "ygg_gpu_utilization",
    "ygg_slots_configured",
    "ygg_slots_effective",
    "ygg_server_waiting",
    "ygg_cloud_spend_usd_today",
    "ygg_worker_online",
    "ygg_host_up",
    "up",
}

#: Unit file -> the `ygg` arguments its ExecStart must run.
UNIT_COMMANDS = {
    "ygg-worker@.service": ["worker", "%i"],
    "ygg-worker-control.service": ["worker", "control"],
    "ygg-beat.service": ["beat"],
    "ygg-dispatcher.service": ["loop"],
    "ygg-dispatcher-legacy.service": ["loop", "--legacy"],
    "ygg-flower.service": ["flower"],
}

#: Units that read or write the Beads workspace.
BEADS_UNITS = (
    "ygg-worker-control.service",
    "ygg-beat.service",
    "ygg-dispatcher.service",
    "ygg-dispatcher-legacy.service",
)

Unit = dict[str, dict[str, list[str]]]


@pytest.fixture(autouse=True)
def _no_ygg_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings come from the files under test only, not from the caller's YGG_* variables."""
    import os

    for name in list(os.environ):
        if name.startswith("YGG_"):
            monkeypatch.delenv(name)


def parse_unit(path: Path) -> Unit:
    """A systemd unit as section -> key -> values (keys may repeat, e.g. Environment=)."""
    unit: Unit = {}
    section: dict[str, list[str]] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = unit.setdefault(line[1:-1], {})
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not a key=value line: {raw!r}"
        section.setdefault(key.strip(), []).append(value.strip())
    return unit


def one(unit: Unit, section: str, key: str) -> str:
    values = unit[section][key]
    assert len(values) == 1, f"{key} set {len(values)} times"
    return values[0]


def alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


_PROMQL_WORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "bool", "offset", "inf", "nan",
}  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (not functions, labels, keywords, durations)."""
    text = re.sub(r'"[^"]*"', "", expr)  # string literals
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range selectors
    text = re.sub(r"\b\d+(\.\d+)?([eE][+-]?\d+)?\b", "", text)  # numbers
    grouping = r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)"
    text = re.sub(grouping, "", text)  # label lists
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        following = text[match.end() :].lstrip()
        if following.startswith("(") or match.group().lower() in _PROMQL_WORDS:
            continue
        names.add(match.group())
    return names


# --- ygg.toml.example and ygg.env.example ---------------------------------------------------


def test_example_settings_load_and_describe_the_lan_fleet() -> None:
    """ops/ygg.toml.example loads with load_settings and describes surtr/fenrir/skadi on Ollama."""
    settings = load_settings(EXAMPLE_TOML)
    assert {name: host.slots for name, host in settings.hosts.items()} == FLEET
    for name, host in settings.hosts.items():
        assert host.port == 11434, name
        assert not host.base_url.startswith("http://127."), f"{name}: a LAN address is needed"
        assert host.dialect == "ollama"
    assert settings.cloud.enabled
    assert settings.flower.address == "127.0.0.1"
    assert settings.broker_kind == "redis"


def test_example_routing_kinds_are_all_served() -> None:
    """Every task kind the example routes to is served by at least one of its hosts."""
    settings = load_settings(EXAMPLE_TOML)
    kinds = {settings.routing.default_kind, *settings.routing.issue_types.values()}
    assert kinds == {"reasoning", "text", "code"}
    for kind in kinds:
        assert settings.hosts_for(kind), kind


def _env_example() -> dict[str, str]:
    pairs = {}
    for line in (OPS / "ygg.env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip().removeprefix('"').removesuffix('"')
    return pairs


def test_env_example_reads_the_same_in_systemd_and_sh() -> None:
    """ygg.env.example's values, as systemd reads them, are what `sh` gets by sourcing it."""
    script = 'set -a; . "$1"; env'
    done = subprocess.run(
        ["sh", "-c", script, "sh", str(OPS / "ygg.env.example")],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    sourced = dict(line.partition("=")[::2] for line in done.stdout.splitlines() if "=" in line)
    expected = _env_example()
    assert {key: sourced.get(key) for key in expected} == expected


def _setting(settings: Settings, env_name: str) -> object:
    node: object = settings
    for part in env_name.removeprefix("YGG_").lower().split("__"):
        node = getattr(node, part)
    secret = getattr(node, "get_secret_value", None)
    return secret() if callable(secret) else node


def test_env_example_sets_real_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each YGG_* line of ygg.env.example reaches the setting it names (env beats the file)."""
    env = {key: value or f"value-of-{key}" for key, value in _env_example().items()}
    assert {"YGG_BROKER_URL", "YGG_RESULT_BACKEND", "YGG_FLOWER__PASSWORD"} <= env.keys()
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = load_settings(EXAMPLE_TOML)
    for key, value in env.items():
        if key == settings.cloud.api_key_env:
            continue  # read by name at call time; never a setting
        assert _setting(settings, key) == value, key


# --- systemd units --------------------------------------------------------------------------


def test_every_unit_runs_its_ygg_command_as_the_ygg_user() -> None:
    """Each unit runs the venv's ygg with its command, as user ygg, with the env file and config."""
    assert {p.name for p in UNITS.glob("*.service")} == set(UNIT_COMMANDS)
    for name, args in UNIT_COMMANDS.items():
        unit = parse_unit(UNITS / name)
        service = unit["Service"]
        assert one(unit, "Service", "ExecStart").split() == ["/opt/ygg/venv/bin/ygg", *args], name
        assert one(unit, "Service", "User") == "ygg", name
        assert one(unit, "Service", "EnvironmentFile") == "/etc/ygg/ygg.env", name
        assert "YGG_CONFIG=/etc/ygg/ygg.toml" in service["Environment"], name
        assert one(unit, "Service", "Restart") == "always", name
        assert one(unit, "Service", "KillSignal") == "SIGTERM", name
        assert one(unit, "Install", "WantedBy") == "multi-user.target", name


@pytest.mark.parametrize("name", sorted(UNIT_COMMANDS))
def test_unit_command_parses_with_the_ygg_cli(name: str) -> None:
    """The ygg subcommand and flags a unit runs exist in the ygg command line."""
    args = [a.replace("%i", "skadi-code") for a in UNIT_COMMANDS[name]]
    parent = click.Context(cli, info_name="ygg")
    command = cli.get_command(parent, args[0])
    assert command is not None, f"{name}: no `ygg {args[0]}` command"
    with command.make_context(args[0], args[1:], parent=parent):
        pass  # parsing alone rejects unknown flags and missing arguments


def test_worker_units_wait_for_running_tasks_on_stop() -> None:
    """Workers stop warmly: SIGTERM to the main process only, and longer than a task may run."""
    hard_s = max(Settings().timeouts.task_hard_s, load_settings(EXAMPLE_TOML).timeouts.task_hard_s)
    for name in ("ygg-worker@.service", "ygg-worker-control.service"):
        unit = parse_unit(UNITS / name)
        assert one(unit, "Service", "KillMode") == "mixed", name
        assert float(one(unit, "Service", "TimeoutStopSec")) > hard_s, name


def test_beads_units_share_the_workspace() -> None:
    """Dispatcher, legacy dispatcher, control worker and beat run in one writable workspace."""
    folders = set()
    for name in BEADS_UNITS:
        unit = parse_unit(UNITS / name)
        folder = one(unit, "Service", "WorkingDirectory")
        folders.add(folder)
        assert folder in one(unit, "Service", "ReadWritePaths").split(), name
    assert folders == {"/srv/ygg/workspace"}


def test_the_two_dispatchers_conflict() -> None:
    """Starting the legacy dispatcher stops the Celery one, and the other way round."""
    celery = parse_unit(UNITS / "ygg-dispatcher.service")
    legacy = parse_unit(UNITS / "ygg-dispatcher-legacy.service")
    assert one(celery, "Unit", "Conflicts") == "ygg-dispatcher-legacy.service"
    assert one(legacy, "Unit", "Conflicts") == "ygg-dispatcher.service"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    """systemd-analyze verify reports nothing (ExecStart pointed at this venv's ygg)."""
    ygg = Path(sys.executable).with_name("ygg")
    assert ygg.is_file(), "the venv's ygg script is missing: pip install -e ."
    for path in UNITS.glob("*.service"):
        text = path.read_text().replace("/opt/ygg/venv/bin/ygg", str(ygg))
        target = path.name.replace("@.service", "@skadi-code.service")
        (tmp_path / target).write_text(text)
    files = sorted(str(p) for p in tmp_path.iterdir())
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *files],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_readme_enables_each_host_worker_with_matching_ollama_parallelism() -> None:
    """ops/README.md has, per GPU host, the enable command and OLLAMA_NUM_PARALLEL = its slots."""
    readme = (OPS / "README.md").read_text()
    sections = re.split(r"^## ", readme, flags=re.MULTILINE)
    for queue, slots in FLEET.items():
        machine = queue.split("-")[0]
        (section,) = [s for s in sections if re.match(rf"\d+\. {machine} ", s)]
        assert f"sudo systemctl enable --now ygg-worker@{queue}" in section, queue
        assert f"OLLAMA_NUM_PARALLEL={slots}\\n" in section, queue
        assert re.findall(r"OLLAMA_NUM_PARALLEL=(\d+)", section) == [str(slots)], queue


# --- Prometheus -------------------------------------------------------------------------------


def test_metric_name_extraction() -> None:
    """The PromQL reader finds metric names and skips functions, labels, keywords and ranges."""
    expr = (
        'avg_over_time(ygg_gpu_utilization{host="a b"}[10m]) < 0.2 and on (host) '
        "sum by (host, le) (rate(ygg_task_duration_seconds_bucket[5m])) > 1e3 or up == 0"
    )
    assert metric_names(expr) == {
        "ygg_gpu_utilization",
        "ygg_task_duration_seconds_bucket",
        "up",
    }


def test_alert_rules_cover_the_fleet_and_use_only_served_metrics() -> None:
    """alerts.yml has the agreed alerts, and each reads only metrics the dispatcher serves."""
    rules = alert_rules()
    assert {rule["alert"] for rule in rules} == {
        "YggDispatcherDown",
        "YggHostDown",
        "YggWorkerOffline",
        "YggQueueDepthHigh",
        "YggGpuIdleWhileQueued",
        "YggSlotsBelowConfigured",
        "YggServerQueueWhileFull",
        "YggCloudSpendNearBudget",
    }
    for rule in rules:
        names = metric_names(rule["expr"])
        assert names, rule["alert"]
        assert names <= KNOWN_METRICS, (rule["alert"], names - KNOWN_METRICS)
        assert rule["labels"]["severity"] in {"critical", "warning"}
        assert rule["annotations"]["summary"]


def test_cloud_spend_alert_is_80_percent_of_the_example_budget() -> None:
    """The spend alert's threshold is 80 % of cloud.daily_budget_usd in ygg.toml.example."""
    (rule,) = [r for r in alert_rules() if r["alert"] == "YggCloudSpendNearBudget"]
    threshold = float(rule["expr"].rsplit(">", 1)[1])
    assert threshold == pytest.approx(0.8 * load_settings(EXAMPLE_TOML).cloud.daily_budget_usd)


def test_prometheus_scrapes_the_dispatcher_flower_and_gpu_exporters() -> None:
    """prometheus.yml scrapes metrics_port and Flower, and node/dcgm on every GPU host."""
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    assert config["rule_files"] == ["alerts.yml"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    settings = load_settings(EXAMPLE_TOML)

    def targets(job: str) -> list[tuple[str, str | None]]:
        return [
            (target, group.get("labels", {}).get("host"))
            for group in jobs[job]["static_configs"]
            for target in group["targets"]
        ]

    assert targets("ygg-dispatcher") == [(f"127.0.0.1:{settings.metrics_port}", None)]
    assert targets("flower") == [(f"{settings.flower.address}:{settings.flower.port}", None)]
    for job, port in (("node", 9100), ("dcgm", 9400)):
        expected = {(f"{queue.split('-')[0]}.lan:{port}", queue) for queue in FLEET}
        assert set(targets(job)) == expected, job
    (down,) = [r for r in alert_rules() if r["alert"] == "YggDispatcherDown"]
    assert 'job="ygg-dispatcher"' in down["expr"]


PROMTOOL = shutil.which("promtool")


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (Debian package prometheus)")
@pytest.mark.parametrize(
    "args",
    [
        ["check", "config", "prometheus.yml"],
        ["check", "rules", "alerts.yml"],
        ["test", "rules", "alerts_test.yml"],
    ],
    ids=["check-config", "check-rules", "test-rules"],
)
def test_promtool_accepts_config_rules_and_rule_tests(args: list[str]) -> None:
    """promtool validates the scrape config and rules, and the alert unit tests pass."""
    assert PROMTOOL is not None
    done = subprocess.run(
        [PROMTOOL, *args],
        cwd=PROMETHEUS,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
