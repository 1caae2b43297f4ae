"""The simulator's pacing of a streamed answer (pure; the clock is faked, see the test)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from yggcelery.sim import answer

LATE_S = 0.005  # how late every sleep ends, as on a loaded machine


def test_a_streamed_answer_takes_its_service_time_however_late_each_sleep_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Mocked at the edge: the module's event-loop clock and ``sleep`` are a virtual clock whose
    every sleep ends ``LATE_S`` late (a real loaded machine's lateness cannot be set). Twenty
    words over 1 s must end at 1 s plus one lateness, not twenty, and no word may come early."""
    now = [0.0]

    async def late_sleep(seconds: float) -> None:
        now[0] += seconds + LATE_S

    loop = SimpleNamespace(time=lambda: now[0])
    fake = SimpleNamespace(sleep=late_sleep, get_running_loop=lambda: loop)
    monkeypatch.setattr(answer, "asyncio", fake)
    pieces = [f"w{n} " for n in range(20)]

    async def stream() -> list[tuple[str, float]]:
        return [(piece, now[0]) async for piece in answer.paced(pieces, real_s=1.0)]

    sent = asyncio.run(stream())
    assert [piece for piece, _ in sent] == pieces
    assert all(at >= (n + 1) * 0.05 - 1e-9 for n, (_, at) in enumerate(sent))
    assert sent[-1][1] == pytest.approx(1.0 + LATE_S)


def test_an_answer_of_no_pieces_yields_nothing() -> None:
    async def stream() -> list[str]:
        return [piece async for piece in answer.paced([], real_s=1.0)]

    assert asyncio.run(stream()) == []
