"""How many requests ran at once, from when each was sent and answered (pure, no server)."""

from __future__ import annotations

import threading

import pytest

from yggcelery.capacity.measure import concurrency, measure, requests_for


def waves(parallel: int, requests: int, *, service: float = 1.0) -> list[float]:
    """Round trips of ``requests`` sent at once to a server running ``parallel``, FIFO."""
    return [service * (1 + i // parallel) for i in range(requests)]


@pytest.mark.parametrize(("parallel", "requests"), [(1, 6), (2, 6), (3, 6), (4, 4), (5, 8)])
def test_waves_of_answers_give_the_servers_parallelism(parallel: int, requests: int) -> None:
    """Answers in waves of P, one service time apart: P (capped at the requests sent)."""
    assert concurrency(waves(parallel, requests)) == min(parallel, requests)


def test_uneven_requests_still_read_the_first_wave() -> None:
    """A real llama-server, 2 slots, 4 requests: .49/.55 then .74/.77 s reads 2, not 4."""
    assert concurrency([0.549, 0.767, 0.740, 0.490]) == 2


def test_a_cpu_server_whose_batch_is_slower_still_reads_its_slots() -> None:
    """2 slots on one CPU thread: a batch of 2 takes 2x as long, the next wave 4x: still 2."""
    assert concurrency([2.0, 2.0, 4.0, 4.0, 6.0, 6.0]) == 2


def test_no_requests_ran_none_at_once() -> None:
    """An empty measurement is 0."""
    assert concurrency([]) == 0


def test_measure_sends_the_requests_at_once_and_counts_overlap() -> None:
    """measure(): a sender that lets 2 through at a time reads 2 of 6, not at least."""
    gate = threading.Semaphore(2)
    done = threading.Event()

    def send() -> object:
        with gate:
            done.wait(0.2)  # each request holds its "slot" 0.2 s (a service time, not a sync)
        return None

    found = measure(send, requests=6)
    assert (found.slots, found.at_least, found.how) == (2, False, "measured")
    assert found.source == "2 of 6 concurrent requests ran at once"


def test_requests_default_to_twice_the_slots_and_at_least_two() -> None:
    """0 means twice the slots (at least 2); a configured count is used as is."""
    assert [requests_for(1, 0), requests_for(3, 0), requests_for(3, 5)] == [2, 6, 5]
