"""What a campaign measures for its pacer, through the events it already follows (pure, time passed in), and
how each mode paces with it."""

from __future__ import annotations

from acd.events import QueueCallFinished
from centre.demo_leads import demo_leads
from cti.events import AmiConnectionChanged, OriginateResult
from dialer.events import AttemptStarted, DialerWarning, PreviewOffered
from dialer.pacer import AgentOutlook, WindowFigures
from dialer.settings import CampaignSettings, DialerSection, PredictiveSettings
from dialer.shell import Dialer
from tests.test_dialer_campaign import SRV, T0, amd, answered, make, start


def _finished(queue: str, talk: float, wrap: float) -> QueueCallFinished:
    return QueueCallFinished(ts=T0 + 300, server=SRV, uniqueid="x1", call_id="x1", queue=queue, entered=T0,
                             outcome="answered", wait=1.0, agent_id="1002", answered_at=T0 + 1, talk=talk,
                             wrapup=wrap)


def test_answers_amd_verdicts_and_durations_are_measured() -> None:
    """An answer after 6 s and a person 1.5 s later, a machine, a busy after 3 s, and one talk of 100 s with
    10 s of wrap-up in the campaign's queue (another queue's call is not the campaign's)."""
    c = make(3)
    o1, o2, o3 = start(c, idle=3)
    answered(c, o1, "u1", T0 + 6)
    amd(c, "u1", "HUMAN", T0 + 7.5)
    answered(c, o2, "u2", T0 + 9)
    amd(c, "u2", "MACHINE", T0 + 12)
    c.handle(OriginateResult(server=SRV, ts=T0 + 3, action_id=o3.ref, success=False, reason=5, channel="",
                             uniqueid=""), T0 + 3)
    c.handle(_finished("sales", 100.0, 10.0), T0 + 300)
    c.handle(_finished("support", 999.0, 99.0), T0 + 300)
    m = c.measures
    assert list(m.answered) == [True, True, False]
    assert list(m.answer_times) == [6.0, 9.0] and list(m.fail_times) == [3.0]
    assert list(m.human) == [True, False]
    assert list(m.connect) == [7.5]
    assert (list(m.talk), list(m.wrap)) == ([100.0], [10.0])


def test_modes_pace_differently() -> None:
    """The same moment (4 ready agents, 2 agents near the end of their wrap-up) in each mode: progressive dials
    one line per ready agent, ratio 2 twice that, predictive (measured: 20% answer) more, preview none."""
    agents = AgentOutlook(ready=4, wrap_ages=(9.5, 9.5))
    dials = {}
    for mode, extra in (("progressive", {}), ("ratio", {"ratio": 2.0}), ("predictive", {}), ("preview", {})):
        c = make(100, mode=mode, predictive=PredictiveSettings(min_samples=10, prior_answer_rate=0.2,
                                                                 prior_human_share=0.99), **extra)
        for i in range(50):
            c.measures.on_dial_result(i < 10, 5.0 if i < 10 else 30.0)  # 20% answered
        dials[mode] = len(c.pace(T0, agents, WindowFigures(0, 0, 0.03, 0.0)))
        assert c.last_decision is not None and c.last_decision.explain["mode"] == mode
    assert dials["progressive"] == 4 and dials["ratio"] == 8 and dials["preview"] == 0
    assert dials["predictive"] > 6, dials


def test_a_count_of_idle_agents_still_paces() -> None:
    """Callers that know only how many agents are idle (tests, tools) pass an int."""
    c = make(5)
    assert len(c.pace(T0, 2)) == 2


def test_the_dialer_hands_each_campaign_its_outlook_and_window() -> None:
    """The shell asks ``outlook(queue, now)`` and ``windows(campaign, now)`` each pacing round and paces with
    them: a window whose budget is nearly spent holds a predictive campaign to progressive (no extra lines);
    a window with no budget left steps it down to preview (nothing dialled, the ready agents get leads)."""
    section = DialerSection(campaigns=[CampaignSettings(name="c", queue="sales", leads="demo", demo_leads=50,
                                                        mode="predictive",
                                                        predictive=PredictiveSettings(min_samples=1))])
    asked: list[tuple[str, float]] = []
    window = [WindowFigures(live=1000, abandoned=45, cap=0.03, elapsed_fraction=0.5)]

    def outlook(queue: str, now: float) -> AgentOutlook:
        asked.append((queue, now))
        return AgentOutlook(ready=5)

    def windows(campaign: str, now: float) -> WindowFigures:
        return window[0]

    dialer = Dialer(section, servers=[SRV], dial_template="PJSIP/{number}@trunk", outlook=outlook, windows=windows,
                    sink=lambda out: None, clock=lambda: T0, demo_leads=demo_leads,
                    ready_agents=lambda queue: ["a1", "a2", "a3", "a4", "a5"])
    dialer.handle(AmiConnectionChanged(server=SRV, ts=T0, connected=True, detail="up"), T0)
    dialer.load_memory(T0)
    dialer.campaigns["c"].measures.on_dial_result(True, 5.0)
    dialer.tick(T0)
    decision = dialer.campaigns["c"].last_decision
    assert asked == [("sales", T0)]
    assert decision is not None and (decision.dial, decision.reason) == (5, "progressive-fallback")
    assert decision.explain["window"] == {"live": 1000, "abandoned": 45, "cap": 0.03, "elapsed": 0.5}
    assert dialer.stats()[0]["pacing_explain"]["reason"] == "progressive-fallback"
    assert dialer.figures(T0)[0]["step"] == "progressive"

    window[0] = WindowFigures(live=1000, abandoned=35, cap=0.03, elapsed_fraction=0.9)
    out = dialer.tick(T0 + 1)
    decision = dialer.campaigns["c"].last_decision
    assert decision is not None and (decision.dial, decision.reason, decision.previews) == (0, "preview-fallback", 5)
    assert not [o for o in out if isinstance(o, AttemptStarted)]
    assert [o.agent_id for o in out if isinstance(o, PreviewOffered)] == ["a1", "a2", "a3", "a4", "a5"]
    (step,) = [o for o in out if isinstance(o, DialerWarning)]
    assert step.code == "pacing-step" and "progressive -> preview" in step.message
    figures = dialer.figures(T0 + 1)[0]
    assert (figures["step"], figures["previews"], figures["pacing"]["reason"]) == ("preview", 5, "preview-fallback")


def test_a_step_down_to_preview_and_back_is_told_at_most_once_a_minute() -> None:
    """A progressive campaign whose window is spent steps down to preview (a pacing-step warning); back and
    forth within the minute, nothing more is said (the wallboard shows the step); a minute on, the step it
    is at then."""
    c = make(100)
    spent = WindowFigures(live=100, abandoned=4, cap=0.03, elapsed_fraction=1.0)
    fine = WindowFigures(live=0, abandoned=0, cap=0.03, elapsed_fraction=0.0)

    def told(now: float, window: WindowFigures) -> list[str]:
        return [e.message.split(" (")[0] for e in c.pace(now, 5, window) if isinstance(e, DialerWarning)]

    assert told(T0, spent) == ["pacing progressive -> preview"]
    assert c.step == "preview" and c.last_decision is not None and c.last_decision.previews == 5
    assert told(T0 + 1, fine) == [] and c.step == "progressive"
    assert told(T0 + 2, spent) == [] and told(T0 + 3, fine) == []
    assert told(T0 + 61, fine) == ["pacing preview -> progressive"]
    assert told(T0 + 62, fine) == []
