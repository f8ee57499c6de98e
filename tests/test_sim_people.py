"""People models (sim/people.py) and the sim: config section (sim/settings.py): seeded, reproducible,
statistically what the settings say, and robust to how the simulation asks for numbers."""

from __future__ import annotations

import re
import statistics
from collections import Counter

import numpy as np
import pytest

from config.load import ConfigError, load_config_text
from sim.people import (
    AgentPhones,
    InboundArrival,
    InboundTraffic,
    OutboundCustomers,
    child_rng,
    root_rng,
    stable_key,
)
from sim.settings import LogNormal, SimSection

T0 = 1_767_225_600.0  # 2026-01-01 00:00:00 UTC


def settings(**data: object) -> SimSection:
    return SimSection.model_validate(data)


def traffic(s: SimSection) -> InboundTraffic:
    return InboundTraffic(s, root_rng(s))


def test_same_seed_same_arrivals_other_seed_differs() -> None:
    """Two runs with the same seed and settings produce identical arrivals; another seed does not."""
    s = settings(seed=7, inbound=[{"did": "+15550100", "rate_per_hour": 600}])
    a = traffic(s).arrivals(T0, T0 + 3600)
    b = traffic(s).arrivals(T0, T0 + 3600)
    c = traffic(settings(seed=8, inbound=[{"did": "+15550100", "rate_per_hour": 600}])).arrivals(T0, T0 + 3600)
    assert a == b
    assert a != c
    assert all(isinstance(x, InboundArrival) for x in a)


def test_windows_do_not_change_the_stream() -> None:
    """Asking for arrivals hour by hour gives exactly the arrivals of one big window."""
    s = settings(seed=3, inbound=[{"did": "+15550100", "rate_per_hour": 300},
                                  {"did": "+15550200", "rate_per_hour": 90}])
    whole = traffic(s).arrivals(T0, T0 + 4 * 3600)
    chunked_model = traffic(s)
    chunked: list[InboundArrival] = []
    for h in range(4):
        chunked.extend(chunked_model.arrivals(T0 + h * 3600, T0 + (h + 1) * 3600))
    assert whole == chunked
    assert [a.at for a in whole] == sorted(a.at for a in whole)


def test_gap_skips_arrivals_without_shifting_later_ones() -> None:
    """Skipping a window drops its arrivals but leaves the later arrivals unchanged."""
    s = settings(seed=5, inbound=[{"did": "+15550100", "rate_per_hour": 400}])
    whole = traffic(s).arrivals(T0, T0 + 7200)
    model = traffic(s)
    first = model.arrivals(T0, T0 + 600)
    later = model.arrivals(T0 + 3600, T0 + 7200)
    assert first == [a for a in whole if a.at < T0 + 600]
    assert later == [a for a in whole if a.at >= T0 + 3600]


def test_windows_must_not_go_back() -> None:
    """A window before the previous one, or ending before it starts, is refused."""
    model = traffic(settings())
    model.arrivals(T0, T0 + 60)
    with pytest.raises(ValueError, match="before the previous window"):
        model.arrivals(T0 + 30, T0 + 90)
    with pytest.raises(ValueError, match="before start"):
        model.arrivals(T0 + 100, T0 + 90)


def test_poisson_rate_and_exponential_gaps() -> None:
    """360 calls/hour over 10 hours gives about 3600 calls with exponential inter-arrival gaps (mean 10 s)."""
    s = settings(seed=11, inbound=[{"did": "+15550100", "rate_per_hour": 360}])
    arrivals = traffic(s).arrivals(T0, T0 + 36_000)
    assert abs(len(arrivals) - 3600) < 4 * 60  # 4 sigma of a Poisson(3600)
    gaps = np.diff([a.at for a in arrivals])
    assert abs(gaps.mean() - 10.0) < 0.7
    assert abs(np.median(gaps) - 10.0 * np.log(2)) < 0.8  # exponential: median = mean * ln 2


