"""The KPI definitions against hand-computed cases (issue #16): queue figures, service level under each
definition, short abandons, ASA, AHT, holds, transfers; calls spanning an interval and midnight; the
sliding windows; agents' occupancy, times and adherence; campaigns (the dialer's definitions)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from acd.events import (
    AgentStateChanged,
    CallAbandoned,
    CallAnswered,
    CallOffered,
    CallOverflowed,
    CallWaiting,
    QueueCallFinished,
)
from acd.service import AcdService
from centre.wiring import kpi_engine
from config.schema import CtiConfig
from cti.events import AgentCallbackScheduled, CallHoldChanged, CallQueued, CallTransferredOut
from dialer.events import AttemptAnswered, AttemptFinished, AttemptStarted
from ivr.events import CallbackRequested
from kpi.core import HoldsRecorded, KpiCore
from kpi.settings import AbandonsInServiceLevel, KpiSettings, StatsSection, Target

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=ZoneInfo("UTC")).timestamp()  # an interval starts here
S = "pbx"


def core(**kw: object) -> KpiCore:
    settings = KpiSettings(targets={"q": Target(80, 20)}, members={"q": ("a1", "a2")}, teams={"t": ("a1",)},
                           not_ready_limits={"break": 200.0}, **kw)  # type: ignore[arg-type]
    return KpiCore(settings, queues=["q", "r"], agents=["a1", "a2"], campaigns=["c"])


class Calls:
    """Builds the ACD's events of calls in queue ``q``."""

    def __init__(self, k: KpiCore) -> None:
        self.k = k

    def ev(self, e: object) -> None:
        self.k.observe(e, e.ts)  # type: ignore[attr-defined]

    def enter(self, u: str, ts: float, queue: str = "q") -> None:
        self.ev(CallQueued(server=S, ts=ts, call_id=u, uniqueid=u, channel=f"c/{u}", queue=queue, skills="",
                           priority=0, language="en", caller_num=f"+1{u}", caller_name="", dnis="1"))
        self.ev(CallWaiting(ts=ts, server=S, uniqueid=u, call_id=u, queue=queue, priority=0, position=1, ewt=None))

    def answer(self, u: str, ts: float, entered: float, agent: str = "a1", queue: str = "q") -> None:
        self.ev(CallOffered(ts=ts, server=S, uniqueid=u, call_id=u, queue=queue, agent_id=agent, endpoint="x",
                            wait=ts - entered, attempt=1))
        self.ev(CallAnswered(ts=ts, server=S, uniqueid=u, call_id=u, queue=queue, agent_id=agent, wait=ts - entered))

    def abandon(self, u: str, ts: float, entered: float, queue: str = "q") -> None:
        self.ev(CallAbandoned(ts=ts, server=S, uniqueid=u, call_id=u, queue=queue, wait=ts - entered,
                              while_ringing=False))
        self.ev(QueueCallFinished(ts=ts, server=S, uniqueid=u, call_id=u, queue=queue, entered=entered,
                                  outcome="abandoned", wait=ts - entered))

    def finish(self, u: str, ts: float, entered: float, answered: float, talk: float, agent: str = "a1",
               transferred: bool = False, queue: str = "q") -> None:
        self.ev(QueueCallFinished(ts=ts, server=S, uniqueid=u, call_id=u, queue=queue, entered=entered,
                                  outcome="answered", wait=answered - entered, agent_id=agent, answered_at=answered,
                                  talk=talk, wrapup=ts - answered - talk,
                                  overflow_action="transferred" if transferred else "",
                                  overflow_target="r" if transferred else ""))

    def hold(self, u: str, ts: float, held: bool) -> None:
        self.ev(CallHoldChanged(server=S, ts=ts, call_id=u, uniqueid=u, queue="q", agent_id="a1", held=held))


