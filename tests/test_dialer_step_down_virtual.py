"""The pacer's step down to preview and its recovery, end to end in virtual time: the demo server and the
simulated PBX, a predictive (and a progressive) campaign whose policy window (the compliance ledger, 30 days
rolling under us_tsr) starts with no budget left, and agents who accept every lead they are shown a second later (a bot
on the console's side). While the budget is gone nothing is dialled that no agent accepted, and nobody is
abandoned; the people the previews connect are live answers without an abandon, the window recovers, and
the campaign's own pacing resumes by itself while the previews already accepted end normally."""

from __future__ import annotations

from pathlib import Path

import pytest

from acd.events import AgentStateChanged
from centre.demo import DEMO_EPOCH, build_virtual
from config.load import load_config
from config.schema import CtiConfig
from dialer.events import (
    AttemptFinished,
    AttemptStarted,
    DialerWarning,
    PreviewEnded,
    PreviewOffered,
)
from dialer.preview import PreviewError
from dialer.settings import PredictiveSettings
from sim.settings import MeanSd

DEMO = Path(__file__).resolve().parent.parent / "config" / "examples" / "demo.yaml"
CAMPAIGN = "renewals"
DAY = 86400.0


def _config(mode: str, extra_agents: int = 8) -> CtiConfig:
    cfg = load_config(DEMO)
    c = cfg.dialer.campaigns[0].model_copy(update={
        "mode": mode, "demo_leads": 2000, "max_attempts": 2, "abandon_window": 1000,
        "predictive": PredictiveSettings(min_samples=5)})
    template = cfg.acd.agents[2]
    extra = [template.model_copy(update={"id": f"2{i:03d}", "name": f"Outbound {i}", "endpoint": f"PJSIP/2{i:03d}",
                                         "skills": {"sales": 5}}) for i in range(extra_agents)]
    inbound = [i.model_copy(update={"rate_per_hour": 0.0}) for i in cfg.sim.inbound]
    outbound = cfg.sim.outbound.model_copy(update={"answer": 0.5, "busy": 0.1, "noanswer": 0.3, "congestion": 0.05,
                                                   "machine": 0.05, "noanswer_ring_s": 20.0})
    phones = cfg.sim.agents.model_copy(update={"answer_delay_s": MeanSd(mean_s=0.3, sd_s=0.1, min_s=0.1),
                                               "no_answer_prob": 0.0})
    return cfg.model_copy(update={
        "acd": cfg.acd.model_copy(update={"agents": [*cfg.acd.agents, *extra]}),
        "dialer": cfg.dialer.model_copy(update={"campaigns": [c]}),
        "sim": cfg.sim.model_copy(update={"outbound": outbound, "inbound": inbound, "agents": phones})})


@pytest.mark.parametrize(("mode", "abandoned"), [("predictive", 4), ("progressive", 4)])
def test_no_budget_steps_down_to_preview_and_pacing_resumes_when_it_recovers(mode: str, abandoned: int) -> None:
    """4 abandoned of 100 ends the window over the cap even with no further abandon (3 of 100 would leave
    nothing of the predictive pacer's aim, 2.4%: it falls back to progressive, not to preview)."""
    cfg = _config(mode)
    stack = build_virtual(cfg, seed=5)
    server = stack.server
    dialer = server.components.dialer
    assert dialer is not None
    campaign = dialer.campaigns[CAMPAIGN]
    # the window so far: 100 live answers over the last 30 days, some of them abandoned
    start = stack.clock.seconds()
    for i in range(100):
        ts = start - 30 * DAY + 3600 + i * 60
        result = "abandoned" if i < abandoned else "connected"
        dialer.compliance.record(AttemptFinished(ts, CAMPAIGN, f"old{i}", f"dial:{CAMPAIGN}/old{i}/1", 1, result,
                                                 "done", None, person=True), f"+1555{i:07d}")
    accepted: dict[str, float] = {}  # attempt ref -> when its agent accepted it
    started: list[tuple[float, str, str]] = []  # (when, ref, the step the campaign was in)
    finished: dict[str, AttemptFinished] = {}
    ended: list[PreviewEnded] = []
    steps: list[tuple[float, str]] = []
    offers: list[PreviewOffered] = []

    def accept(e: PreviewOffered) -> None:
        try:
            out = dialer.preview_accept(e.agent_id, e.lead_id, server.now())
        except PreviewError:
            return  # withdrawn meanwhile (the agent was no longer ready)
        accepted[e.ref] = server.now()
        server.apply(out)

    def on(e: object) -> None:
        if isinstance(e, PreviewOffered):
            offers.append(e)
            stack.clock.callLater(1.0, accept, e)
        elif isinstance(e, AttemptStarted):
            started.append((e.ts, e.ref, campaign.step))
        elif isinstance(e, AttemptFinished):
            finished[e.ref] = e
        elif isinstance(e, PreviewEnded):
            ended.append(e)
        elif isinstance(e, DialerWarning) and e.code == "pacing-step":
            steps.append((e.ts, e.message))
        elif isinstance(e, AgentStateChanged) and e.state == "not_ready" and e.reason == "preview-timeout":
            raise AssertionError("a preview timed out: the bot accepts every lead within a second")

    server.subscribe(on)
    end = DEMO_EPOCH + 1800
    seen_steps: list[str] = []
    while stack.clock.seconds() < end:
        stack.clock.run_until(min(end, stack.clock.seconds() + 5))
        if not seen_steps or seen_steps[-1] != campaign.step:
            seen_steps.append(campaign.step)
    stack.sim.stop()
    server.stop()

    # the campaign's mode -> preview at the first decision, then back to its mode once the window recovered
    assert seen_steps[:2] == ["preview", mode] or seen_steps[:3] == ["preview", "progressive", mode], seen_steps
    assert steps and f"{mode} -> preview" in steps[0][1], steps
    recovered = next(ts for ts, message in steps if "preview -> " in message)
    assert offers and all(o.ts < recovered for o in offers)
    # while in preview, every dial was one an agent accepted; nobody was abandoned
    in_preview = [(ts, ref) for ts, ref, step in started if ts < recovered]
    assert len(in_preview) >= 20 and all(ref in accepted for _, ref in in_preview)
    assert not [e for e in finished.values() if e.ref in accepted and (e.result == "abandoned" or e.late)]
    # the previews accepted before the recovery ended normally: each dial finished with its result, and those
    # that did not reach their agent freed it
    accepted_early = [ref for ref, at in accepted.items() if at < recovered]
    assert all(ref in finished for ref in accepted_early if accepted[ref] < end - 600)
    assert sum(1 for ref in accepted_early if finished.get(ref) and finished[ref].result == "connected") >= 20
    freed = {e.ref for e in ended if e.outcome not in ("accepted",)}
    assert all(ref in freed for ref in accepted_early if ref in finished and finished[ref].result != "connected")
    # after the recovery the pacer dials again, without previews
    after = [ref for ts, ref, _ in started if ts > recovered]
    assert len(after) >= 20 and not [ref for ref in after if ref in accepted]
    assert campaign.last_decision is not None and campaign.last_decision.step == mode
    window = dialer.compliance.window(CAMPAIGN, end)
    assert window.abandoned / window.live < 0.03
