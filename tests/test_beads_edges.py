"""Which dependency edges bd's import keeps, and why it drops the others (FORMAT.md)."""

from __future__ import annotations

import json
from typing import Any

from beads_helpers import dep, line

from yggcelery.beads import Issue
from yggcelery.beads.edges import Drop, DroppedEdge, ImportedGraph, gate_kind


def graph(*lines: str) -> ImportedGraph[Issue]:
    return ImportedGraph(Issue.model_validate(json.loads(text)) for text in lines)


def reasons(g: ImportedGraph[Any]) -> list[tuple[str, str, Drop]]:
    return [(e.issue_id, e.depends_on_id, e.reason) for e in g.dropped]


def test_kept_edges_are_sorted_by_kind() -> None:
    """blocks-like edges become blockers, parent-child edges children, waits-for edges waiters."""
    g = graph(
        line("a", dependencies=[dep("a", "b"), dep("a", "p", "parent-child"),
                                dep("a", "c", "conditional-blocks"), dep("a", "g", "waits-for"),
                                dep("a", "r", "related")]),
        line("b"), line("c"), line("p"), line("g"), line("r"),
    )  # fmt: skip
    assert g.blocking == [("a", "b"), ("a", "c")]
    assert dict(g.children) == {"p": ["a"]}
    assert [(w.issue_id, w.gate_id, w.gate) for w in g.waiters] == [("a", "g", None)]
    assert g.dropped == []


def test_an_edge_to_an_id_not_in_the_file_is_dropped_and_named() -> None:
    """A missing target or parent is dropped; external ids and tombstones go quietly."""
    deps = [dep("a", "gone"), dep("a", "nope", "parent-child"), dep("a", "external:jira-7"),
            dep("a", "t"), dep("a", "t", "parent-child")]  # fmt: skip
    g = graph(line("a", dependencies=deps), line("t", status="tombstone"))
    assert reasons(g) == [("a", "gone", Drop.MISSING), ("a", "nope", Drop.MISSING)]
    assert (g.blocking, dict(g.children)) == ([], {})
    assert "t" not in g.by_id


def test_a_self_edge_is_dropped() -> None:
    """An issue cannot depend on itself."""
    assert reasons(graph(line("a", dependencies=[dep("a", "a", "parent-child")]))) == [
        ("a", "a", Drop.SELF)
    ]


def test_a_second_edge_between_two_issues_is_dropped_and_the_first_type_kept() -> None:
    """parent-child, then blocks, then related to one target: only parent-child stays."""
    deps = [dep("a", "b", "parent-child"), dep("a", "b"), dep("a", "b", "related")]
    g = graph(line("a", dependencies=deps), line("b"))
    assert g.dropped == [
        DroppedEdge("a", "b", "blocks", Drop.DUPLICATE, "parent-child"),
        DroppedEdge("a", "b", "related", Drop.DUPLICATE, "parent-child"),
    ]
    assert (dict(g.children), g.blocking) == ({"b": ["a"]}, [])


def test_an_edge_between_an_ephemeral_and_a_regular_issue_is_dropped_either_way() -> None:
    """Regular -> ephemeral and ephemeral (a legacy wisp) -> regular go; ephemeral -> ephemeral
    stays."""
    g = graph(
        line("reg", dependencies=[dep("reg", "eph")]),
        line("eph", ephemeral=True, dependencies=[dep("eph", "reg"), dep("eph", "wisp")]),
        line("wisp", wisp=True),
    )
    assert reasons(g) == [("reg", "eph", Drop.EPHEMERAL), ("eph", "reg", Drop.EPHEMERAL)]
    assert g.blocking == [("eph", "wisp")]


def test_a_blocking_edge_that_closes_a_cycle_is_dropped_in_file_order() -> None:
    """a -> b -> c -> a: the edge read last (c's, on line 3) closes the cycle and is named with
    it; the other two stay."""
    g = graph(
        line("a", dependencies=[dep("a", "b")]),
        line("b", dependencies=[dep("b", "c", "conditional-blocks")]),
        line("c", dependencies=[dep("c", "a")]),
    )
    assert g.dropped == [DroppedEdge("c", "a", "blocks", Drop.CYCLE, "c -> a -> b -> c")]
    assert g.blocking == [("a", "b"), ("b", "c")]


def test_cycles_are_found_whatever_the_creation_times() -> None:
    """The cheap check trusts blockers older than what they block; a cycle always has a younger
    one, so it is found with times in any order, missing or naive."""
    times = [("2026-01-03T00:00:00Z", "2026-01-01T00:00:00Z"), (None, "2026-01-01T00:00:00Z"),
             ("2026-01-01T00:00:00", "2026-01-02T00:00:00Z")]  # fmt: skip
    for first, second in times:
        g = graph(line("x", created_at=first, dependencies=[dep("x", "y")]),
                  line("y", created_at=second, dependencies=[dep("y", "x")]))  # fmt: skip
        assert reasons(g) == [("y", "x", Drop.CYCLE)], (first, second)


def test_parent_child_and_related_edges_never_make_a_cycle() -> None:
    """Only blocks-like edges count for cycles."""
    g = graph(line("a", dependencies=[dep("a", "b", "parent-child")]),
              line("b", dependencies=[dep("b", "a", "related")]))  # fmt: skip
    assert g.dropped == []


def test_a_long_acyclic_chain_keeps_every_edge() -> None:
    """2,000 issues each blocked by the one before, created in either order: nothing dropped."""
    for step in (1, -1):
        lines = [line(f"i{n}", created_at=f"2026-01-01T00:{(1000 + step * n) // 60 % 60:02d}:"
                      f"{(1000 + step * n) % 60:02d}Z",
                      dependencies=[dep(f"i{n}", f"i{n - 1}")] if n else [])
                 for n in range(2000)]  # fmt: skip
        g = graph(*lines)
        assert g.dropped == [] and len(g.blocking) == 1999


def test_gate_kind_reads_objects_json_text_and_raw_bytes() -> None:
    """bd stores metadata as a JSON string; the light records keep raw bytes."""
    assert gate_kind({"gate": "any-children"}) == "any-children"
    assert gate_kind('{"gate": "all-children"}') == "all-children"
    assert gate_kind(b'"{\\"gate\\": \\"any-children\\"}"') == "any-children"
    assert [gate_kind(v) for v in (None, "", "{", 5, [1], {"gate": 3})] == [None] * 6
