"""One check of ``ygg doctor``: what was checked, whether it passed, one line, and what to do."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class Check:
    """The outcome of one check; ``fix`` says what to do when it failed."""

    name: str
    ok: bool
    line: str
    fix: str | None = None

    def __str__(self) -> str:
        head = f"{'ok  ' if self.ok else 'FAIL'} {self.name}: {self.line}"
        return head if self.ok or not self.fix else f"{head} -> {self.fix}"


def passed(name: str, line: str) -> Check:
    return Check(name=name, ok=True, line=line)


def failed(name: str, line: str, fix: str) -> Check:
    return Check(name=name, ok=False, line=line, fix=fix)


def all_ok(checks: Iterable[Check]) -> bool:
    """Whether every check passed (``ygg doctor`` exits 0 only then)."""
    return all(check.ok for check in checks)
