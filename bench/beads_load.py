"""Load + ready() on a 100,000-issue ``issues.jsonl``: seconds (median of 5) and peak RSS.

Generates a realistic file (most issues closed, epics with children, ``blocks`` chains, labels,
comments, bd-style nanosecond timestamps), then measures in fresh subprocesses so each cold load
starts from nothing and the peak RSS is that of load + ready() alone (taken before the
``list_issues()`` timing, which builds all 100,000 models). The cold figure includes every
line check and the dependency checks (bd's import quirks, cycles), as ``ygg beads ready`` and the
dispatcher pay them; ``diagnostics`` counts the lines they report:

    .venv/bin/python bench/beads_load.py [--issues 100000] [--runs 5] [--rules current|1.0]

Prints the figures and writes them to ``bench/results/beads_load.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "beads_load.json"
_TEXT = (
    "add fix parser worker queue retry timeout cache index route model host gpu slot beat reconcile"
    " claim close block reopen label comment epic child parent dependency test docs flaky memory"
    " leak startup shutdown config toml env redis celery broker result backend"
)
_WORDS = _TEXT.split(" ")
_LABELS = [
    "backend",
    "frontend",
    "kind:code",
    "kind:text",
    "kind:reasoning",
    "infra",
    "docs",
    "p-x",
]
_STATUS_WEIGHTS = {"closed": 75, "open": 17, "in_progress": 4, "blocked": 2, "deferred": 2}


def _stamp(moment: datetime) -> str:
    """bd's RFC 3339 with nanoseconds and an offset."""
    local = moment.astimezone(UTC)
    return local.strftime("%Y-%m-%dT%H:%M:%S.%f") + f"{random.randrange(1000):03d}Z"


def _sentence(words: int) -> str:
    return " ".join(random.choice(_WORDS) for _ in range(words))


def _issue(index: int, epics: list[str], start: datetime) -> dict[str, object]:
    issue_id = f"bench-{index:x}"
    created = start + timedelta(seconds=index * 30)
    status = random.choices(list(_STATUS_WEIGHTS), weights=list(_STATUS_WEIGHTS.values()))[0]
    issue: dict[str, object] = {
        "id": issue_id,
        "title": _sentence(random.randint(4, 10)).capitalize(),
        "description": _sentence(random.randint(20, 80)),
        "status": status,
        "priority": random.choices(range(5), weights=[5, 20, 50, 20, 5])[0],
        "issue_type": random.choices(
            ["task", "bug", "feature", "epic", "chore"], [50, 20, 15, 5, 10]
        )[0],
        "created_at": _stamp(created),
        "created_by": "bench",
        "updated_at": _stamp(created + timedelta(hours=1)),
    }
    if status == "closed":
        issue["closed_at"] = issue["updated_at"]
        issue["close_reason"] = "Closed"
    issue["labels"] = random.sample(_LABELS, random.randint(0, 3))
    issue["dependencies"] = _deps(issue_id, index, epics, created)
    if random.random() < 0.15:
        issue["comments"] = [
            {"id": n + 1, "issue_id": issue_id, "author": "bench", "text": _sentence(15),
             "created_at": _stamp(created + timedelta(minutes=n))}
            for n in range(random.randint(1, 3))
        ]  # fmt: skip
    if issue["issue_type"] == "epic":
        epics.append(issue_id)
    return issue


def _deps(issue_id: str, index: int, epics: list[str], created: datetime) -> list[dict[str, str]]:
    deps = []
    if epics and random.random() < 0.5:
        deps.append((random.choice(epics[-50:]), "parent-child"))
    for _ in range(random.choices([0, 1, 2, 3], [55, 25, 15, 5])[0]):
        if index > 0:
            deps.append((f"bench-{random.randrange(max(0, index - 500), index):x}", "blocks"))
    return [
        {"issue_id": issue_id, "depends_on_id": target, "type": kind,
         "created_at": _stamp(created), "created_by": "bench"}
        for target, kind in deps
    ]  # fmt: skip


def generate(path: Path, *, issues: int, seed: int = 7) -> None:
    """Write ``issues`` issue lines to ``path``, bd-style: compact JSON, sorted by id."""
    random.seed(seed)
    start = datetime.now(UTC) - timedelta(seconds=issues * 30)
    epics: list[str] = []
    rows = [_issue(i, epics, start) for i in range(issues)]
    rows.sort(key=lambda row: str(row["id"]))
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, separators=(",", ":"), ensure_ascii=False) + "\n")


_CHILD = """
import json, resource, sys, time
from yggcelery.beads import JsonlStore
store = JsonlStore(sys.argv[1], rules=sys.argv[2], report=None)
t0 = time.perf_counter(); c0 = time.process_time()
ready = store.ready()
t1 = time.perf_counter(); c1 = time.process_time()
again = store.ready(); t2 = time.perf_counter()
rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
diagnostics = len(store.problems)
store.list_issues(); t3 = time.perf_counter()
print(json.dumps({"cold_s": t1 - t0, "cold_cpu_s": c1 - c0, "cached_s": t2 - t1,
                  "list_issues_s": t3 - t2, "ready": len(ready), "peak_rss_mb": rss_mb,
                  "diagnostics": diagnostics,
                  "same": [i.id for i in ready] == [i.id for i in again]}))
"""


def measure(path: Path, *, runs: int, rules: str) -> dict[str, object]:
    """Median figures over ``runs`` fresh interpreters."""
    samples = []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", _CHILD, str(path), rules],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        samples.append(json.loads(out))
    keys = ("cold_s", "cold_cpu_s", "cached_s", "list_issues_s", "peak_rss_mb")
    result: dict[str, object] = {
        k: round(statistics.median(s[k] for s in samples), 4) for k in keys
    }
    result["ready_issues"] = samples[0]["ready"]
    result["diagnostics"] = samples[0]["diagnostics"]
    result["rules"] = rules
    result["cached_equals_cold"] = all(s["same"] for s in samples)
    result["runs"] = runs
    result["load_average_1m"] = round(os.getloadavg()[0], 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--issues", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rules", choices=["current", "1.0"], default="current")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "issues.jsonl"
        generate(path, issues=args.issues)
        figures = {"issues": args.issues, "file_mb": round(path.stat().st_size / 2**20, 1)}
        figures.update(measure(path, runs=args.runs, rules=args.rules))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    for key, value in figures.items():
        print(f"{key:>20}: {value}")


if __name__ == "__main__":
    main()
