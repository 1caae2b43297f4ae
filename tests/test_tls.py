"""TLS to Redis for real: a throwaway CA, a redis-server with only a TLS port, a whole cluster.

The certificates are made with the ``openssl`` command line (no Python dependency for a test);
the broker and the result backend are ``rediss://`` URLs that name the CA
(``ssl_cert_reqs=required&ssl_ca_certs=...``), as an operator's would for a private CA.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from yggcelery.beads import JsonlStore
from yggcelery.cli.errors import EXIT_ERROR
from yggcelery.dispatch.celery import CeleryDispatcher
from yggcelery.settings import Settings
from yggcelery.sim import SimFleet
from yggcelery.testing.cluster import LocalCluster
from yggcelery.testing.faults import DispatcherThread, audit, requests_by_bead
from yggcelery.testing.redis import RedisServer, ServerTls

HOST = "skadi-code"
YGG = Path(sys.executable).with_name("ygg")

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl command")


def openssl(*args: str | Path, cwd: Path) -> None:
    subprocess.run(["openssl", *map(str, args)], cwd=cwd, check=True, capture_output=True)


def make_ca(folder: Path, name: str) -> tuple[Path, Path]:
    """A self-signed CA (certificate, key) valid for a day."""
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", f"/CN={name}", "-keyout", key, "-out", cert, cwd=folder)  # fmt: skip
    return cert, key


def make_server_cert(folder: Path, ca: tuple[Path, Path]) -> tuple[Path, Path]:
    """A server certificate for 127.0.0.1 and localhost, signed by ``ca``."""
    cert, key, csr = folder / "server.pem", folder / "server.key", folder / "server.csr"
    ext = folder / "server.ext"
    ext.write_text("subjectAltName = IP:127.0.0.1, DNS:localhost\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
            "-keyout", key, "-out", csr, cwd=folder)  # fmt: skip
    openssl("x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial",
            "-days", "1", "-extfile", ext, "-out", cert, cwd=folder)  # fmt: skip
    return cert, key


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server listening on a TLS port only, its certificate signed by a test CA."""
    certs = tmp_path / "certs"
    certs.mkdir()
    ca = make_ca(certs, "ygg-test-ca")
    cert, key = make_server_cert(certs, ca)
    with RedisServer(tls=ServerTls(cert_file=cert, key_file=key, ca_file=ca[0])) as server:
        yield server


def test_a_cluster_over_tls_only_redis_closes_its_beads(
    tls_redis: RedisServer,
    make_settings: Callable[..., Settings],
    sim_fleet: Callable[..., SimFleet],
    local_cluster: Callable[..., LocalCluster],
) -> None:
    """Broker and result backend on `rediss://` (the server has no plain port): a host worker,
    the control worker and the dispatcher run over TLS, and every bead closes once."""
    fleet = sim_fleet(time_scale=0.02)
    settings = make_settings(fleet=fleet, broker_url=tls_redis.url(0),
                             result_backend=tls_redis.url(1))  # fmt: skip
    settings.beads.dir.mkdir(parents=True, exist_ok=True)
    store = JsonlStore(settings.beads.jsonl_path)
    meta = {"ygg": {"service_s": 20.0}}
    ids = [store.create(f"code {n}", issue_type="bug", metadata=meta, actor="me").id
           for n in range(4)]  # fmt: skip
    local_cluster(settings, hosts=[HOST])

    with DispatcherThread(CeleryDispatcher(settings, store)) as loop:
        assert loop.wait(timeout_s=90), "dispatcher did not finish"
        assert loop.error is None, loop.error

    report = audit(store)
    assert report.ok, report.problems
    assert report.statuses == {"closed": len(ids)}
    assert set(requests_by_bead(fleet).values()) == {1}
    with pytest.raises(redis.ConnectionError):  # nothing could have talked to it in plain text
        redis.Redis(port=tls_redis.port, socket_timeout=5).ping()


def test_a_wrong_ca_is_one_error_line_naming_the_url_and_the_ca_file(
    tls_redis: RedisServer, tmp_path: Path
) -> None:
    """`ygg status` with a CA that did not sign the server's certificate: exit 2, no traceback,
    one `ygg: error:` line saying the certificate did not verify and which CA file to check."""
    assert tls_redis.tls is not None
    wrong_ca, _ = make_ca(tmp_path, "some-other-ca")
    env = {k: v for k, v in os.environ.items() if not k.startswith("YGG_")}
    right_ca = str(tls_redis.tls.ca_file)
    env["YGG_BROKER_URL"] = tls_redis.url(0).replace(right_ca, str(wrong_ca))
    env["YGG_RESULT_BACKEND"] = tls_redis.url(1).replace(right_ca, str(wrong_ca))
    ran = subprocess.run([str(YGG), "status"], env=env, cwd=tmp_path, capture_output=True,
                         text=True, timeout=120, check=False)  # fmt: skip

    assert "Traceback" not in ran.stderr + ran.stdout, ran.stderr[-3000:]
    assert ran.returncode == EXIT_ERROR, (ran.returncode, ran.stderr[-3000:])
    lines = [line for line in ran.stderr.splitlines() if line.startswith("ygg: error:")]
    assert len(lines) == 1 and ran.stderr.splitlines()[-1] == lines[0], ran.stderr[-3000:]
    assert "TLS to the broker or result backend (broker rediss://127.0.0.1:" in lines[0]
    assert "certificate verify failed" in lines[0]
    assert f"check that {wrong_ca} (ssl_ca_certs in the URL)" in lines[0]
