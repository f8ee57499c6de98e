"""The supervisors' subscription feed (issue #16, item 2): a snapshot then deltas with sequence numbers
always equal a fresh snapshot (a property test over random event streams, subscribe times and
reconnections), coalescing, resume without a gap, a fresh snapshot when too far behind or after a restart."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from acd.events import AgentStateChanged, CallAbandoned, CallAnswered, CallWaiting, QueueCallFinished
from kpi.core import KpiCore
from kpi.feed import DELTA, SNAPSHOT, Feed, apply_delta, diff, flatten
from kpi.settings import KpiSettings

T0 = 1_772_445_600.0  # 2026-03-02 10:00 UTC
S = "pbx"
AGENTS = ("a1", "a2", "a3")
STATES = ("ready", "reserved", "on_call", "wrap_up", "not_ready")


def make() -> tuple[KpiCore, Feed]:
    core = KpiCore(KpiSettings(members={"q": AGENTS, "r": ("a3",)}, teams={"t": AGENTS}),
                   queues=["q", "r"], agents=AGENTS)
    feed = Feed(core.figures, lambda t: t in core.topics(), epoch="e1", min_interval=0.2, refresh=1.0, history=8)
    return core, feed


class Client:
    """A supervisor's view: the figures per topic as it rebuilds them from frames, with its last seq."""

    def __init__(self) -> None:
        self.figures: dict[str, dict[str, Any]] = {}
        self.seq: dict[str, int] = {}

    def take(self, message: dict[str, Any]) -> None:
        topic = message["topic"]
        if message["type"] == SNAPSHOT:
            self.figures[topic] = copy.deepcopy(message["figures"])
        else:
            assert message["type"] == DELTA
            assert message["seq"] == self.seq[topic] + 1, "a gap in the sequence"
            apply_delta(self.figures[topic], message)
        self.seq[topic] = message["seq"]

    def resume(self) -> dict[str, dict[str, Any]]:
        return {t: {"epoch": "e1", "seq": s} for t, s in self.seq.items()}


def event(kind: int, n: int, ts: float) -> object:
    u = f"u{n % 7}"
    q = "q" if n % 3 else "r"
    if kind == 0:
        return CallWaiting(ts=ts, server=S, uniqueid=u, call_id=u, queue=q, priority=0, position=1, ewt=None)
    if kind == 1:
        return CallAnswered(ts=ts, server=S, uniqueid=u, call_id=u, queue=q, agent_id=AGENTS[n % 3], wait=n % 40)
    if kind == 2:
        return CallAbandoned(ts=ts, server=S, uniqueid=u, call_id=u, queue=q, wait=n % 40, while_ringing=False)
    if kind == 3:
        return QueueCallFinished(ts=ts, server=S, uniqueid=u, call_id=u, queue=q, entered=ts - 60, outcome="answered",
                                 wait=n % 30, agent_id=AGENTS[n % 3], answered_at=ts - 50, talk=40, wrapup=10)
    return AgentStateChanged(ts=ts, agent_id=AGENTS[n % 3], state=STATES[n % 5], previous="ready", reason="break",
                             since=ts - 1)


steps = st.lists(st.tuples(st.integers(0, 6), st.integers(0, 1000), st.floats(0.0, 40.0)), min_size=1, max_size=80)


@settings(max_examples=60, deadline=None)
@given(steps)
def test_snapshot_then_deltas_equal_a_fresh_snapshot(script: list[tuple[int, int, float]]) -> None:
    core, feed = make()
    now = T0
    topics = core.topics()
    clients = {"s1": Client()}
    for m in feed.subscribe("s1", topics, now):
        clients["s1"].take(m)
    for kind, n, dt in script:
        now += dt
        if kind <= 4:
            core.observe(event(kind, n, now), now)
        elif kind == 5:  # a new supervisor, or one that reconnects (resumes from its last seq)
            name = f"s{n % 3 + 1}"
            client = clients.get(name)
            if client is None:
                client = clients[name] = Client()
            feed.drop(name)
            for m in feed.subscribe(name, topics, now, resume=client.resume()):
                client.take(m)
        else:  # a supervisor goes away for a while (it misses frames, then resumes)
            feed.drop(f"s{n % 3 + 1}")
        for session, message in feed.due(now, core.dirty):
            clients[session].take(message)
        for name, client in clients.items():
            if name not in feed.sessions:
                continue
            for topic in topics:
                stream = feed.streams[topic]
                assert client.seq[topic] == stream.seq
                assert client.figures[topic] == stream.figures  # what was last published
    # and what was last published is a fresh snapshot of that moment: force one more publish
    later = now + feed.refresh
    for session, message in feed.due(later, set(topics)):
        clients[session].take(message)
    for name in feed.sessions:
        for topic in topics:
            assert clients[name].figures[topic] == core.figures(topic, later)