def scenario(k: KpiCore) -> None:
    c = Calls(k)
    c.enter("c1", T0)
    c.enter("c2", T0 + 5)
    c.abandon("c2", T0 + 8, T0 + 5)  # 3 s: a short abandon
    c.answer("c1", T0 + 10, T0)  # wait 10: within 20 s
    c.enter("c3", T0 + 20)
    c.enter("c4", T0 + 30)
    c.enter("c5", T0 + 40)
    c.abandon("c3", T0 + 50, T0 + 20)  # 30 s: counted, after the target
    c.abandon("c5", T0 + 52, T0 + 40)  # 12 s: counted, within the target
    c.answer("c4", T0 + 60, T0 + 30, agent="a2")  # wait 30: not within
    c.hold("c4", T0 + 70, True)
    c.hold("c4", T0 + 80, False)
    c.finish("c1", T0 + 100, T0, T0 + 10, talk=80)  # handle 90
    c.finish("c4", T0 + 200, T0 + 30, T0 + 60, talk=120, agent="a2", transferred=True)  # handle 140
    c.enter("c6", T0 + 290)


def test_queue_figures_by_hand() -> None:
    k = core()
    scenario(k)
    f = k.figures("queue:q", T0 + 300)
    assert (f["waiting"], f["longest_wait"], f["oldest_since"]) == (1, 10.0, T0 + 290)
    day = f["windows"]["day"]
    assert day == {"offered": 6, "answered": 2, "abandoned": 2, "short_abandoned": 1, "overflowed": 0,
                   "service_level": 0.25, "abandon_rate": 0.5, "asa": 20.0, "handled": 2, "aht": 115.0,
                   "holds": 1, "avg_hold": 10.0, "max_hold": 10.0, "transfers": 1, "callbacks": 0}
    assert f["windows"]["interval"] == day == f["windows"]["15m"] == f["windows"]["30m"]
    assert f["target"] == {"percent": 80, "seconds": 20}


@pytest.mark.parametrize(("how", "sl"), [(AbandonsInServiceLevel.COUNTED, 0.25),  # 1 / (2 + 2)
                                         (AbandonsInServiceLevel.EXCLUDED, 0.5),  # 1 / 2
                                         (AbandonsInServiceLevel.AFTER_TARGET, 0.333333)])  # 1 / (2 + 2 - 1)
def test_service_level_definitions(how: AbandonsInServiceLevel, sl: float) -> None:
    k = core(abandons=how)
    scenario(k)
    assert k.figures("queue:q", T0 + 300)["windows"]["day"]["service_level"] == sl


def test_short_abandon_threshold_is_configurable() -> None:
    k = core(short_abandon=15.0)  # c5 (12 s) is now short too
    scenario(k)
    day = k.figures("queue:q", T0 + 300)["windows"]["day"]
    assert (day["abandoned"], day["short_abandoned"], day["abandon_rate"]) == (1, 2, pytest.approx(1 / 3, abs=1e-6))


def test_a_call_spanning_an_interval_is_offered_in_one_and_answered_in_the_next() -> None:
    k = core()
    c = Calls(k)
    c.enter("x", T0 + 890)
    c.answer("x", T0 + 905, T0 + 890)  # the 10:15 interval
    f = k.figures("queue:q", T0 + 910)["windows"]
    assert (f["interval"]["offered"], f["interval"]["answered"], f["interval"]["asa"]) == (0, 1, 15.0)
    assert (f["day"]["offered"], f["day"]["answered"]) == (1, 1)
    assert (f["15m"]["offered"], f["15m"]["answered"]) == (1, 1)


def test_a_call_spanning_midnight_in_the_centres_time_zone() -> None:
    paris = ZoneInfo("Europe/Paris")
    midnight = datetime(2026, 3, 3, 0, 0, tzinfo=paris).timestamp()
    k = core(timezone="Europe/Paris")
    c = Calls(k)
    c.enter("y", midnight - 10)
    c.enter("z", midnight - 5)
    c.answer("y", midnight + 10, midnight - 10)
    f = k.figures("queue:q", midnight + 20)
    assert (f["windows"]["day"]["offered"], f["windows"]["day"]["answered"]) == (0, 1)
    assert f["windows"]["day"]["asa"] == 20.0
    assert f["windows"]["30m"]["offered"] == 2  # the sliding windows do not stop at midnight
    assert (f["waiting"], f["longest_wait"]) == (1, 25.0)  # z still waits, since before midnight
    # the day before, as it stood a second before midnight
    k2 = core(timezone="Europe/Paris")
    c2 = Calls(k2)
    c2.enter("y", midnight - 10)
    assert k2.figures("queue:q", midnight - 1)["windows"]["day"]["offered"] == 1
    assert k2.figures("queue:q", midnight + 1)["windows"]["day"]["offered"] == 0  # a new day, nothing yet


