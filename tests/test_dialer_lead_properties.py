"""Property tests (issue 15): whatever the leads, their zones, the do-not-call list and the order of events,
no lead is dialled outside its calling window (in every zone of its number), while on the do-not-call list,
or twice at once; and under uk_ofcom, whatever the calls' outcomes, never within 72 hours after an abandoned
call to its number."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from cti.commands import Originate
from cti.events import AmdResult, ChannelHungup, DialEnded, DialStarted, OriginateResult, VariableSet
from dialer.campaign import Campaign, Lead
from dialer.events import AttemptFinished, AttemptStarted, DialerWarning
from dialer.settings import CampaignSettings

T0 = 1_767_261_600.0
ZONES = ["America/New_York", "America/Los_Angeles", "Europe/London", "Asia/Tokyo", "Australia/Sydney",
         "Pacific/Honolulu", "America/St_Johns", "Asia/Kolkata"]
NUMBERS = [f"+1212736{5000 + i:04d}" for i in range(12)]

lead_zones = st.lists(st.sampled_from(ZONES), max_size=3, unique=True).map(" ".join)
windows = st.tuples(st.integers(8 * 60, 20 * 60), st.integers(10, 13 * 60)).map(
    lambda t: (t[0], min(21 * 60, t[0] + t[1])))
step = st.tuples(
    st.floats(0, 6 * 3600),  # time passing
    st.integers(0, 4),  # idle agents
    st.lists(st.sampled_from(NUMBERS), max_size=2),  # numbers put on the do-not-call list now
    st.booleans(),  # the open attempts end (busy) now
)


def inside(now: float, zones: list[str], window: tuple[int, int]) -> bool:
    for name in zones:
        local = datetime.fromtimestamp(now, ZoneInfo(name))
        minute = local.hour * 60 + local.minute
        if not window[0] <= minute < window[1]:
            return False
    return True


@settings(max_examples=150, deadline=None)
@given(zones=st.lists(lead_zones, min_size=1, max_size=12), window=windows, campaign_zone=st.sampled_from(ZONES),
       steps=st.lists(step, min_size=1, max_size=40), callbacks=st.lists(
           st.tuples(st.integers(0, 11), st.floats(0, 86400)), max_size=3))
def test_never_outside_the_window_on_the_dnc_list_or_twice_at_once(
        zones: list[str], window: tuple[int, int], campaign_zone: str, steps: list[Any],
        callbacks: list[tuple[int, float]]) -> None:
    start = f"{window[0] // 60:02d}:{window[0] % 60:02d}"
    end = f"{window[1] // 60:02d}:{window[1] % 60:02d}"
    s = CampaignSettings.model_validate({
        "name": "p", "queue": "q", "leads": "store", "max_attempts": 5, "ratio": 2.0,
        "calling_window": {"start": start, "end": end}, "timezone": campaign_zone,
        "retry_after": {"busy": 600}})
    c = Campaign(s, server="pbx", dial_template="PJSIP/{number}@t")
    leads = [Lead(f"L{i}", NUMBERS[i], timezone=z) for i, z in enumerate(zones)]
    c.load(leads, T0)
    for i, due in callbacks:
        c.schedule_callback(Lead(f"cb{i}", NUMBERS[i]), T0 + due)
    zone_of = {lead.lead_id: (lead.timezone.split() or [campaign_zone]) for lead in leads}
    dnc: set[str] = set()
    open_refs: dict[str, str] = {}  # lead -> its open attempt
    now = T0
    for passing, idle, blocked, end_all in steps:
        now += passing
        dnc.update(blocked)
        c.block_numbers(blocked)
        for e in c.pace(now, idle):
            assert isinstance(e, AttemptStarted)
            for o in c.persisted(e.ref, now):
                if not isinstance(o, Originate):
                    continue
                lead_id = o.variables["CTI_LEAD_ID"]
                number = o.variables["CTI_LEAD_NUMBER"]
                assert number not in dnc, f"{lead_id} dialled on the do-not-call list"
                assert inside(now, zone_of.get(lead_id, [campaign_zone]), window), \
                    f"{lead_id} dialled outside its window at {datetime.fromtimestamp(now, ZoneInfo('UTC'))}"
                assert lead_id not in open_refs, f"{lead_id} dialled twice at once"
                open_refs[lead_id] = o.ref
        if end_all:
            for lead_id, ref in list(open_refs.items()):
                c.handle(OriginateResult(server="pbx", ts=now, action_id=ref, success=False, reason=5, channel="",
                                         uniqueid=None), now)
                del open_refs[lead_id]


# ---------------------------------------------------------------------------------------------------
# uk_ofcom: answered calls too, and the 72-hour rule

UK_T0 = 1_767_261_600.0  # 2026-01-01 10:00 UTC
OUTCOMES = ("busy", "noanswer", "machine", "safe-harbour", "silence", "connected", "late", "amd-hangup")
uk_step = st.tuples(
    # time passing before this step: minutes to hours, or a jump to either side of 72 h
    st.one_of(st.floats(0, 6 * 3600), st.floats(70 * 3600, 74 * 3600)),
    st.integers(0, 4),  # idle agents
    st.lists(st.sampled_from(NUMBERS[:6]), max_size=1),  # numbers put on the do-not-call list now
    st.lists(st.sampled_from(OUTCOMES), max_size=4),  # how the open attempts end now, oldest first
)


def _answer(c: Campaign, ref: str, uid: str, now: float) -> None:
    c.handle(VariableSet(server="pbx", ts=now, call_id=uid, uniqueid=uid, channel=f"PJSIP/trunk-{uid}",
                         name="CTI_ATTEMPT", value=ref), now)
    c.handle(OriginateResult(server="pbx", ts=now, action_id=ref, success=True, reason=4,
                             channel=f"PJSIP/trunk-{uid}", uniqueid=uid), now)


def _end(c: Campaign, ref: str, uid: str, outcome: str, now: float) -> list[Any]:
    """Drive one open attempt to ``outcome`` over the next seconds; returns what the campaign said."""
    out: list[Any] = []
    if outcome in ("busy", "noanswer"):
        return c.handle(OriginateResult(server="pbx", ts=now, action_id=ref, success=False,
                                        reason=5 if outcome == "busy" else 3, channel="", uniqueid=None), now)
    _answer(c, ref, uid, now)
    chan = f"PJSIP/trunk-{uid}"

    def amd(status: str, at: float) -> None:
        out.extend(c.handle(AmdResult(server="pbx", ts=at, call_id=uid, uniqueid=uid, channel=chan, status=status,
                                      cause="", lead_id="", campaign=c.name), at))

    def agent(at: float, status: str | None = None) -> None:
        event: Any = DialStarted(server="pbx", ts=at, call_id=uid, uniqueid=uid, channel=chan, dest_uniqueid="a",
                                 dest_channel="PJSIP/1002-1", dial_string="PJSIP/1002") if status is None else \
            DialEnded(server="pbx", ts=at, call_id=uid, uniqueid=uid, channel=chan, dest_uniqueid="a",
                      dest_channel="PJSIP/1002-1", status=status)
        out.extend(c.handle(event, at))

    if outcome == "machine":
        amd("MACHINE", now + 2.5)
    elif outcome in ("safe-harbour", "silence", "connected", "late"):
        amd("HUMAN", now + 1.6)
        if outcome == "safe-harbour":
            out.extend(c.tick(now + 3.6))
        elif outcome in ("connected", "late"):
            at = now + (2.0 if outcome == "connected" else 5.0)
            agent(at)
            agent(at + 0.1, "ANSWER")
    end = now + 30.0
    out.extend(c.handle(ChannelHungup(server="pbx", ts=end, call_id=uid, uniqueid=uid, channel=chan, cause=16,
                                      cause_txt="Normal Clearing"), end))
    return out


@settings(max_examples=200, deadline=None)
# the boundary, always: a lead abandoned (safe harbour) and due again after 1 h is looked at 71.5 h and 72 h later
@example(steps=[(0.0, 1, [], []), (0.0, 0, [], ["safe-harbour"]), (71.5 * 3600, 1, [], []), (0.5 * 3600, 1, [], [])],
         abandoned_retry_h=1.0, zones=[""], mode="progressive")
@given(steps=st.lists(uk_step, min_size=1, max_size=30), abandoned_retry_h=st.floats(0, 80),
       zones=st.lists(lead_zones, min_size=1, max_size=6), mode=st.sampled_from(["progressive", "predictive"]))
def test_uk_never_redials_within_72_hours_of_an_abandon(steps: list[Any], abandoned_retry_h: float,
                                                        zones: list[str], mode: str) -> None:
    """uk_ofcom, whatever the calls' outcomes and the time between them (abandons by the safe-harbour message, by
    a person hanging up in the silence, by a late agent; machines, busy, no answer, connected), and whatever
    retry delay is configured: no number is dialled within 72 h after an abandoned call to it, nor outside its
    calling window, nor while on the do-not-call list, nor twice at once."""
    s = CampaignSettings.model_validate({
        "name": "renewals", "queue": "sales", "leads": "store", "policy": "uk_ofcom", "amd_accuracy": 0.99,
        "mode": mode, "max_attempts": 50, "calling_window": {"start": "08:00", "end": "21:00"},
        "retry_after": {"abandoned": abandoned_retry_h * 3600, "busy": 60, "noanswer": 600, "machine": 3600,
                        "hangup": 60}})
    c = Campaign(s, server="pbx", dial_template="PJSIP/{number}@trunk")
    leads = [Lead(f"L{i}", NUMBERS[i], timezone=z) for i, z in enumerate(zones)]
    c.load(leads, UK_T0)
    zone_of = {lead.lead_id: (lead.timezone.split() or ["UTC"]) for lead in leads}
    abandoned_at: dict[str, float] = {}  # number -> when its last abandoned call ended
    dnc: set[str] = set()
    open_refs: dict[str, str] = {}  # lead -> its open attempt
    now, uid = UK_T0, 0
    for passing, idle, blocked, outcomes in steps:
        now += passing
        dnc.update(blocked)
        c.block_numbers(blocked)
        for e in c.pace(now, idle):
            if not isinstance(e, AttemptStarted):  # a pacing-step warning (a step down to preview, and back)
                assert isinstance(e, DialerWarning) and e.code == "pacing-step"
                continue
            for o in c.persisted(e.ref, now):
                if not isinstance(o, Originate):
                    continue
                lead_id, number = o.variables["CTI_LEAD_ID"], o.variables["CTI_LEAD_NUMBER"]
                last = abandoned_at.get(number)
                assert last is None or now >= last + 72 * 3600, \
                    f"{lead_id} dialled {(now - last) / 3600:.1f} h after an abandoned call"
                if last is not None:
                    event("a number dialled again after an abandoned call")
                assert number not in dnc, f"{lead_id} dialled on the do-not-call list"
                assert inside(now, zone_of[lead_id], (8 * 60, 21 * 60)), f"{lead_id} dialled outside its window"
                assert lead_id not in open_refs, f"{lead_id} dialled twice at once"
                open_refs[lead_id] = o.ref
        for outcome, (lead_id, ref) in zip(outcomes, list(open_refs.items()), strict=False):
            if open_refs.get(lead_id) != ref:
                continue  # ended meanwhile (a timer of the campaign's: safe harbour, the watchdog)
            uid += 1
            for e in _end(c, ref, f"u{uid}", outcome, now):
                if isinstance(e, AttemptFinished):  # this attempt, or another one a timer ended
                    del open_refs[e.lead_id]
                    if e.result == "abandoned" or e.late:
                        abandoned_at[c.leads[e.lead_id].number] = e.ts
                        event("an abandoned call")
        now += 60.0  # the calls above took their seconds
