"""Property tests (issue 15): whatever the leads, their zones, the do-not-call list and the order of events,
no lead is dialled outside its calling window (in every zone of its number), while on the do-not-call list,
or twice at once."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from cti.commands import Originate
from cti.events import OriginateResult
from dialer.campaign import Campaign, Lead
from dialer.events import AttemptStarted
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
