"""``ygg beads`` on a copy of a real sample, through click's runner."""

from __future__ import annotations

import json
from pathlib import Path

from beads_helpers import ORGANICE, copy_sample, line, write_lines
from click.testing import CliRunner

from yggcelery.cli import cli


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["beads", *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_ready_json_lists_issues_in_order() -> None:
    """--json prints the ready issues, in order, with the summary fields."""
    code, out, _ = run("ready", "--beads-file", str(ORGANICE), "--json")
    issues = json.loads(out)
    assert code == 0
    assert [i["id"] for i in issues][:3] == ["organice-6ic", "organice-b5e", "organice-a7a"]
    assert len(issues) == 7
    assert {"id", "title", "priority", "status", "issue_type", "labels"} <= issues[0].keys()


def test_ready_table_and_sort() -> None:
    """Without --json a table is printed; --sort oldest changes the order."""
    code, out, _ = run("ready", "--beads-file", str(ORGANICE), "--sort", "oldest")
    assert code == 0 and "7 ready" in out
    assert out.index("organice-f9s") < out.index("organice-6ic")


def test_close_block_reopen_and_show(tmp_path: Path) -> None:
    """Each command changes the file and prints the issue."""
    path = str(copy_sample(ORGANICE, tmp_path))
    assert json.loads(run("close", "organice-6ic", "--reason", "done", "--beads-file", path,
                          "--json")[1])["status"] == "closed"  # fmt: skip
    blocked = json.loads(run("block", "organice-b5e", "--reason", "needs a human",
                             "--beads-file", path, "--json")[1])  # fmt: skip
    assert (blocked["status"], blocked["notes"]) == ("blocked", "needs a human")
    assert (
        json.loads(run("reopen", "organice-6ic", "--beads-file", path, "--json")[1])["status"]
        == "open"
    )
    code, out, _ = run("show", "organice-6ic", "--beads-file", path)
    assert code == 0 and "Research correct Emacs" in out


def test_bad_lines_are_reported_on_stderr_and_the_rest_works(tmp_path: Path) -> None:
    """A broken line is named with its file and line number; the good issue is still listed."""
    path = write_lines(tmp_path / "issues.jsonl", [line("bd-1"), "{not json"])
    code, out, err = run("ready", "--beads-file", str(path), "--json")
    assert code == 0 and [i["id"] for i in json.loads(out)] == ["bd-1"]
    assert f"{path} line 2: invalid JSON" in err