def test_the_days_history_per_interval_for_the_sparkline() -> None:
    """Per interval since local midnight, by the event's time: offered in one, answered in the next; an
    interval without calls is absent; a new day starts empty; the figures equal the interval window's."""
    k = core()
    scenario(k)  # 10:00-10:05: the 10:00 interval (index 40 of 15 minutes)
    c = Calls(k)
    c.enter("x", T0 + 890)
    c.answer("x", T0 + 905, T0 + 890)  # offered at 10:14:50, answered at 10:15:05 (index 41)
    c.enter("w", T0 + 2 * 3600)
    c.answer("w", T0 + 2 * 3600 + 40, T0 + 2 * 3600)  # 12:00: answered after the target
    f = k.figures("queue:q", T0 + 2 * 3600 + 60)
    h = f["history"]
    midnight = T0 - 10 * 3600
    assert (h["interval"], h["day_start"]) == (900.0, midnight)
    assert h["intervals"] == {
        "40": {"offered": 7, "answered": 2, "abandoned": 2, "service_level": 0.25},
        "41": {"offered": 0, "answered": 1, "abandoned": 0, "service_level": 1.0},
        "48": {"offered": 1, "answered": 1, "abandoned": 0, "service_level": 0.0}}
    assert {k2: v for k2, v in f["windows"]["interval"].items() if k2 in h["intervals"]["48"]} \
        == h["intervals"]["48"]
    before = h["intervals"]["40"]
    assert k.figures("queue:q", T0 + 2 * 3600 + 61)["history"]["intervals"]["40"] is before  # unchanged: not made again
    c.enter("v", T0 + 2 * 3600 + 70)
    assert k.figures("queue:q", T0 + 2 * 3600 + 71)["history"]["intervals"]["48"]["offered"] == 2
    tomorrow = midnight + 86400
    c.enter("n", tomorrow + 30)
    h2 = k.figures("queue:q", tomorrow + 31)["history"]
    assert (h2["day_start"], h2["intervals"]) == (tomorrow, {"0": {"offered": 1, "answered": 0, "abandoned": 0,
                                                                    "service_level": None}})
    assert "history" not in k.figures("team:t", tomorrow + 31)["agents"]["a1"]  # queues only
    c.answer("n", tomorrow + 40, tomorrow + 30)
    assert k.figures("queue:q", tomorrow + 41)["history"]["intervals"]["0"]["answered"] == 1


def test_the_history_of_a_new_day_is_not_the_days_before() -> None:
    """The same interval index and the same number of changes on two days: the figures are the new day's."""
    k = core()
    c = Calls(k)
    midnight = T0 - 10 * 3600
    c.enter("a", midnight + 10)
    assert k.figures("queue:q", midnight + 11)["history"]["intervals"]["0"]["offered"] == 1
    c.ev(CallbackRequested(server=S, ts=midnight + 86400 + 10, uniqueid="b", channel="x", flow="f", number="+1",
                           queue="q"))  # one change in interval 0 of the next day: a callback, nothing offered
    assert k.figures("queue:q", midnight + 86400 + 11)["history"]["intervals"]["0"] == {
        "offered": 0, "answered": 0, "abandoned": 0, "service_level": None}


