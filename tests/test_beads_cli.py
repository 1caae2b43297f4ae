"""``ygg beads`` on copies of real samples and hand-made files: through click's runner, and as a
real ``ygg`` process where what reaches stderr is the point."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from beads_helpers import ORGANICE, SKYHOOK, copy_sample, dep, line, write_lines
from click.testing import CliRunner

from yggcelery.cli.main import cli

BAD_FILE = [
    line("bd-1", priority=1),
    '{"id":"bd-2","title":"cut mid-JS',
    line("bd-3", priority=9),
    line("bd-4", status="review"),
    line("bd-5", dependencies=[dep("bd-5", "bd-4")]),
]


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["beads", *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def run_json(*args: str) -> Any:
    code, out, err = run(*args, "--json")
    assert code == 0, err
    return json.loads(out)


def ygg(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The real command, in a fresh process with no YGG_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("YGG_")}
    return subprocess.run([sys.executable, "-m", "yggcelery", "beads", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip


def test_ready_json_lists_issues_in_order_with_rules_and_diagnostics() -> None:
    """--json: the rule set, the sort, the ready issues in order with the summary fields, and
    the diagnostics (none for this file)."""
    answer = run_json("ready", "--beads-file", str(ORGANICE))
    assert (answer["rules"], answer["sort"], answer["diagnostics"]) == ("current", "priority", [])
    assert [i["id"] for i in answer["issues"]][:3] == ["organice-b5e", "organice-6ic",
                                                       "organice-f9s"]  # fmt: skip
    summary = {"id", "title", "priority", "status", "issue_type", "labels"}
    assert summary <= answer["issues"][0].keys()


def test_ready_rules_picks_the_rule_set() -> None:
    """--rules 1.0 hands out skyhook's epic and orders newest first; current does neither."""
    old = run_json("ready", "--beads-file", str(SKYHOOK), "--rules", "1.0")
    now = run_json("ready", "--beads-file", str(SKYHOOK), "--rules", "current")
    assert ([i["id"] for i in old["issues"]], old["rules"]) == (["skyhook-gld"], "1.0")
    assert now["issues"] == []
    organice = run_json("ready", "--beads-file", str(ORGANICE), "--rules", "1.0")
    assert [i["id"] for i in organice["issues"]][:2] == ["organice-6ic", "organice-b5e"]


def test_the_configured_rule_set_is_the_default(tmp_path: Path) -> None:
    """beads.rules in ygg.toml applies when --rules is not given."""
    (tmp_path / "ygg.toml").write_text('[beads]\nrules = "1.0"\n')
    answer = run_json("ready", "--beads-file", str(SKYHOOK))
    assert (answer["rules"], [i["id"] for i in answer["issues"]]) == ("1.0", ["skyhook-gld"])


def test_ready_table_and_sort() -> None:
    """Without --json a table is printed; --sort oldest changes the order."""
    code, out, _ = run("ready", "--beads-file", str(ORGANICE), "--sort", "oldest")
    assert code == 0 and "7 ready" in out
    assert out.index("organice-f9s") < out.index("organice-6ic")


def test_close_block_reopen_and_show(tmp_path: Path) -> None:
    """Each command changes the file and prints the issue."""
    path = str(copy_sample(ORGANICE, tmp_path))
    closed = run_json("close", "organice-6ic", "--reason", "done", "--beads-file", path)
    assert (closed["issue"]["status"], closed["diagnostics"]) == ("closed", [])
    blocked = run_json("block", "organice-b5e", "--reason", "needs a human", "--beads-file", path)
    assert (blocked["issue"]["status"], blocked["issue"]["notes"]) == ("blocked", "needs a human")
    assert run_json("reopen", "organice-6ic", "--beads-file", path)["issue"]["status"] == "open"
    code, out, _ = run("show", "organice-6ic", "--beads-file", path)
    assert code == 0 and "Research correct Emacs" in out


def test_bad_lines_are_reported_once_on_stderr_and_in_the_json_diagnostics(
    tmp_path: Path,
) -> None:
    """Cut line, priority 9, unknown status: one stderr line and one diagnostic each, with the
    file and line number; the other issues are listed (bd-5 waits for the review issue)."""
    path = write_lines(tmp_path / "issues.jsonl", BAD_FILE)
    code, out, err = run("ready", "--beads-file", str(path), "--json")
    answer = json.loads(out)
    assert code == 0 and [i["id"] for i in answer["issues"]] == ["bd-1", "bd-3"]
    assert [(d["line"], d["severity"]) for d in answer["diagnostics"]] == [
        (2, "error"), (3, "error"), (4, "error")
    ]  # fmt: skip
    said = [f"line {d['line']}: " + "; ".join(d["problems"]) for d in answer["diagnostics"]]
    assert err.splitlines() == [f"warning: beads file {path} {text}" for text in said]


