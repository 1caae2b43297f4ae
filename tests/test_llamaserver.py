"""Real llama.cpp ``llama-server`` processes (SmolLM2-135M on CPU) standing in for the seed fleet.

Three servers started with ``--parallel 2/3/2`` serve every probe surface a production
llama-server has (``/health``, ``/props``, ``/slots``, ``/metrics``) and real completions through
the project's LLM client. Skipped, with the reason, only where the binary or the model is not
installed (``make install`` builds and installs both).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from yggcelery.errors import ConfigError
from yggcelery.llm import get_client
from yggcelery.settings import Settings, load_settings, to_env
from yggcelery.testing.llamaserver import (
    MODEL_ALIAS,
    LlamaFleet,
    LlamaServer,
    LlamaServerError,
    llama_server_binary,
    missing,
)
from yggcelery.testing.waiting import wait_until

SEED_PARALLEL = {"surtr-reasoning": 2, "fenrir-chat": 3, "skadi-code": 2}
CTX = 512
#: Long enough that a request still decodes while the test looks at the server.
LONG_ANSWER_TOKENS = 120
DEFERRED = "llamacpp:requests_deferred"
real_server = pytest.mark.skipif(missing() is not None, reason=str(missing()))
YGG = str(Path(sys.executable).with_name("ygg"))


@pytest.fixture(scope="module")
def fleet() -> Iterator[LlamaFleet]:
    """Three real llama-servers, 2/3/2 slots of 512 tokens each, for the whole module."""
    with LlamaFleet(SEED_PARALLEL, ctx=CTX) as started:
        yield started


@pytest.fixture
def settings(fleet: LlamaFleet) -> Settings:
    """Settings whose hosts point at the fleet (OpenAI dialect), with a generous read timeout."""
    return load_settings(hosts=fleet.host_overrides(), timeouts={"read_s": 120})


@pytest.mark.llm
@real_server
def test_ygg_tune_reports_the_fleets_2_3_2(fleet: LlamaFleet, tmp_path: Path) -> None:
    """`ygg tune` on the three real servers, ygg.toml saying 4 slots each: it finds 2, 3 and 2
    (llama.cpp's /slots) and prints the ygg.toml lines that set them."""
    hosts = {n: h.model_copy(update={"slots": 4}) for n, h in fleet.host_overrides().items()}
    settings = load_settings(hosts=hosts)
    env = {**os.environ, **to_env(settings)}
    ran = subprocess.run([YGG, "tune"], env=env, cwd=tmp_path, capture_output=True, text=True,
                         timeout=120, check=False)  # fmt: skip
    assert ran.returncode == 0, ran.stdout + ran.stderr
    for name, parallel in SEED_PARALLEL.items():
        assert f"[hosts.{name}]\nslots = {parallel}\n" in ran.stdout, ran.stdout


@pytest.mark.llm
@real_server
@pytest.mark.parametrize("name", list(SEED_PARALLEL))
def test_props_reports_the_parallelism_each_server_was_started_with(
    fleet: LlamaFleet, name: str
) -> None:
    """/props total_slots is the --parallel each server got (2, 3, 2), under the fleet's alias."""
    props = fleet[name].props()
    assert props["total_slots"] == SEED_PARALLEL[name]
    assert props["model_alias"] == MODEL_ALIAS


@pytest.mark.llm
@real_server
def test_slots_lists_every_slot_idle_with_its_share_of_the_context(fleet: LlamaFleet) -> None:
    """/slots has one entry per slot, none processing, each with ctx tokens of context."""
    slots = fleet["fenrir-chat"].slots()
    assert [slot["id"] for slot in slots] == [0, 1, 2]
    assert not any(slot["is_processing"] for slot in slots)
    assert {slot["n_ctx"] for slot in slots} == {CTX}


@pytest.mark.llm
@real_server
def test_metrics_has_the_series_the_probes_read(fleet: LlamaFleet) -> None:
    """--metrics serves requests_processing and requests_deferred, both 0 on an idle server."""
    values = fleet["surtr-reasoning"].metrics()
    assert values["llamacpp:requests_processing"] == 0
    assert values[DEFERRED] == 0


@pytest.mark.llm
@real_server
def test_the_llm_client_gets_real_model_text(fleet: LlamaFleet, settings: Settings) -> None:
    """get_client(settings).complete on a fleet host returns SmolLM2's text with token counts."""
    before = fleet["skadi-code"].metrics()["llamacpp:tokens_predicted_total"]
    answer = get_client(settings).complete(
        "skadi-code", "Name one colour of the rainbow.", max_tokens=16, temperature=0.0
    )
    assert answer.host == "skadi-code"
    assert answer.text.strip()
    assert answer.prompt_tokens and answer.completion_tokens
    after = fleet["skadi-code"].metrics()["llamacpp:tokens_predicted_total"]
    assert after - before == answer.completion_tokens


@pytest.mark.llm
@real_server
def test_a_request_beyond_the_slots_waits_inside_the_server(fleet: LlamaFleet) -> None:
    """Three requests on a 2-slot server: /slots shows 2 processing, /metrics 1 deferred."""
    server = fleet["skadi-code"]
    # Straight to llama.cpp's /completion: ignore_eos keeps each answer going for a while.
    body = {"prompt": "Once upon a time", "n_predict": LONG_ANSWER_TOKENS, "ignore_eos": True}

    def ask() -> int:
        return httpx.post(f"{server.url}/completion", json=body, timeout=240).status_code

    with ThreadPoolExecutor(max_workers=3) as pool:
        answers = [pool.submit(ask) for _ in range(3)]
        wait_until(
            lambda: server.busy_slots() == 2 and server.metrics()[DEFERRED] == 1,
            timeout_s=60, what="skadi-code: 2 slots busy and 1 request deferred", every_s=0.02,
        )  # fmt: skip
        assert [answer.result(timeout=240) for answer in answers] == [200, 200, 200]
    assert server.busy_slots() == 0


@pytest.mark.llm
@real_server
def test_a_server_that_cannot_listen_fails_with_its_log() -> None:
    """A port already taken: LlamaServerError names the server and its log, and quotes the log."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        server = LlamaServer(name="blocked", port=port)
        exited = r"llama-server blocked .* exited with 1 while starting"
        with pytest.raises(LlamaServerError, match=exited) as caught:
            server.start()
        server.close()
    assert server.log_path.name in str(caught.value)
    assert "couldn't bind HTTP server socket" in str(caught.value)


def test_no_binary_is_one_line_saying_to_run_make_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Without llama-server beside Python or on PATH, the error says to run `make install`."""
    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigError, match=r"no llama-server in .*: run `make install`"):
        llama_server_binary()
    assert missing() is not None and "make install" in str(missing())
