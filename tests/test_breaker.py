"""The circuit breaker, in memory and shared through a real Redis."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest
import redis

from yggcelery.errors import CircuitOpen, TransientError
from yggcelery.llm.breaker import (
    BreakerState,
    CircuitBreaker,
    CircuitState,
    MemoryBreakerState,
    RedisBreakerState,
)
from yggcelery.testing.redis import RedisServer

K = 3
COOLDOWN_S = 30.0


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    url = redis_server.url(0)
    yield url
    with redis.Redis.from_url(url) as client:
        client.flushdb()


@pytest.fixture(params=["memory", "redis"])
def make_state(request: pytest.FixtureRequest) -> Iterator[Callable[[], BreakerState]]:
    """A factory of states that share one store (one dict, or one Redis database)."""
    if request.param == "memory":
        shared = MemoryBreakerState()
        yield lambda: shared
        return
    url = request.getfixturevalue("redis_url")
    clients: list[redis.Redis] = []

    def make() -> BreakerState:
        clients.append(redis.Redis.from_url(url))
        return RedisBreakerState(clients[-1])

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def breaker(state: BreakerState, clock: FakeClock) -> CircuitBreaker:
    return CircuitBreaker(state, failures=K, cooldown_s=COOLDOWN_S, clock=clock)


def test_opens_after_k_consecutive_failures(
    make_state: Callable[[], BreakerState], clock: FakeClock
) -> None:
    """K-1 failures leave it closed; the K-th opens it and requests are refused."""
    cb = breaker(make_state(), clock)
    for _ in range(K - 1):
        cb.record_failure("h1")
    assert cb.state("h1") is CircuitState.CLOSED and cb.allow("h1")
    cb.record_failure("h1")
    assert cb.state("h1") is CircuitState.OPEN
    assert not cb.allow("h1")
    assert cb.state("h2") is CircuitState.CLOSED and cb.allow("h2")


def test_a_success_resets_the_count(
    make_state: Callable[[], BreakerState], clock: FakeClock
) -> None:
    """Failures must be consecutive: a success in between starts the count again."""
    cb = breaker(make_state(), clock)
    for _ in range(K - 1):
        cb.record_failure("h1")
    cb.record_success("h1")
    for _ in range(K - 1):
        cb.record_failure("h1")
    assert cb.state("h1") is CircuitState.CLOSED


class CountingState(MemoryBreakerState):
    """Counts the resets that reach the store."""

    def __init__(self) -> None:
        super().__init__()
        self.resets = 0

    def succeed(self, host: str) -> None:
        self.resets += 1
        super().succeed(host)


def test_a_success_after_a_clean_read_skips_the_reset_but_one_after_a_failure_does_not(
    clock: FakeClock,
) -> None:
    """Nothing stored when the request went: its success writes nothing. A failure this
    process recorded meanwhile (a concurrent request) is reset by the success, as before."""
    state = CountingState()
    cb = breaker(state, clock)
    assert cb.allow("h1")
    cb.record_success("h1")
    assert state.resets == 0
    assert cb.allow("h1") and cb.allow("h1")
    cb.record_failure("h1")
    cb.record_success("h1")
    assert state.resets == 1 and state.snapshot("h1").failures == 0
    cb.record_failure("h1")
    assert cb.allow("h1")  # the failure is stored: this read is not clean
    cb.record_success("h1")
    assert state.resets == 2 and state.snapshot("h1").failures == 0


def test_a_clean_host_is_trusted_for_a_while_then_read_again(
    make_state: Callable[[], BreakerState], clock: FakeClock
) -> None:
    """With ``trust_clean_s``, a breaker another process opened is seen once the window is over
    (and at once after a failure in this process)."""
    worker = CircuitBreaker(make_state(), failures=K, cooldown_s=COOLDOWN_S, clock=clock,
                            trust_clean_s=1.0)  # fmt: skip
    other = breaker(make_state(), clock)
    assert worker.allow("h1")
    for _ in range(K):
        other.record_failure("h1")
    assert not other.allow("h1")
    assert worker.allow("h1")  # within the window: not read again
    clock.now += 1.0
    assert not worker.allow("h1")


def test_probes_once_after_the_cooldown_then_closes_on_success(
    make_state: Callable[[], BreakerState], clock: FakeClock
) -> None:
    """After the cool-down exactly one probe goes; its success closes the breaker."""
    cb = breaker(make_state(), clock)
    for _ in range(K):
        cb.record_failure("h1")
    clock.now += COOLDOWN_S - 1
    assert cb.state("h1") is CircuitState.OPEN and not cb.allow("h1")
    clock.now += 1
    assert cb.state("h1") is CircuitState.HALF_OPEN
    assert [cb.allow("h1") for _ in range(3)] == [True, False, False]
    cb.record_success("h1")
    assert cb.state("h1") is CircuitState.CLOSED
    assert [cb.allow("h1") for _ in range(3)] == [True, True, True]


def test_a_failed_probe_opens_it_for_another_cooldown(
    make_state: Callable[[], BreakerState], clock: FakeClock
) -> None:
    """The probe fails: open again, and the next probe waits a full cool-down from then."""
    cb = breaker(make_state(), clock)
    for _ in range(K):
        cb.record_failure("h1")
    clock.now += COOLDOWN_S
    assert cb.allow("h1")
    cb.record_failure("h1")
    assert cb.state("h1") is CircuitState.OPEN
    clock.now += COOLDOWN_S - 1
    assert not cb.allow("h1")
    clock.now += 1
    assert cb.allow("h1")


def test_a_lost_probe_is_given_again_after_another_cooldown(
    make_state: Callable[[], BreakerState], clock: FakeClock
) -> None:
    """A probe that never reports (its worker died) does not keep the breaker shut forever."""
    cb = breaker(make_state(), clock)
    for _ in range(K):
        cb.record_failure("h1")
    clock.now += COOLDOWN_S
    assert cb.allow("h1")
    clock.now += COOLDOWN_S - 1
    assert not cb.allow("h1")
    clock.now += 1
    assert cb.allow("h1")


def test_failures_while_open_do_not_extend_the_cooldown(
    make_state: Callable[[], BreakerState], clock: FakeClock
) -> None:
    """Late failures of requests sent before it opened leave the probe time where it was."""
    cb = breaker(make_state(), clock)
    for _ in range(K):
        cb.record_failure("h1")
    clock.now += COOLDOWN_S - 1
    cb.record_failure("h1")
    clock.now += 1
    assert cb.allow("h1")


def test_check_raises_circuit_open_naming_the_host(
    make_state: Callable[[], BreakerState], clock: FakeClock
) -> None:
    """check() raises CircuitOpen (transient) with the host and the failure count."""
    cb = breaker(make_state(), clock)
    cb.check("h1")
    for _ in range(K):
        cb.record_failure("h1")
    with pytest.raises(CircuitOpen, match=rf"host h1: circuit open after {K} consecutive") as e:
        cb.check("h1")
    assert isinstance(e.value, TransientError) and e.value.host == "h1"


def test_two_breakers_share_one_host_state_through_redis(redis_url: str, clock: FakeClock) -> None:
    """Failures seen by worker A open the breaker for worker B; only one of them probes."""
    with redis.Redis.from_url(redis_url) as a_conn, redis.Redis.from_url(redis_url) as b_conn:
        a = breaker(RedisBreakerState(a_conn), clock)
        b = breaker(RedisBreakerState(b_conn), clock)
        for _ in range(K):
            a.record_failure("h1")
        assert b.state("h1") is CircuitState.OPEN and not b.allow("h1")
        clock.now += COOLDOWN_S
        assert (b.allow("h1"), a.allow("h1")) == (True, False)
        b.record_success("h1")
        assert a.state("h1") is CircuitState.CLOSED and a.allow("h1")
        assert a_conn.keys("ygg:breaker:*") == []


def test_the_probe_slot_is_taken_atomically(redis_url: str, clock: FakeClock) -> None:
    """Eight workers asking at once after the cool-down: exactly one gets the probe."""
    with redis.Redis.from_url(redis_url) as conn:
        first = breaker(RedisBreakerState(conn), clock)
        for _ in range(K):
            first.record_failure("h1")
    clock.now += COOLDOWN_S
    barrier = threading.Barrier(8)
    answers: list[bool] = []

    def worker() -> None:
        with redis.Redis.from_url(redis_url) as own:
            cb = breaker(RedisBreakerState(own), clock)
            barrier.wait()
            answers.append(cb.allow("h1"))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(answers) == [False] * 7 + [True]