def test_a_real_ygg_process_reports_each_bad_line_once(tmp_path: Path) -> None:
    """What broke before: the logger and the command both printed the cut line. As a real
    process, with ygg's logging set up, each bad line appears on stderr exactly once."""
    path = write_lines(tmp_path / "issues.jsonl", BAD_FILE)
    done = ygg("ready", "--beads-file", str(path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    for number in (2, 3, 4):
        assert len(re.findall(rf"issues\.jsonl line {number}:", done.stderr)) == 1, done.stderr
    assert len(done.stderr.strip().splitlines()) == 3
    assert "bd-1" in done.stdout and "bd-3" in done.stdout


def test_create_uses_the_file_prefix_bd_flags_and_child_ids(tmp_path: Path) -> None:
    """create: prefix-hash from the file, -p/-t/-l/-d, --deps as blockers, --parent as parent.N
    with a parent-child dependency; the new issue is read back at once."""
    path = str(copy_sample(ORGANICE, tmp_path))
    flags = ["-p", "1", "-t", "bug", "-l", "ui, habit,ui", "-d", "It renders twice."]
    answer = run_json("create", "Fix the habit graph", *flags, "--deps", "organice-6ic",
                      "--beads-file", path)  # fmt: skip
    made = answer["issue"]
    assert re.fullmatch(r"organice-[0-9a-z]{4,}", made["id"])
    assert (made["priority"], made["issue_type"], made["labels"], made["description"]) == (
        1, "bug", ["ui", "habit"], "It renders twice."
    )  # fmt: skip
    assert [(d["depends_on_id"], d["type"]) for d in made["dependencies"]] == [
        ("organice-6ic", "blocks")
    ]
    child = run_json("create", "Step one", "--parent", made["id"], "--beads-file", path)["issue"]
    assert child["id"] == f"{made['id']}.1"
    assert [(d["depends_on_id"], d["type"]) for d in child["dependencies"]] == [
        (made["id"], "parent-child")
    ]
    assert json.loads(Path(path).read_text().splitlines()[-1])["id"] == child["id"]


def test_create_refuses_what_bd_refuses(tmp_path: Path) -> None:
    """An empty title, a priority outside 0..4 and an unknown --deps id are refused, the file
    untouched."""
    path = write_lines(tmp_path / "issues.jsonl", [line("bd-1")])
    before = path.read_bytes()
    assert run("create", " ", "--beads-file", str(path))[0] == 2
    assert run("create", "t", "-p", "5", "--beads-file", str(path))[0] == 2
    done = ygg("create", "t", "--deps", "bd-nope", "--beads-file", str(path), cwd=tmp_path)
    assert done.returncode == 2 and "ygg: error: issue bd-nope not found" in done.stderr
    assert path.read_bytes() == before


def test_check_says_nothing_is_wrong_with_a_good_file() -> None:
    """A clean sample: exit 0, no diagnostics."""
    code, out, _ = run("check", "--beads-file", str(ORGANICE))
    assert code == 0 and out.strip() == f"{ORGANICE}: no problems"


def test_check_lists_every_problem_and_exits_1_when_bd_would_refuse(tmp_path: Path) -> None:
    """Only the diagnostics, one line each, then the verdict; exit 1 for a refusal, 0 when
    everything is a warning."""
    path = write_lines(tmp_path / "issues.jsonl", [*BAD_FILE, line("bd-6", issue_type="quest")])
    code, out, err = run("check", "--beads-file", str(path))
    lines = out.splitlines()
    assert code == 1 and err == ""
    assert [ln.split(":")[0] for ln in lines[:4]] == ["error", "error", "error", "warning"]
    verdict = "4 lines with problems, 3 that bd refuses (bd would refuse the file)"
    assert lines[-1] == f"{path}: {verdict}"
    warnings_only = write_lines(tmp_path / "warn.jsonl", [line("bd-1", issue_type="quest")])
    answer = json.loads(run("check", "--beads-file", str(warnings_only), "--json")[1])
    assert answer["refused"] is False and answer["diagnostics"][0]["severity"] == "warning"


def test_check_on_a_missing_file_is_one_error_line(tmp_path: Path) -> None:
    """No file to check is an expected failure: one ``ygg: error:`` line, exit 2."""
    done = ygg("check", "--beads-file", str(tmp_path / "nope.jsonl"), cwd=tmp_path)
    assert done.returncode == 2
    missing = f"{tmp_path / 'nope.jsonl'}: no such file (give --beads-file FILE)"
    assert done.stderr.strip() == f"ygg: error: {missing}"
