"""`ygg flower` in a real browser: headless Debian Chromium, driven by Playwright.

Starts Redis, the simulated hosts, the three host workers and `ygg flower` (a subprocess with a
known password on a free port), logs in with HTTP basic auth, and reads the workers and their
pool sizes from Flower's own pages. A screenshot goes to tests/artifacts/flower.png (gitignored).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from yggcelery.settings import Settings, to_env
from yggcelery.sim import SimFleet
from yggcelery.testing.cluster import LocalCluster
from yggcelery.testing.redis import free_port, wait_for_port

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).parent / "artifacts"
SLOTS = {"surtr-reasoning": 2, "fenrir-chat": 3, "skadi-code": 2}
PASSWORD = "s3cret-flower-pw"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

if not Path(CHROMIUM).exists():  # pragma: no cover - depends on the machine
    pytest.skip(f"{CHROMIUM} is absent (apt-get install chromium)", allow_module_level=True)
pytest.importorskip("playwright.sync_api")
# after the skips above: without Chromium or playwright the module is skipped, not an error
from playwright.sync_api import Error as PlaywrightError  # noqa: E402 (after the skips)
from playwright.sync_api import Page, sync_playwright  # noqa: E402 (after the skips)


@pytest.fixture
def flower_url(
    make_settings: Callable[..., Settings],
    sim_fleet: Callable[..., SimFleet],
    local_cluster: Callable[..., LocalCluster],
    tmp_path: Path,
) -> Iterator[str]:
    """`ygg flower` for a cluster of the three host workers; its base URL."""
    port = free_port()
    settings = make_settings(fleet=sim_fleet(), flower={"port": port, "password": PASSWORD})
    local_cluster(settings, control=False)
    env = {**os.environ, **to_env(settings)}
    with (tmp_path / "flower.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "yggcelery", "flower"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        wait_for_port(port, timeout_s=60)
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def test_flower_shows_three_workers_with_their_slots_behind_basic_auth(flower_url: str) -> None:
    """With the password: three workers online, pools of 2, 3 and 2; without it: 401."""
    node = socket.gethostname()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            anonymous = browser.new_context()
            refused = anonymous.request.get(f"{flower_url}/workers")
            assert refused.status == 401
            assert refused.headers["www-authenticate"].startswith("Basic")
            # Headless Chromium cannot show the login prompt: navigation fails on the challenge.
            with pytest.raises(PlaywrightError, match="AUTH"):
                anonymous.new_page().goto(f"{flower_url}/workers")

            context = browser.new_context(
                http_credentials={"username": "ygg", "password": PASSWORD},
                viewport={"width": 1280, "height": 800},
            )
            page = context.new_page()
            rows = wait_for_workers(page, f"{flower_url}/workers", count=len(SLOTS))
            assert sorted(rows) == sorted(f"{host}@{node}" for host in SLOTS)
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "flower.png"), full_page=True)

            for host, slots in SLOTS.items():
                page.goto(f"{flower_url}/worker/{host}@{node}")
                cell = page.locator("tr", has_text="Max concurrency").locator("td").nth(1)
                assert (cell.text_content() or "").strip() == str(slots), host
            page.screenshot(path=str(ARTIFACTS / "flower-worker.png"), full_page=True)
        finally:
            browser.close()


def wait_for_workers(page: Page, url: str, *, count: int, timeout_s: float = 60) -> list[str]:
    """Reload the workers page until ``count`` rows say Online; their worker names."""
    deadline = time.monotonic() + timeout_s
    names: list[str] = []
    while time.monotonic() < deadline:
        response = page.goto(url)
        assert response is not None and response.status == 200
        rows = page.locator("#workers-table tbody tr")
        names = [
            (rows.nth(i).locator("td").first.text_content() or "").strip()
            for i in range(rows.count())
            if "online" in (rows.nth(i).text_content() or "").lower()
        ]
        if len(names) >= count:
            return names
        time.sleep(1)
    raise AssertionError(f"Flower showed {names} online after {timeout_s}s")