def test_sliding_windows_drop_what_is_older_than_their_span() -> None:
    k = core()
    c = Calls(k)
    c.enter("a", T0 + 5)
    c.abandon("a", T0 + 5 + 3, T0 + 5)
    w = k.figures("queue:q", T0 + 14 * 60)["windows"]
    assert (w["15m"]["offered"], w["30m"]["offered"]) == (1, 1)
    w = k.figures("queue:q", T0 + 16 * 60)["windows"]
    assert (w["15m"]["offered"], w["30m"]["offered"], w["day"]["offered"]) == (0, 1, 1)
    w = k.figures("queue:q", T0 + 31 * 60)["windows"]
    assert (w["15m"]["offered"], w["30m"]["offered"], w["interval"]["offered"], w["day"]["offered"]) == (0, 0, 0, 1)


def test_overflow_and_callbacks() -> None:
    k = core()
    c = Calls(k)
    c.enter("o", T0)
    c.ev(CallOverflowed(ts=T0 + 60, server=S, uniqueid="o", call_id="o", queue="q", wait=60, action="overflow",
                        target="r"))
    c.ev(CallWaiting(ts=T0 + 60, server=S, uniqueid="o", call_id="o", queue="r", priority=0, position=1, ewt=None))
    c.enter("cb", T0 + 1)
    c.ev(CallOverflowed(ts=T0 + 61, server=S, uniqueid="cb", call_id="cb", queue="q", wait=60, action="callback",
                        target="flow"))
    c.ev(CallbackRequested(server=S, ts=T0 + 70, uniqueid="v", channel="x", flow="f", number="+1", queue="q"))
    q, r = k.figures("queue:q", T0 + 100), k.figures("queue:r", T0 + 100)
    assert (q["windows"]["day"]["offered"], q["windows"]["day"]["overflowed"], q["windows"]["day"]["callbacks"]) \
        == (2, 2, 2)
    assert (q["waiting"], r["waiting"], r["windows"]["day"]["offered"]) == (0, 1, 1)


def test_agents_by_state_time_in_state_occupancy_and_adherence() -> None:
    k = core()
    c = Calls(k)
    changes = [(T0, "not_ready", "logged_out", "login"), (T0 + 10, "ready", "not_ready", ""),
               (T0 + 20, "reserved", "ready", ""), (T0 + 25, "on_call", "reserved", ""),
               (T0 + 85, "wrap_up", "on_call", ""), (T0 + 95, "ready", "wrap_up", ""),
               (T0 + 100, "not_ready", "ready", "break")]
    since = T0
    for ts, state, previous, reason in changes:
        if state == "reserved":
            c.enter("k", ts - 5)
            c.ev(CallOffered(ts=ts, server=S, uniqueid="k", call_id="k", queue="q", agent_id="a1", endpoint="x",
                             wait=5, attempt=1))
        c.ev(AgentStateChanged(ts=ts, agent_id="a1", state=state, previous=previous, reason=reason, since=since))
        since = ts
        if state == "reserved":
            team = k.figures("team:t", ts + 1)["agents"]["a1"]
            assert team["call"] == {"call_id": "k", "caller": "+1k", "queue": "q", "since": ts, "status": "ringing"}
    f = k.figures("team:t", T0 + 400)
    a1 = f["agents"]["a1"]
    assert (a1["state"], a1["reason"], a1["time_in_state"], a1["call"]) == ("not_ready", "break", 300.0, None)
    day = a1["windows"]["day"]
    assert (day["ready_seconds"], day["busy_seconds"], day["occupancy"]) == (15.0, 75.0, 0.833333)
    assert day["not_ready"] == {"login": 10.0, "break": 300.0}
    assert a1["over"] == {"break": 100.0}
    assert a1["adherence"] == pytest.approx(1 - 100 / 310)
    assert f["agents_by_state"]["not_ready"] == 1
    assert k.figures("queue:q", T0 + 400)["agents"] == {"logged_out": 1, "not_ready": 1, "on_call": 0, "ready": 0,
                                                        "reserved": 0, "wrap_up": 0}
    # the last 15 minutes at T0 + 1000: from T0 + 100 on, only the break (and its 600 s ongoing)
    w15 = k.figures("team:t", T0 + 1000)["agents"]["a1"]["windows"]["15m"]
    assert (w15["not_ready"], w15["occupancy"]) == ({"break": 900.0}, None)