def test_time_of_day_profile_shapes_arrivals() -> None:
    """Hours with multiplier 0 get no calls; an hour with multiplier 2 gets about twice the calls of 1."""
    profile = [0.0] * 24
    profile[9] = 1.0
    profile[10] = 2.0
    s = settings(seed=2, timezone="UTC", inbound=[{"did": "+15550100", "rate_per_hour": 500, "profile": profile}])
    arrivals = traffic(s).arrivals(T0, T0 + 20 * 86_400)
    hours = Counter(int((a.at - T0) // 3600) % 24 for a in arrivals)
    assert set(hours) == {9, 10}
    assert 1.8 < hours[10] / hours[9] < 2.2


def test_profile_follows_configured_time_zone() -> None:
    """The profile's hours are local hours of sim.timezone (New York is UTC-5 in January)."""
    profile = [0.0] * 24
    profile[9] = 1.0
    s = settings(seed=2, timezone="America/New_York",
                 inbound=[{"did": "+15550100", "rate_per_hour": 200, "profile": profile}])
    arrivals = traffic(s).arrivals(T0, T0 + 3 * 86_400)
    assert arrivals
    assert {int((a.at - T0) // 3600) % 24 for a in arrivals} == {14}


def test_adding_a_did_does_not_shift_another() -> None:
    """The arrivals of one DID are the same whether or not another DID is configured."""
    one = settings(seed=9, inbound=[{"did": "+15550100", "rate_per_hour": 200}])
    two = settings(seed=9, inbound=[{"did": "+15550999", "rate_per_hour": 500},
                                    {"did": "+15550100", "rate_per_hour": 200}])
    a = traffic(one).arrivals(T0, T0 + 3600)
    b = [x for x in traffic(two).arrivals(T0, T0 + 3600) if x.did == "+15550100"]
    assert a == b


def test_caller_numbers_known_share_and_flow() -> None:
    """Callers get E.164-like numbers; about known_customer_share of them come from the known pool; each
    arrival carries its DID's flow."""
    known = [f"+4420700000{i:02d}" for i in range(20)]
    s = settings(seed=4, inbound=[{"did": "+15550100", "rate_per_hour": 3000, "flow": "sales"}],
                 callers={"known_customers": known, "known_customer_share": 0.4})
    arrivals = traffic(s).arrivals(T0, T0 + 3600)
    assert all(re.fullmatch(r"\+\d{11,12}", a.caller_num) for a in arrivals)
    share = sum(a.caller_num in known for a in arrivals) / len(arrivals)
    assert 0.35 < share < 0.45
    assert {a.flow for a in arrivals} == {"sales"}
    assert all(a.caller_name and " " in a.caller_name for a in arrivals)


def test_ivr_scripts_patience_think_time_and_ivr_hangups() -> None:
    """IVR key scripts follow their weights; patience is exponential with the configured mean; think
    times have the configured median; IVR hang-ups happen with their probability, within the window."""
    s = settings(seed=6, inbound=[{"did": "+15550100", "rate_per_hour": 6000}],
                 callers={"ivr_scripts": [{"weight": 3, "keys": ["1"]}, {"weight": 1, "keys": ["2", "1234#"]}],
                          "patience_mean_s": 60, "think_time_s": 2.0, "hangup_in_ivr_prob": 0.25,
                          "hangup_in_ivr_within_s": 20})
    arrivals = traffic(s).arrivals(T0, T0 + 3600)
    keys = Counter(a.keys for a in arrivals)
    assert set(keys) == {("1",), ("2", "1234#")}
    assert 2.6 < keys[("1",)] / keys[("2", "1234#")] < 3.4
    assert abs(statistics.fmean(a.patience for a in arrivals) - 60) < 4
    assert abs(statistics.median(a.think_time for a in arrivals) - 2.0) < 0.1
    hangs = [a.hangup_in_ivr_after for a in arrivals if a.hangup_in_ivr_after is not None]
    assert 0.22 < len(hangs) / len(arrivals) < 0.28
    assert all(1.0 <= h <= 20.0 for h in hangs)


def test_zero_rate_gives_no_calls() -> None:
    """A DID with rate 0 never rings."""
    assert traffic(settings(inbound=[{"did": "+15550100", "rate_per_hour": 0}])).arrivals(T0, T0 + 86_400) == []


def test_agent_phone_outcomes_follow_probabilities() -> None:
    """Ring outcomes split into unavailable / busy / no answer / answered as configured, with answer
    delays above the minimum and around the mean."""
    s = settings(agents={"unavailable_prob": 0.1, "busy_prob": 0.2, "no_answer_prob": 0.1,
                         "answer_delay_s": {"mean_s": 4.0, "sd_s": 1.0, "min_s": 1.0}})
    phones = AgentPhones(s, root_rng(s))
    outcomes = [phones.ring_outcome("PJSIP/1001", float(i)) for i in range(10_000)]
    unavailable = sum(o.unavailable for o in outcomes) / len(outcomes)
    busy = sum(o.busy for o in outcomes) / len(outcomes)
    silent = sum(o.answer_after is None and not o.busy and not o.unavailable for o in outcomes) / len(outcomes)
    answered = [o.answer_after for o in outcomes if o.answer_after is not None]
    assert abs(unavailable - 0.1) < 0.02 and abs(busy - 0.2) < 0.02 and abs(silent - 0.1) < 0.02
    assert min(answered) >= 1.0
    assert abs(statistics.fmean(answered) - 4.0) < 0.1


def test_agent_streams_are_per_endpoint() -> None:
    """What one agent's phone does does not depend on how often another agent was asked."""
    s = settings(agents={"no_answer_prob": 0.3})
    a = AgentPhones(s, root_rng(s))
    b = AgentPhones(s, root_rng(s))
    for _ in range(7):
        b.ring_outcome("PJSIP/2002", 0.0)
        b.talk_time("PJSIP/2002")
    first = [a.ring_outcome("PJSIP/1001", 0.0) for _ in range(20)]
    assert first == [b.ring_outcome("PJSIP/1001", 0.0) for _ in range(20)]
    assert a.talk_time("PJSIP/1001") == b.talk_time("PJSIP/1001")
    assert a.wrapup_time("PJSIP/1001") == b.wrapup_time("PJSIP/1001")


def test_talk_and_wrapup_distributions() -> None:
    """Talk times are lognormal with the configured median; wrap-ups are truncated normals."""
    s = settings(agents={"talk_time": {"median_s": 120, "sigma": 0.5},
                         "wrapup_s": {"mean_s": 10, "sd_s": 3, "min_s": 2}})
    phones = AgentPhones(s, root_rng(s))
    talks = [phones.talk_time("PJSIP/1001") for _ in range(5000)]
    wraps = [phones.wrapup_time("PJSIP/1001") for _ in range(5000)]
    assert abs(statistics.median(talks) - 120) < 5
    assert abs(statistics.stdev(np.log(talks)) - 0.5) < 0.03
    assert min(wraps) >= 2 and abs(statistics.fmean(wraps) - 10) < 0.3


def test_outbound_outcomes_follow_probabilities() -> None:
    """Outcome kinds follow answer/busy/noanswer/congestion/machine; times fit each kind."""
    s = settings(outbound={"answer": 0.5, "busy": 0.1, "noanswer": 0.2, "congestion": 0.05, "machine": 0.15,
                           "noanswer_ring_s": 45})
    customers = OutboundCustomers(s, root_rng(s))
    outcomes = [customers.outcome(f"+1555{i:07d}") for i in range(10_000)]
    kinds = Counter(o.kind for o in outcomes)
    for kind, p in (("answer", 0.5), ("busy", 0.1), ("noanswer", 0.2), ("congestion", 0.05), ("machine", 0.15)):
        assert abs(kinds[kind] / len(outcomes) - p) < 0.02, kind
    assert all(o.ring_time == 45 for o in outcomes if o.kind == "noanswer")
    assert all(o.talk_time > 0 and o.patience >= 0 for o in outcomes if o.kind == "answer")
    assert all(o.talk_time == 0 and o.patience == 0 for o in outcomes if o.kind in ("busy", "congestion", "noanswer"))
    assert all(o.talk_time >= 2.0 for o in outcomes if o.kind == "machine")


def test_outbound_ring_uniform_fixed_patience_and_amd_accuracy() -> None:
    """The bench's model: answers ring uniformly 4-12 s, every person hangs up after exactly 2 s of silence,
    and AMD is wrong about a tenth of people and machines."""
    s = settings(seed=5, outbound={
        "answer": 0.45, "machine": 0.45, "busy": 0.1, "noanswer": 0.0, "congestion": 0.0,
        "ring_time_s": {"min_s": 4, "max_s": 12}, "silence_patience_s": 2.0, "amd_accuracy": 0.9})
    customers = OutboundCustomers(s, root_rng(s))
    outcomes = [customers.outcome(f"+1555{i:07d}") for i in range(20_000)]
    answered = [o for o in outcomes if o.kind in ("answer", "machine")]
    rings = [o.ring_time for o in answered]
    assert 4.0 <= min(rings) < 4.1 and 11.9 < max(rings) <= 12.0
    assert abs(statistics.fmean(rings) - 8.0) < 0.1 and abs(statistics.pstdev(rings) - 8 / 12 ** 0.5) < 0.1
    assert {o.patience for o in outcomes if o.kind == "answer"} == {2.0}
    for kind in ("answer", "machine"):
        some = [o for o in answered if o.kind == kind]
        assert abs(sum(o.amd_wrong for o in some) / len(some) - 0.1) < 0.015, kind
    # the AMD draw comes after the others: a perfect AMD leaves every other part of the fate as it was
    perfect = settings(seed=5, outbound={**s.outbound.model_dump(), "amd_accuracy": 1.0})
    again = OutboundCustomers(perfect, root_rng(perfect))
    same = [again.outcome(f"+1555{i:07d}") for i in range(2_000)]
    assert not any(o.amd_wrong for o in same)
    assert [(o.kind, o.ring_time, o.talk_time, o.patience) for o in same] == \
        [(o.kind, o.ring_time, o.talk_time, o.patience) for o in outcomes[:2_000]]


def test_lognormal_from_mean_and_sd() -> None:
    """LogNormal.from_mean_sd(120, 60): talk times with that mean and standard deviation."""
    s = settings(seed=9, outbound={"answer": 1.0, "busy": 0.0, "noanswer": 0.0, "congestion": 0.0, "machine": 0.0,
                                   "talk_time": LogNormal.from_mean_sd(120, 60).model_dump()})
    customers = OutboundCustomers(s, root_rng(s))
    talks = [customers.outcome(f"+1555{i:07d}").talk_time for i in range(40_000)]
    assert abs(statistics.fmean(talks) - 120) < 1.5 and abs(statistics.pstdev(talks) - 60) < 2.0
    with pytest.raises(ValueError, match="mean > 0"):
        LogNormal.from_mean_sd(0, 1)


def test_uniform_ring_time_refuses_max_below_min() -> None:
    with pytest.raises(ValueError, match="below min_s"):
        settings(outbound={"ring_time_s": {"min_s": 12, "max_s": 4}})


def test_outbound_fate_independent_of_dial_order() -> None:
    """A number's Nth attempt has the same outcome whatever else was dialled before it."""
    s = settings(seed=21)
    a = OutboundCustomers(s, root_rng(s))
    b = OutboundCustomers(s, root_rng(s))
    for i in range(50):
        b.outcome(f"+1666{i:07d}")
    first = [a.outcome("+15551234567") for _ in range(5)]
    assert first == [b.outcome("+15551234567") for _ in range(5)]
    assert len(set(first)) > 1  # attempts differ from each other


def test_outbound_rejects_probabilities_not_summing_to_one() -> None:
    """Built directly (not through the loader), a bad outbound mix is still refused, naming the keys."""
    s = SimSection.model_validate({"outbound": {"answer": 0.9}})
    with pytest.raises(ValueError, match=r"answer 0\.9 \+ busy .* machine 0\.12"):
        OutboundCustomers(s, root_rng(s))


def test_child_streams_are_stable_and_independent() -> None:
    """child_rng gives the same stream for the same key, another for another key, and does not advance
    its parent; stable_key is fixed across processes."""
    rng = root_rng(settings(seed=1))
    before = rng.bit_generator.state
    x = child_rng(rng, 1, 2).random(3)
    assert rng.bit_generator.state == before
    assert list(x) == list(child_rng(rng, 1, 2).random(3))
    assert list(x) != list(child_rng(rng, 1, 3).random(3))
    assert stable_key("PJSIP/1001") == 0x2924799807E6F267


def test_sim_section_defaults_and_errors() -> None:
    """`sim:` may be omitted; a bad outbound mix, speed or DTMF script gives a file:line error naming the key."""
    cfg = load_config_text("database: {url: 'sqlite://'}\n", "c.yaml")
    assert cfg.sim.seed == 1 and cfg.sim.speed == 1.0 and not cfg.sim.virtual
    assert load_config_text("sim:\n  speed: max\n", "c.yaml").sim.virtual
    bad = ("sim:\n  speed: 0\n  outbound:\n    answer: 0.9\n  callers:\n    ivr_scripts:\n"
           "      - {weight: 1, keys: ['1x']}\n")
    with pytest.raises(ConfigError) as info:
        load_config_text(bad, "c.yaml")
    text = str(info.value)
    assert "c.yaml:2 sim.speed: expected a speed factor > 0" in text
    assert "c.yaml:7 sim.callers.ivr_scripts[0].keys[0]: expected a list of DTMF strings" in text
    with pytest.raises(ConfigError) as info:
        load_config_text("sim:\n  outbound:\n    answer: 0.9\n", "c.yaml")
    assert str(info.value).startswith("c.yaml:2 sim.outbound: outcome probabilities must sum to 1: answer 0.9 + busy")
    with pytest.raises(ConfigError) as info:
        load_config_text("sim:\n  inbound:\n    - {did: '+15550100'}\n    - {did: '+15550100'}\n", "c.yaml")
    assert "c.yaml:4 sim.inbound[1].did: duplicate did '+15550100' (also inbound[0])" in str(info.value)
