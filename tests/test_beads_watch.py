"""New work is seen within ``dispatch.watch_s``, not ``poll_s``: the stores tell, from a ``stat``,
whether someone else changed the data since they last read or wrote it, and the dispatchers
look between polls.

Real JSONL files, the stand-in ``bd`` (the real binary cannot be installed here), real Redis,
a real ``ygg worker`` and the simulator's HTTP host.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from beads_helpers import line, write_lines

from yggcelery.beads import BdCliStore, JsonlStore
from yggcelery.dispatch.base import nap
from yggcelery.dispatch.choose import make_dispatcher
from yggcelery.settings import Settings
from yggcelery.sim import SimFleet
from yggcelery.testing.cluster import LocalCluster
from yggcelery.testing.faults import DispatcherThread
from yggcelery.testing.waiting import wait_until

FAKE_BD = Path(__file__).parent / "fakebd" / "bd"
HOST = "skadi-code"
#: Far longer than any deadline below: a bead picked up in time was seen by the watch.
POLL_S = 120.0


def test_a_jsonl_store_sees_another_writer_and_not_itself(tmp_path: Path) -> None:
    """Reads and its own writes leave ``changed()`` false; another store's write makes it
    true until the next read."""
    path = tmp_path / ".beads" / "issues.jsonl"
    path.parent.mkdir()
    mine, theirs = JsonlStore(path), JsonlStore(path)
    assert mine.changed()  # never read: a read is due
    mine.list_issues()
    assert not mine.changed()  # the file is still missing
    mine.create("mine", actor="me")
    assert not mine.changed()
    theirs.create("theirs", actor="them")
    assert mine.changed()
    assert sorted(i.title for i in mine.ready()) == ["mine", "theirs"]
    assert not mine.changed()


def test_a_bd_store_sees_another_bd_command_and_not_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same through the bd stand-in: the ``.beads`` folder's files after our last command
    are the reference."""
    monkeypatch.setenv("FAKEBD_ERA", "current")
    beads = tmp_path / ".beads"
    write_lines(beads / "issues.jsonl", [line("bd-1", priority=1)])
    (beads / "config.yaml").write_text("prefix: bd\n")
    mine = BdCliStore(beads, binary=str(FAKE_BD), actor="ygg")
    theirs = BdCliStore(beads, binary=str(FAKE_BD), actor="someone")
    assert mine.changed()
    mine.ready()
    assert not mine.changed()
    mine.create("mine", actor="ygg")
    assert not mine.changed()
    theirs.create("theirs", actor="someone")
    assert mine.changed()
    mine.ready()
    assert not mine.changed()


def test_a_nap_ends_when_the_beads_file_changes(tmp_path: Path) -> None:
    """A nap of two minutes ends once another writer adds an issue."""
    path = tmp_path / "issues.jsonl"
    mine, theirs = JsonlStore(path), JsonlStore(path)
    mine.list_issues()
    stop = threading.Event()
    watch = {"watch_s": 0.02, "wake": mine.changed, "wait": stop.wait}
    napper = threading.Thread(target=nap, args=(POLL_S,), kwargs=watch)
    napper.start()
    try:
        theirs.create("new work", actor="them")
        napper.join(timeout=20)
        assert not napper.is_alive(), "the nap went on after the Beads file changed"
    finally:
        stop.set()
        napper.join()


@pytest.mark.parametrize("name", ["celery", "asyncio"])
def test_a_p0_filed_while_the_dispatcher_naps_is_sent_at_once(
    name: str,
    make_settings: Callable[..., Settings],
    sim_fleet: Callable[..., SimFleet],
    local_cluster: Callable[..., LocalCluster],
) -> None:
    """With ``poll_s`` at two minutes, a p0 filed by someone else is claimed and closed within
    seconds: the dispatcher saw the file change during its nap. (Without the watch it would
    wait for the next poll and miss the deadline.)"""
    fleet = sim_fleet(time_scale=0.01)
    settings = make_settings(fleet=fleet, dispatch={"poll_s": POLL_S, "watch_s": 0.05,
                                                    "reconcile_every_s": 0.5})  # fmt: skip
    settings.beads.dir.mkdir(parents=True, exist_ok=True)
    store, person = JsonlStore(settings.beads.jsonl_path), JsonlStore(settings.beads.jsonl_path)
    meta = {"ygg": {"service_s": 1.0}}
    first = store.create("warm-up", issue_type="bug", metadata=meta, actor="me").id
    if name == "celery":
        local_cluster(settings, hosts=[HOST])
    dispatcher = make_dispatcher(name, settings, store)
    with DispatcherThread(dispatcher, until_idle=False) as loop:
        wait_until(lambda: store.get(first).status == "closed", timeout_s=60, what="warm-up")
        urgent = person.create("URGENT", priority=0, issue_type="bug", metadata=meta,
                               actor="someone").id  # fmt: skip
        wait_until(lambda: person.get(urgent).status == "closed", timeout_s=30,
                   what="the p0 closed well before the next poll")  # fmt: skip
        loop.stop()