def test_campaign_figures_use_the_dialers_definitions() -> None:
    k = core()
    for i, (result, late) in enumerate([("connected", False), ("connected", True), ("machine", False),
                                        ("busy", False), ("abandoned", False)]):
        ts = T0 + 10 * i
        k.observe(AttemptStarted(ts, "c", f"l{i}", f"r{i}", 1, "+1"), ts)
        if result in ("connected", "abandoned"):
            k.observe(AttemptAnswered(ts + 1, "c", f"l{i}", f"r{i}", "u"), ts + 1)
        k.observe(AttemptFinished(ts + 5, "c", f"l{i}", f"r{i}", 1, result, "done", None, late=late), ts + 5)
    day = k.figures("campaign:c", T0 + 100)["windows"]["day"]
    assert day == {"dials": 5, "answers": 4, "live_answers": 3, "contacts": 2, "abandons": 2, "machines": 1,
                   "contact_rate": 0.4, "abandon_rate": pytest.approx(2 / 3)}


def test_the_statistics_section_configures_the_engine() -> None:
    cfg = CtiConfig.model_validate({
        "acd": {"timezone": "Europe/Paris", "agents": [{"id": "a1", "name": "A", "endpoint": "PJSIP/a1",
                                                       "skills": {"s": 1}, "teams": ["red"]}],
                "queues": [{"name": "q", "skills": {"s": 1}, "service_level": {"percent": 90, "seconds": 30}}]},
        "statistics": {"short_abandon": 8, "service_level_abandons": "after_target", "interval_minutes": 30,
                       "not_ready_limits": {"break": 20}}})
    settings = kpi_engine(cfg, AcdService(cfg.acd, T0)).core.settings
    assert (settings.timezone, settings.interval, settings.short_abandon, settings.abandons) == \
        ("Europe/Paris", 1800.0, 8.0, AbandonsInServiceLevel.AFTER_TARGET)
    assert settings.not_ready_limits == {"break": 1200.0} and settings.target("q") == Target(90, 30)
    assert settings.members == {"q": ("a1",)} and settings.teams == {"red": ("a1",)}
    with pytest.raises(ValueError, match="interval_minutes"):
        StatsSection.model_validate({"interval_minutes": 7})


def test_holds_outside_transfers_and_agents_callbacks() -> None:
    """Two holds on one part (the second until the caller hangs up: it ends with the talk, not the wrap-up)
    give the figures the part's stored holds give on a rebuild; a transfer to a number and a callback an
    agent scheduled on a call count for the queue."""
    live, rebuilt = core(), core()
    c = Calls(live)
    c.enter("h", T0)
    c.answer("h", T0 + 5, T0)
    c.hold("h", T0 + 10, True)
    c.hold("h", T0 + 14, False)  # 4 s
    c.hold("h", T0 + 20, True)  # until the hangup at T0 + 35: 15 s
    c.finish("h", T0 + 45, T0, T0 + 5, talk=30)  # wrap-up 10 s
    c.ev(CallTransferredOut(ts=T0 + 50, queue="q", agent_id="a1"))
    c.ev(AgentCallbackScheduled(ts=T0 + 55, queue="q", agent_id="a1", call_id="h"))
    day = live.figures("queue:q", T0 + 60)["windows"]["day"]
    assert (day["holds"], day["avg_hold"], day["max_hold"], day["transfers"], day["callbacks"]) \
        == (2, 9.5, 15.0, 1, 1)
    r = Calls(rebuilt)
    r.enter("h", T0)
    r.answer("h", T0 + 5, T0)
    r.finish("h", T0 + 45, T0, T0 + 5, talk=30)
    r.ev(HoldsRecorded(ts=T0 + 35, queue="q", agent_id="a1", seconds=19.0, count=2, longest=15.0))
    r.ev(CallTransferredOut(ts=T0 + 50, queue="q", agent_id="a1"))
    r.ev(AgentCallbackScheduled(ts=T0 + 55, queue="q", agent_id="a1", call_id="h"))
    for topic in live.topics():
        assert rebuilt.figures(topic, T0 + 60) == live.figures(topic, T0 + 60), topic
