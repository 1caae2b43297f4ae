"""The Docker files in ``docker/``: the compose cluster and the image.

No Docker engine runs here, so nothing is built or started: the compose file is checked with
the compose client (``docker-compose config``) where one is installed, and by reading its YAML;
its Redis command is run against a local ``redis-server``; the Dockerfile is read.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import click
import pytest
import redis
import yaml  # type: ignore[import-untyped]  # no types-PyYAML in the test extra

from yggcelery.cli.main import cli
from yggcelery.settings import Settings, load_settings
from yggcelery.testing.redis import free_port, redis_executable, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "compose.yaml"

#: The seed fleet: host queue -> worker concurrency (its GPU slots).
FLEET = {"surtr-reasoning": 2, "fenrir-chat": 3, "skadi-code": 2}
PASSWORDS = {"YGG_REDIS_PASSWORD": "c0ffee", "YGG_FLOWER__PASSWORD": "flower-secret"}

COMPOSE_CLIENT = shutil.which("docker-compose")
needs_compose = pytest.mark.skipif(
    COMPOSE_CLIENT is None, reason="no docker-compose client installed (Debian: docker-compose)"
)


@pytest.fixture(autouse=True)
def _no_ygg_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings and compose variables come from the files under test, not the caller's env."""
    for name in list(os.environ):
        if name.startswith("YGG_"):
            monkeypatch.delenv(name)


def compose() -> dict[str, Any]:
    """compose.yaml as YAML (anchors and merge keys resolved, as compose resolves them)."""
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def services() -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = compose()["services"]
    return result


