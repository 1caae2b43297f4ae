"""A throwaway ``rabbitmq-server`` node on loopback, for tests that need a real AMQP broker.

Everything the node touches is its own: a node name, the AMQP and distribution ports, an
``epmd`` on a port of its own (started and stopped with the node, so it clashes with no
RabbitMQ or Erlang node already on the machine), a data folder (Mnesia, logs, cookie, config).
The system's ``/etc/rabbitmq`` files are not read. The node can be stopped and started again on
the same name, ports and data, which keeps durable queues and persistent messages, as an operator's
``systemctl restart rabbitmq-server`` does::

    with RabbitServer() as rabbit:
        settings = load_settings(broker_url=rabbit.url(), result_backend=redis.url(1))
        rabbit.restart()

:func:`rabbitmq_missing` says why no node can be started here (for ``pytest.skip``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

from yggcelery.testing.redis import free_port, wait_for_port

log = logging.getLogger(__name__)

#: Where Debian's package keeps the scripts themselves (``/usr/sbin``'s are wrappers that
#: switch to the ``rabbitmq`` user, who cannot write to a test's folders).
DEBIAN_SCRIPTS = Path("/usr/lib/rabbitmq/bin")
#: A node boots in 3-10 s on a busy machine; the first boot creates its Mnesia schema.
START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 60.0


def rabbitmq_scripts() -> Path | None:
    """The folder holding ``rabbitmq-server`` and ``rabbitmqctl``; None where not installed."""
    if (DEBIAN_SCRIPTS / "rabbitmq-server").exists():
        return DEBIAN_SCRIPTS
    found = shutil.which("rabbitmq-server")
    return Path(found).parent if found else None


def rabbitmq_missing() -> str | None:
    """Why no throwaway node can be started here, or None when one can."""
    if rabbitmq_scripts() is None:
        return "rabbitmq-server is not installed (Debian: apt-get install rabbitmq-server)"
    if shutil.which("epmd") is None:
        return "epmd (Erlang's port mapper, part of erlang-base) is not on PATH"
    return None


class RabbitServer:
    """One ``rabbitmq-server`` node (and its own ``epmd``) as child processes, stopped on exit."""

    def __init__(self, *, port: int | None = None, data_dir: Path | None = None) -> None:
        scripts = rabbitmq_scripts()
        if scripts is None:
            raise FileNotFoundError(rabbitmq_missing())
        self.scripts = scripts
        self.port = port or free_port()
        self.dist_port = free_port()
        self.epmd_port = free_port()
        self.node = f"ygg-test-{self.port}@localhost"
        self._tmp = None if data_dir else tempfile.TemporaryDirectory(prefix="ygg-rabbit-")
        self.data_dir = Path(data_dir or self._tmp.name)  # type: ignore[union-attr]
        self._proc: subprocess.Popen[bytes] | None = None
        self._epmd: subprocess.Popen[bytes] | None = None
        self._env = self._node_env()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<RabbitServer {self.node} port={self.port} {state}>"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def url(self) -> str:
        """The AMQP URL of the node's default vhost (user guest, allowed on loopback only)."""
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "log" / f"{self.node}.log"

    def _node_env(self) -> dict[str, str]:
        """The variables that give the node its own name, ports and files (see the rabbitmq-env
        script); the cookie is read from ``$HOME``, so ``rabbitmqctl`` finds it too."""
        home = self.data_dir / "home"
        files = {
            "RABBITMQ_MNESIA_BASE": self.data_dir / "mnesia",
            "RABBITMQ_LOG_BASE": self.data_dir / "log",
            "RABBITMQ_CONFIG_FILE": self.data_dir / "rabbitmq.conf",
            "RABBITMQ_ADVANCED_CONFIG_FILE": self.data_dir / "advanced.config",
            "RABBITMQ_CONF_ENV_FILE": self.data_dir / "rabbitmq-env.conf",
            "RABBITMQ_ENABLED_PLUGINS_FILE": self.data_dir / "enabled_plugins",
            "RABBITMQ_PID_FILE": self.data_dir / "rabbitmq.pid",
        }
        return {
            **os.environ,
            **{name: str(path) for name, path in files.items()},
            "HOME": str(home),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }

    def _write_files(self) -> None:
        home = self.data_dir / "home"
        if home.exists():  # a restart: same cookie, same config
            return
        home.mkdir(parents=True)
        cookie = home / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(16))
        cookie.chmod(0o400)  # Erlang refuses a cookie others can read
        (self.data_dir / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\n"
        )
        (self.data_dir / "enabled_plugins").write_text("[].\n")  # no plugins: a faster boot
        (self.data_dir / "rabbitmq-env.conf").write_text("")

    def _start_epmd(self) -> None:
        if self._epmd is not None and self._epmd.poll() is None:
            return
        args = ["epmd", "-port", str(self.epmd_port), "-address", "127.0.0.1"]
        self._epmd = subprocess.Popen(
            args, env=self._env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for_port(self.epmd_port)

    def start(self) -> RabbitServer:
        """Start the node (and its ``epmd``); returns once it accepts AMQP connections."""
        self._write_files()
        self._start_epmd()
        with (self.data_dir / "server.out").open("ab") as out:
            self._proc = subprocess.Popen(
                [str(self.scripts / "rabbitmq-server")],
                env=self._env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        try:
            wait_for_port(self.port, timeout_s=START_TIMEOUT_S)
        except TimeoutError as exc:
            self.stop(kill=True)
            tail = self._tail()
            raise TimeoutError(f"rabbitmq node {self.node} did not start: {tail}") from exc
        log.debug("rabbitmq node %s started on port %s", self.node, self.port)
        return self

    def _tail(self) -> str:
        out = self.data_dir / "server.out"
        text = out.read_text(errors="replace") if out.exists() else ""
        return text[-2000:] or "(no output)"

    def stop(self, *, kill: bool = False) -> None:
        """Stop the node: SIGTERM to its process group (a clean shutdown that keeps durable
        queues and persistent messages), or SIGKILL with ``kill=True``."""
        if self._proc is None:
            return
        sig = signal.SIGKILL if kill else signal.SIGTERM
        if self._proc.poll() is None:
            os.killpg(self._proc.pid, sig)
        try:
            self._proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._proc.pid, signal.SIGKILL)  # what is left of the group (port helpers)
        self._proc = None

    def restart(self) -> None:
        """Stop the node cleanly and start it again on the same name, ports and data."""
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        if self._epmd is not None:
            self._epmd.terminate()
            self._epmd.wait(timeout=10)
            self._epmd = None
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> RabbitServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
