"""``make demo-real``: the whole cluster on real llama-servers closes its issues with answers.

Starts everything the demo starts (Redis, three llama-servers with SmolLM2-135M at 2/3/2 slots,
the workers, beat, Flower, the dispatcher) for three issues. Skipped, with the reason, only where
the llama-server binary or the model is not installed.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from yggcelery.beads import JsonlStore
from yggcelery.demo.real import RealDemo, RealOptions, model_answer
from yggcelery.demo.run import DemoOptions
from yggcelery.testing.llamaserver import MODEL_ALIAS, missing

pytestmark = [
    pytest.mark.llm,
    pytest.mark.skipif(missing() is not None, reason=str(missing())),
]


def test_every_issue_is_closed_with_the_real_model_answer(tmp_path: Path) -> None:
    """Three issues end closed, each with a result comment from SmolLM2 on a llama-server."""
    options = DemoOptions(workspace=tmp_path / "demo", count=3, timeout_s=240)
    demo = RealDemo(options, RealOptions(n_predict=16))
    with (tmp_path / "out.txt").open("w") as out:
        demo.console = Console(width=120, file=out)
        demo.run()
    issues = JsonlStore(tmp_path / "demo" / ".beads" / "issues.jsonl").list_issues()
    assert demo.closed == 3
    assert [issue.status for issue in issues] == ["closed"] * 3
    for issue in issues:
        assert model_answer(issue) is not None, issue.comments
        assert any(MODEL_ALIAS in (comment.text or "") for comment in issue.comments)
    assert "llama-servers" in (tmp_path / "out.txt").read_text()
