"""A campaign taken over from another node (#18: its lease changed hands) reads its hopper again before it dials:
the leads the other node dialled meanwhile are not dialled twice. Two dialers on one real store (SQLite) in
virtual time; a third, loaded like the second but not told of the take-over, shows what happens without it (the
store refuses a second attempt of the same number, so nothing is dialled twice either way, but it stalls)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from centre.database import upgrade
from cti.commands import Originate
from cti.db import make_engine
from dialer.campaign import Lead
from dialer.events import DialerWarning
from dialer.shell import Dialer
from dialer.store import LeadStore
from tests.test_dialer_failure_paths import T0, _dialer, _Inline


def dialled(sink: list[Any]) -> set[str]:
    return {o.variables["CTI_LEAD_ID"] for o in sink if isinstance(o, Originate)}


def test_a_campaign_taken_over_never_dials_a_lead_the_other_node_dialled(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'centre.sqlite3'}"
    upgrade(url)
    store = LeadStore(make_engine(url))
    (tmp_path / "none.csv").write_text("id,number\n")  # the leads are in the store already
    try:
        store.import_leads("c", [Lead(f"L{i}", f"+1555010{i:04d}") for i in range(6)], T0)
        sinks: dict[str, list[Any]] = {"a": [], "b": [], "stale": []}
        nodes: dict[str, Dialer] = {}
        for name, sink in sinks.items():  # every node loads every campaign's hopper at its start
            nodes[name] = _dialer(sink, leads="none.csv", base_dir=tmp_path, idle=2)
            nodes[name].open_store(store, _Inline(), T0)
            nodes[name].set_held(["c"] if name == "a" else [])
        nodes["a"].tick(T0)  # node A holds the campaign and dials two leads, then dies
        by_a = dialled(sinks["a"])
        assert len(by_a) == 2 and {lead.lead_id for lead in store.load("c") if lead.status == "active"} == by_a
        # node B takes the campaign over: the hopper read again first, nothing paced before it is
        b = nodes["b"]
        b.take_over("c")
        assert "c" not in b.taking_over and b.paces("c") is False  # not held yet: the lease comes with set_held
        b.set_held(["c"])
        assert b.paces("c")
        b.tick(T0 + 60)
        by_b = dialled(sinks["b"])
        assert len(by_b) == 2 and not by_b & by_a
        assert not [w for w in sinks["b"] if isinstance(w, DialerWarning)]
        # a node loaded at the same time but not told of the take-over tries node A's leads again: the store
        # refuses those attempts (an attempt is written before it is dialled, its number unique per lead), so
        # nothing is dialled twice, but the node stalls on warnings instead of dialling fresh leads
        stale = nodes["stale"]
        stale.set_held(["c"])
        stale.tick(T0 + 60)
        refused = [w for w in sinks["stale"] if isinstance(w, DialerWarning) and w.code == "store-failed"]
        assert refused and not dialled(sinks["stale"]) & by_a
    finally:
        store.engine.dispose()


def test_a_node_starting_leaves_a_live_nodes_open_attempts_to_it_and_the_node_taking_over_resolves_them(
        tmp_path: Path) -> None:
    """Several nodes: a node that starts while another paces the campaign does not resolve that node's attempts
    in flight (they are live, not left by a crash); the node that takes the campaign over resolves those the dead
    node left open (``unknown``, the lead retried once), never its own in flight."""
    url = f"sqlite:///{tmp_path / 'centre.sqlite3'}"
    upgrade(url)
    store = LeadStore(make_engine(url))
    (tmp_path / "none.csv").write_text("id,number\n")
    try:
        store.import_leads("c", [Lead(f"L{i}", f"+1555010{i:04d}") for i in range(6)], T0)
        sinks: dict[str, list[Any]] = {"a": [], "b": []}
        a = _dialer(sinks["a"], leads="none.csv", base_dir=tmp_path, idle=2)
        a.open_store(store, _Inline(), T0, recover=False)
        a.set_held(["c"])
        a.tick(T0)
        by_a = dialled(sinks["a"])
        assert len(by_a) == 2
        b = _dialer(sinks["b"], leads="none.csv", base_dir=tmp_path, idle=2)
        b.open_store(store, _Inline(), T0 + 30, recover=False)  # node B starts while A dials
        b.set_held([])

        def status() -> dict[str, tuple[str, int]]:
            return {lead.lead_id: (lead.status, lead.unknowns) for lead in store.load("c") if lead.lead_id in by_a}

        assert status() == dict.fromkeys(by_a, ("active", 0))  # A's calls are A's: untouched
        assert not [e for e in sinks["b"] if type(e).__name__ == "AttemptFinished"]
        # node A dies; B takes the campaign over: A's open attempts resolved as unknown, retried once
        b.take_over("c")
        assert status() == dict.fromkeys(by_a, ("pending", 1))
        finished = [e for e in sinks["b"] if type(e).__name__ == "AttemptFinished"]
        assert sorted(e.lead_id for e in finished) == sorted(by_a) and {e.result for e in finished} == {"unknown"}
        b.set_held(["c"])
        b.tick(T0 + 60)
        by_b = dialled(sinks["b"])
        assert len(by_b) == 2 and not by_b & by_a  # (A's leads wait for their retry delay)
        b.take_over("c", changed_hands=False)  # the lease gained again (an outage): B's own calls stay open
        assert {lead.lead_id: lead.status for lead in store.load("c") if lead.lead_id in by_b} == \
            dict.fromkeys(by_b, "active")
    finally:
        store.engine.dispose()