def test_updates_are_coalesced_to_one_per_min_interval() -> None:
    core, feed = make()
    feed.subscribe("s1", ["queue:q"], T0)
    sent: list[tuple[str, dict[str, Any]]] = []
    counts = []
    for i in range(100):  # 100 calls in one second
        now = T0 + i / 100
        core.observe(CallWaiting(ts=now, server=S, uniqueid=f"x{i}", call_id="x", queue="q", priority=0, position=1,
                                 ewt=None), now)
        frames = feed.due(now, core.dirty)
        sent += frames
        counts += [i + 1] * len(frames)
    assert len(sent) == 4  # at most one per 0.2 s after the snapshot (at 0.2, 0.4, 0.6, 0.8 s)
    assert sent[-1][1]["seq"] == 4
    last, waiting = sent[-1][1], counts[-1]
    assert last["set"] == [[["waiting"], waiting], [["longest_wait"], round(last["ts"] - T0, 3)],
                           *([["windows", w, "offered"], waiting]
                                                     for w in ("day", "interval", "15m", "30m")),
                           [["history", "intervals", "40", "offered"], waiting]]  # 10:00 UTC: the 41st 15 minutes
    assert last["unset"] == []


def test_resume_without_a_gap_or_a_fresh_snapshot_when_too_far_behind() -> None:
    core, feed = make()
    client = Client()
    for m in feed.subscribe("s1", ["queue:q"], T0):
        client.take(m)
    feed.drop("s1")
    for i in range(3):  # three deltas while away: kept (history 8)
        now = T0 + 1 + i
        core.observe(CallWaiting(ts=now, server=S, uniqueid=f"y{i}", call_id="y", queue="q", priority=0, position=1,
                                 ewt=None), now)
        feed.subscribe("other", ["queue:q"], now)  # someone else keeps the stream going
        feed.due(now, core.dirty)
    frames = feed.subscribe("s1", ["queue:q"], T0 + 5, resume=client.resume())
    assert [m["type"] for m in frames] == [DELTA] * 3
    for m in frames:
        client.take(m)
    assert client.figures["queue:q"] == feed.streams["queue:q"].figures
    feed.drop("s1")
    for i in range(20):  # now too many for the history
        now = T0 + 10 + i
        core.observe(CallWaiting(ts=now, server=S, uniqueid=f"z{i}", call_id="z", queue="q", priority=0, position=1,
                                 ewt=None), now)
        feed.due(now, core.dirty)
    frames = feed.subscribe("s1", ["queue:q"], T0 + 40, resume=client.resume())
    assert [m["type"] for m in frames] == [SNAPSHOT]
    # another epoch (the server restarted): a snapshot
    frames = feed.subscribe("s2", ["queue:q"], T0 + 41, resume={"queue:q": {"epoch": "e0", "seq": 1}})
    assert [m["type"] for m in frames] == [SNAPSHOT]


def test_unknown_topic_is_refused_and_nothing_is_subscribed() -> None:
    core, feed = make()
    try:
        feed.subscribe("s1", ["queue:q", "queue:nope"], T0)
    except KeyError as exc:
        assert exc.args == ("queue:nope",)
    else:
        raise AssertionError("subscribed to an unknown topic")
    assert not feed.has_subscribers()


def test_flatten_and_diff_round_trip() -> None:
    old = {"a": {"b": 1, "c": {"d": None}}, "e": [1, 2], "f": {}}
    new = {"a": {"b": 2, "c": {}}, "e": [1, 2], "g": True}
    changed, gone = diff(flatten(old), flatten(new))
    mine = copy.deepcopy(old)
    apply_delta(mine, {"set": changed, "unset": gone})
    assert mine == new
