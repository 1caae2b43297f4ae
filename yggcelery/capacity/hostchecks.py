"""Doctor checks of one host from its :class:`ServerReading` (pure): server, model, parallelism.

The parallelism check is the one that matters most. Configured slots above what the server runs
at once make the extra requests wait inside the server, first come first served, where Beads
priorities are lost; slots below it leave the GPU idle. Either way it fails with both numbers
and what to change. vLLM's reported figure is how many full-length requests its KV cache holds,
a floor: more is fine there, fewer is not.
"""

from __future__ import annotations

from yggcelery.capacity.check import Check, failed, passed
from yggcelery.capacity.reading import Parallelism, ServerReading
from yggcelery.settings import HostSettings


def host_checks(name: str, host: HostSettings, reading: ServerReading) -> list[Check]:
    """The server, model and parallelism checks of host ``name`` (only the first if it is down)."""
    server = check_server(name, host, reading)
    if not reading.ok:
        return [server]
    return [server, check_model(name, host, reading), check_parallelism(name, host, reading)]


def check_server(name: str, host: HostSettings, reading: ServerReading) -> Check:
    """The host's model server answers and is a server the probes know."""
    title = f"server {name}"
    if not reading.ok:
        return failed(
            title,
            reading.error or "no answer",
            f"start the model server at {host.base_url}, or fix hosts.{name}.base_url",
        )
    notes = f" ({'; '.join(reading.notes)})" if reading.notes else ""
    return passed(title, f"{reading.kind} at {host.base_url} answers{notes}")


def check_model(name: str, host: HostSettings, reading: ServerReading) -> Check:
    """The configured model is on the server (and whether it is in memory now)."""
    title = f"model {name}"
    if reading.installed is False:
        return failed(
            title, f"{host.model} is not on the {reading.kind} server", _pull(name, host, reading)
        )
    if reading.kind == "llamacpp" and reading.model not in (None, host.model):
        return passed(title, f"serves {reading.model} (llama.cpp answers to any model name)")
    state = "loaded" if reading.loaded else "installed, not loaded (it loads on the first request)"
    context = f", context {reading.context} tokens" if reading.context else ""
    return passed(title, f"{host.model} {state}{context}")


def check_parallelism(name: str, host: HostSettings, reading: ServerReading) -> Check:
    """The server runs as many requests at once as the host's configured slots."""
    title = f"parallelism {name}"
    found, slots = reading.parallel, host.slots
    if found is None:
        if reading.kind == "vllm":
            return passed(title, "vLLM schedules by KV cache; its size is not in /metrics")
        why = "; ".join(n for n in reading.notes if "parallel" in n)
        why = why or f"{reading.kind} does not report it and it was not measured"
        return failed(title, f"unknown ({why}), slots = {slots}", _unknown_fix(name, reading))
    if found.slots == slots or (reading.kind == "vllm" and found.slots > slots):
        return passed(title, f"server runs {found}, slots = {slots}")
    if found.slots < slots:
        waiting = slots - found.slots
        line = (
            f"server runs {found}, slots = {slots}: {waiting} of every {slots} requests would"
            " wait inside the server in arrival order, Beads priorities lost"
        )
        return failed(title, line, fix_for(name, reading, found))
    line = f"server runs {found}, slots = {slots}: {found.slots - slots} slots idle"
    return failed(title, line, fix_for(name, reading, found))


def fix_for(name: str, reading: ServerReading, found: Parallelism) -> str:
    """What to change when the server's parallelism and ``hosts.<name>.slots`` disagree."""
    slots_line = f"set hosts.{name}.slots = {found.slots} (ygg tune --write ygg.toml)"
    if reading.kind == "llamacpp":
        return f"{slots_line}, or restart llama-server with --parallel to match"
    if reading.kind == "ollama":
        return (
            f"{slots_line}, or set OLLAMA_NUM_PARALLEL on the server (Ollama falls back to 1"
            " request when memory is short)"
        )
    if reading.kind == "vllm":
        return f"{slots_line}, or give vLLM more KV cache (--gpu-memory-utilization)"
    return slots_line


def _pull(name: str, host: HostSettings, reading: ServerReading) -> str:
    if reading.kind == "ollama":
        return f"run `ollama pull {host.model}` on that machine, or fix hosts.{name}.model"
    return f"start the server with {host.model}, or set hosts.{name}.model to what it serves"


def _unknown_fix(name: str, reading: ServerReading) -> str:
    if not any("not measured:" in note for note in reading.notes):
        return "measure it (ygg doctor measures: it sends a few short requests)"
    if reading.kind == "openai":
        return (
            f"set hosts.{name}.server to the real server (llamacpp, vllm, ollama) if it is one,"
            " or check that short requests succeed"
        )
    return "check that short requests to the server succeed, then run ygg doctor again"
