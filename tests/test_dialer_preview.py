"""Preview mode's pure core (dialer/preview.py) over a real Campaign, with fixed times: who is shown
which lead, and what accept, skip, time-out, a dial that fails and a store that fails do."""

from __future__ import annotations

import pytest

from cti.commands import Originate
from dialer.campaign import Campaign, Lead
from dialer.events import AttemptFinished, AttemptStarted, PreviewEnded, PreviewOffered
from dialer.preview import PREVIEW_TIMEOUT_REASON, PreviewError, Previews
from dialer.settings import CampaignSettings

T0 = 1_767_261_600.0  # 2026-01-01 10:00 UTC


def make(n: int = 3) -> tuple[Campaign, Previews]:
    settings = CampaignSettings(name="spring", queue="sales", leads="demo", mode="preview", preview_timeout=20,
                                preview_skip_retry=600)
    c = Campaign(settings, server="pbx", dial_template="PJSIP/{number}@trunk")
    c.load([Lead(f"L{i}", f"+1555000{i:04d}", {"name": f"N{i}"}) for i in range(n)], T0)
    return c, Previews(c)


def test_each_ready_agent_is_shown_one_lead_and_nothing_is_dialled() -> None:
    c, p = make(3)
    out = p.pop(T0, ["a1", "a2"])
    assert [(e.agent_id, e.lead_id, e.ref, e.deadline) for e in out if isinstance(e, PreviewOffered)] == [
        ("a1", "L0", "dial:spring/L0/1", T0 + 20), ("a2", "L1", "dial:spring/L1/1", T0 + 20)]
    assert out[0].fields["name"] == "N0"  # type: ignore[union-attr]
    assert p.pop(T0 + 1, ["a1", "a2"]) == []  # already shown one each
    assert c.leads["L0"].status == "preview" and c.counts["dialled"] == 0
    assert p.next_deadline() == T0 + 20


def test_accept_dials_and_a_busy_number_frees_the_agent() -> None:
    c, p = make(2)
    p.pop(T0, ["a1"])
    with pytest.raises(PreviewError, match="not the lead"):
        p.accept("a1", "L1", T0)
    with pytest.raises(PreviewError, match="no preview"):
        p.accept("a2", "L0", T0)
    out = p.accept("a1", "L0", T0 + 2)
    started = out[0]
    assert isinstance(started, AttemptStarted) and started.ref == "dial:spring/L0/1"
    assert out[1] == PreviewEnded(T0 + 2, "spring", "L0", "dial:spring/L0/1", "a1", "accepted", release=False)
    assert any(isinstance(o, Originate) for o in c.persisted(started.ref, T0 + 2))
    assert p.pop(T0 + 3, ["a1"]) == []  # held for the call it dialled
    finished = AttemptFinished(T0 + 10, "spring", "L0", started.ref, 1, "busy", "pending", T0 + 310)
    assert p.follow([finished]) == [PreviewEnded(T0 + 10, "spring", "L0", started.ref, "a1", "busy")]
    assert p.follow([finished]) == []
    assert [e.lead_id for e in p.pop(T0 + 11, ["a1"]) if isinstance(e, PreviewOffered)] == ["L1"]


def test_a_connected_call_keeps_the_agent_and_a_lost_write_frees_it() -> None:
    c, p = make(2)
    p.pop(T0, ["a1", "a2"])
    p.accept("a1", "L0", T0)
    p.accept("a2", "L1", T0)
    connected = AttemptFinished(T0 + 60, "spring", "L0", "dial:spring/L0/1", 1, "connected", "done", None)
    assert p.follow([connected]) == []
    assert p.not_dialled("dial:spring/L1/1", T0 + 1) == [
        PreviewEnded(T0 + 1, "spring", "L1", "dial:spring/L1/1", "a2", "failed")]


def test_skip_puts_the_lead_back_later_and_a_time_out_at_the_head() -> None:
    c, p = make(3)
    p.pop(T0, ["a1", "a2"])
    out = p.skip("a1", "L0", "x" * 500, T0 + 5)
    assert out == [PreviewEnded(T0 + 5, "spring", "L0", "dial:spring/L0/1", "a1", "skipped", reason="x" * 200)]
    assert c.leads["L0"].status == "pending" and c.leads["L0"].next_at == T0 + 605
    assert p.tick(T0 + 19) == []
    timed_out = p.tick(T0 + 20)
    assert timed_out == [PreviewEnded(T0 + 20, "spring", "L1", "dial:spring/L1/1", "a2", "timeout",
                                      not_ready=PREVIEW_TIMEOUT_REASON)]
    # L1 goes back ahead of L2 (both due), L0 not before its retry time
    assert [e.lead_id for e in p.pop(T0 + 21, ["a3", "a4", "a5"]) if isinstance(e, PreviewOffered)] == ["L1", "L2"]
