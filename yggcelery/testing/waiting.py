"""Synchronise on conditions with deadlines, never on sleeps."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """Raised when a condition waited on with :func:`wait_until` is still false at its deadline.

    An ``AssertionError``, so pytest shows it as a failed expectation with its message.
    """


def wait_until(
    condition: Callable[[], T],
    *,
    timeout_s: float,
    what: str = "condition",
    every_s: float = 0.05,
) -> T:
    """Call ``condition()`` until it returns something true and return that value.

    Raises :class:`WaitTimeout` naming ``what`` and the deadline when ``timeout_s`` passes first.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"{what}: still not true after {timeout_s:g}s (last value {value!r})")
        time.sleep(every_s)