def run_compose(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    assert COMPOSE_CLIENT is not None
    clean = {k: v for k, v in os.environ.items() if not k.startswith("YGG_")}
    return subprocess.run(
        [COMPOSE_CLIENT, "-f", str(COMPOSE), *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@needs_compose
@pytest.mark.parametrize("profiles", [[], ["sim"], ["cloud"], ["sim", "cloud"]], ids=str)
def test_compose_config_is_valid(profiles: list[str]) -> None:
    """`docker-compose -f docker/compose.yaml config -q` accepts the file, with each profile."""
    flags = [arg for profile in profiles for arg in ("--profile", profile)]
    done = run_compose(*flags, "config", "-q", env=PASSWORDS)
    assert done.returncode == 0, done.stderr


@needs_compose
@pytest.mark.parametrize("missing", sorted(PASSWORDS))
def test_compose_refuses_to_start_without_a_password(missing: str) -> None:
    """Without the Redis or the Flower password, compose stops with a message naming it."""
    env = {k: v for k, v in PASSWORDS.items() if k != missing}
    done = run_compose("config", "-q", env=env)
    assert done.returncode != 0
    assert missing in done.stderr


def test_one_worker_per_host_with_its_queue_and_slots() -> None:
    """Each host worker runs `ygg worker <queue>`; the mounted ygg.toml gives it its slots."""
    workers = {
        svc["command"][1]: name
        for name, svc in services().items()
        if svc.get("command", [None])[0] == "worker" and "profiles" not in svc
    }
    assert set(workers) == {*FLEET, "control"}
    for queue, name in workers.items():
        assert services()[name]["command"] == ["worker", queue]
    settings = load_settings(DOCKER / "ygg.toml")
    assert {name: host.slots for name, host in settings.hosts.items()} == FLEET


def test_every_ygg_service_reads_the_mounted_settings() -> None:
    """All ygg containers mount docker/ygg.toml at YGG_CONFIG and get the broker URL from env."""
    ygg = {n: s for n, s in services().items() if s.get("image") == "yggcelery:local"}
    ygg.pop("pod")
    assert {"dispatcher", "beat", "worker-control", "flower", "sim"} <= ygg.keys()
    for name, svc in ygg.items():
        env = svc["environment"]
        assert env["YGG_CONFIG"] == "/etc/ygg/ygg.toml", name
        assert "${YGG_TOML:-./ygg.toml}:/etc/ygg/ygg.toml:ro" in svc["volumes"], name
        assert "${YGG_REDIS_PASSWORD:?" in env["YGG_BROKER_URL"], name
        assert env["YGG_BROKER_URL"].endswith("@127.0.0.1:6379/0"), name
        assert env["YGG_RESULT_BACKEND"].endswith("@127.0.0.1:6379/1"), name
        assert svc["network_mode"] == "service:pod", name


YGG_COMMANDS = sorted(
    {
        " ".join(svc["command"])
        for svc in yaml.safe_load(COMPOSE.read_text())["services"].values()
        if svc.get("image") == "yggcelery:local" and "command" in svc
    }
)


@pytest.mark.parametrize("command_line", YGG_COMMANDS)
def test_service_command_parses_with_the_ygg_cli(command_line: str) -> None:
    """Each ygg service's command (after ENTRYPOINT ygg) is a ygg subcommand with valid flags."""
    name, *args = command_line.split()
    parent = click.Context(cli, info_name="ygg")
    command = cli.get_command(parent, name)
    assert command is not None, f"no `ygg {name}` command"
    with command.make_context(name, args, parent=parent):
        pass  # parsing alone rejects unknown flags and missing arguments


def test_host_workers_stop_warmly() -> None:
    """Host workers get longer than a task's hard time limit to finish on `docker stop`."""
    hard_s = Settings().timeouts.task_hard_s
    for name, svc in services().items():
        if name.startswith("worker-") and name != "worker-control":
            assert svc["stop_signal"] == "SIGTERM", name
            assert float(svc["stop_grace_period"].removesuffix("s")) > hard_s, name


def test_flower_and_metrics_are_published_on_loopback_only() -> None:
    """No port is published on 0.0.0.0: Flower and the metrics go to the host's 127.0.0.1."""
    published = [
        (name, str(port)) for name, svc in services().items() for port in svc.get("ports", [])
    ]
    assert published, "nothing published: Flower must be reachable from the host"
    for name, port in published:
        assert port.startswith("127.0.0.1:"), (name, port)
    container_ports = {port.rsplit(":", 1)[1] for _, port in published}
    assert container_ports == {"5555", "9808"}
    flower = services()["flower"]
    assert "ports" not in flower and flower["network_mode"] == "service:pod"
    assert "YGG_FLOWER__PASSWORD:?" in flower["environment"]["YGG_FLOWER__PASSWORD"]


def test_sim_and_cloud_are_opt_in_profiles() -> None:
    """Simulated hosts and the cloud worker start only with --profile sim / --profile cloud."""
    assert services()["sim"]["profiles"] == ["sim"]
    assert services()["sim"]["command"] == ["sim"]
    assert services()["worker-cloud"]["profiles"] == ["cloud"]
    settings = load_settings(DOCKER / "ygg.toml")
    assert not settings.cloud.enabled
    ports = sorted(host.port for host in settings.hosts.values())
    assert ports == [11435, 11436, 11437]  # where `ygg sim` serves them, inside the pod


def _redis_command(port: int, data_dir: Path) -> str:
    """The redis service's shell command as the container runs it, moved to ``port``."""
    script = str(services()["redis"]["command"][2]).replace("$$", "$")
    assert "--port 6379 --dir /data" in script
    script = script.replace("--port 6379 --dir /data", f"--port {port} --dir {data_dir}")
    return script.replace("exec redis-server", f"exec {redis_executable()}")


def test_compose_redis_requires_the_password_and_keeps_an_aof(tmp_path: Path) -> None:
    """The redis service's command, run here, refuses clients without the password; AOF is on."""
    port = free_port()
    password = PASSWORDS["YGG_REDIS_PASSWORD"]
    env = {"PATH": os.environ["PATH"], "REDISCLI_AUTH": password}
    server = subprocess.Popen(
        ["sh", "-c", _redis_command(port, tmp_path)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=port).ping()
        client = redis.Redis(port=port, password=password)
        assert client.ping()
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert str(client.config_get("bind")["bind"]).split() == ["127.0.0.1"]
        client.close()
    finally:
        server.terminate()
        server.wait(timeout=30)


def _dockerfile() -> list[tuple[str, str]]:
    instructions = []
    for line in (DOCKER / "Dockerfile").read_text().replace("\\\n", " ").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            keyword, _, rest = line.strip().partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def test_dockerfile_installs_the_package_as_a_non_root_ygg_entrypoint() -> None:
    """python:3.11-slim, copies what the package build needs, runs as ygg, ENTRYPOINT ["ygg"]."""
    steps = _dockerfile()
    assert steps[0] == ("FROM", "python:3.11-slim")
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    needed = {
        "pyproject.toml",
        pyproject["project"]["readme"],
        *pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"],
    }
    copied = {src for kw, rest in steps if kw == "COPY" for src in rest.split()[:-1]}
    assert needed <= copied
    users = [rest for kw, rest in steps if kw == "USER"]
    assert users and users[-1] not in {"root", "0"}
    assert ("ENTRYPOINT", '["ygg"]') in steps
    keep = (DOCKER / "Dockerfile.dockerignore").read_text().split()
    assert {f"!{path.rstrip('/')}" for path in needed} <= {k.rstrip("/") for k in keep}
