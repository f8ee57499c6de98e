"""Staffing: Erlang C against published tables and the factorial formula, Erlang A against a brute-force
birth-death solution, its endless-patience limit and the ACD in virtual time; the agents-needed search;
forecasts from CSV (file:line errors) and from stored records (SQLite and PostgreSQL); ``cti staffing``."""

from __future__ import annotations

import io
import json
import math
from datetime import datetime
from fractions import Fraction
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from sqlalchemy import insert

from acd.erlang import erlang_c, erlang_c_figures, erlang_c_many, erlang_c_table, service_level
from acd.erlang_a import erlang_a
from acd.events import AgentStateChanged, QueueCallFinished
from acd.staffing import ForecastInterval, Model, ServiceTarget, agents_needed, staffing_plan
from acd.staffing_forecast import ForecastError, read_forecast
from acd.staffing_history import PastCall, StateChange, forecast_from_calls, logged_in_per_interval
from acd.tables import AgentStateRecord, QueueCallRecord, row_for
from cti.db import make_engine
from tests.test_acd_erlang import Centre

# ---- Erlang C

# Probability of waiting for 10 Erlangs offered to N agents, as tabulated (e.g. Cooper, "Introduction to
# Queueing Theory", table of C(N, A); Koole, "Call Center Mathematics" ch. 5), to 4 decimals.
PUBLISHED_C_10 = {11: 0.6821, 12: 0.4494, 13: 0.2853, 14: 0.1741, 15: 0.1020}


def exact_erlang_c(a: int, n: int) -> Fraction:
    """Erlang C by its definition, in exact rationals (an independent check of the recursion)."""
    top = Fraction(a ** n, math.factorial(n)) * Fraction(n, n - a)
    return top / (sum(Fraction(a ** k, math.factorial(k)) for k in range(n)) + top)


def test_erlang_c_matches_the_published_table_and_the_exact_formula() -> None:
    """C(N, 10 Erlangs) for N = 11..15 is the tabulated value to 4 decimals, scalar and vectorised, and the
    exact rational formula to 1e-12; overloaded counts give 1."""
    many = erlang_c_many(10.0, np.array([9, 10, 11, 12, 13, 14, 15]))
    assert many[0] == many[1] == 1.0
    for i, (n, published) in enumerate(PUBLISHED_C_10.items()):
        assert round(erlang_c(10.0, n), 4) == published
        assert round(float(many[i + 2]), 4) == published
        assert float(many[i + 2]) == pytest.approx(float(exact_erlang_c(10, n)), abs=1e-12)
    big = erlang_c_many(900.0, np.array([950, 1000]))  # large centres stay finite and in (0, 1)
    assert 0 < big[1] < big[0] < 1


def test_erlang_c_classic_example_service_level_and_asa() -> None:
    """100 calls in 30 minutes at 180 s AHT are 10 Erlangs; 13 agents answer 79.56% within 20 s with an
    ASA of 17.1 s, 14 agents 88.8% (so 80/20 needs 14)."""
    rate = 100 / 1800
    f13, f14 = erlang_c_figures(rate, 180, 13, 20), erlang_c_figures(rate, 180, 14, 20)
    c13 = float(exact_erlang_c(10, 13))
    assert f13.service_level == pytest.approx(1 - c13 * math.exp(-3 * 20 / 180), abs=1e-12)
    assert round(f13.service_level, 4) == 0.7956 and round(f14.service_level, 3) == 0.888
    assert f13.asa == pytest.approx(c13 * 180 / 3) and round(f13.asa, 1) == 17.1
    assert f13.occupancy == pytest.approx(10 / 13) and f13.p_abandon == 0
    assert agents_needed(Model.ERLANG_C, rate, 180, None, ServiceTarget(80, 20)).agents == 14
    table = erlang_c_table(rate, 180, np.arange(8, 17), 20)
    assert table.service_level[5] == pytest.approx(f13.service_level) and table.asa[5] == pytest.approx(f13.asa)
    assert table.service_level[6] == pytest.approx(f14.service_level) and table.occupancy[5] == pytest.approx(10 / 13)
    assert list(table.service_level[:3]) == [0.0, 0.0, 0.0] and np.isinf(table.asa[:3]).all()
    assert np.all(np.diff(table.service_level) >= 0)
    assert service_level(rate, 180, 14, 20) == pytest.approx(f14.service_level)


# ---- Erlang A


def brute_force_erlang_a(rate: float, aht: float, patience: float, n: int, t: float,
                         states: int = 160) -> dict[str, float]:
    """M/M/n+M by brute force: the stationary law of the truncated birth-death generator (a linear solve),
    and for the tagged arrival the absorbing chain of its place in the queue: answered by t from its
    backward equations (RK4), answered and waited from the fundamental matrix."""
    mu, th = 1 / aht, 1 / patience
    q = np.zeros((states + 1, states + 1))
    for k in range(states + 1):
        if k < states:
            q[k, k + 1] = rate
        if k:
            q[k, k - 1] = min(k, n) * mu + max(k - n, 0) * th
        q[k, k] = -q[k].sum()
    pi = np.linalg.lstsq(np.vstack([q.T, np.ones(states + 1)]), np.r_[np.zeros(states + 1), 1.0], rcond=None)[0]
    m = states - n + 1  # the tagged caller's places: 0..m-1 callers ahead; then answered, abandoned
    g = np.zeros((m + 2, m + 2))
    for i in range(m):
        g[i, i - 1 if i else m] = n * mu + i * th
        g[i, m + 1] = th
        g[i, i] = -(n * mu + (i + 1) * th)
    answered_by_t = _answered_by(g, m, t)
    fundamental = np.linalg.inv(-g[:m, :m])  # expected time in each place
    answered = fundamental @ np.r_[n * mu, np.zeros(m - 1)]
    waited_answered = fundamental @ answered
    p_queue = pi[n:states + 1]
    p_ans = pi[:n].sum() + (p_queue * answered).sum()
    return {"p_wait": pi[n:].sum(), "p_abandon": 1 - p_ans,
            "service_level": pi[:n].sum() + (p_queue * answered_by_t).sum(),
            "asa": (p_queue * waited_answered).sum() / p_ans, "mean_wait": (p_queue * fundamental.sum(1)).sum()}


def _answered_by(g: np.ndarray, m: int, t: float) -> np.ndarray:
    """P(answered by t | start in place i) for i < m: u' = G u over the transient places, u(0) = 0, with the
    answered state held at 1; RK4 on the bidiagonal generator in vector operations (no BLAS: its threads
    crawl on a loaded machine)."""
    out_rate = -np.diag(g)[:m]
    up_rate = np.array([g[i, i - 1] for i in range(1, m)])  # from place i to i - 1
    to_answer = g[0, m]

    def deriv(u: np.ndarray) -> np.ndarray:
        d = -out_rate * u
        d[0] += to_answer  # place 0 -> answered (held at 1)
        d[1:] += up_rate * u[:-1]
        return d

    steps = max(1, int(np.ceil(8 * out_rate.max() * t)))
    h, u = t / steps, np.zeros(m)
    for _ in range(steps):
        k1 = deriv(u)
        k2 = deriv(u + h / 2 * k1)
        k3 = deriv(u + h / 2 * k2)
        k4 = deriv(u + h * k3)
        u = u + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return u


@pytest.mark.parametrize(("rate", "aht", "patience", "n", "t"), [
    (10 / 60, 180, 120, 28, 20),  # 30 Erlangs on 28 agents: overloaded, abandons keep it stable
    (100 / 1800, 180, 60, 9, 20),
    (1 / 30, 300, 600, 8, 30),
    (2.0, 5, 3, 10, 2),
    (0.02, 120, 400, 4, 0),  # threshold 0: only the callers answered at once
])
def test_erlang_a_agrees_with_a_brute_force_birth_death_solution(rate: float, aht: float, patience: float, n: int,
                                                                 t: float) -> None:
    """Waiting, abandonment, service level, ASA and mean wait agree with the brute-force CTMC to 1e-8."""
    f = erlang_a(rate, aht, patience, n, t)
    ref = brute_force_erlang_a(rate, aht, patience, n, t)
    for key, value in ref.items():
        assert getattr(f, key) == pytest.approx(value, rel=1e-7, abs=1e-9), key
    assert f.occupancy == pytest.approx(rate * aht * (1 - f.p_abandon) / n)


def test_erlang_a_with_endless_patience_is_erlang_c() -> None:
    """Patience of 10^9 s: the figures are Erlang C's (10 Erlangs, 11..15 agents) and hardly anyone abandons."""
    for n in PUBLISHED_C_10:
        a, c = erlang_a(100 / 1800, 180, 1e9, n, 20), erlang_c_figures(100 / 1800, 180, n, 20)
        assert a.p_wait == pytest.approx(c.p_wait, rel=1e-5)
        assert a.service_level == pytest.approx(c.service_level, rel=1e-5)
        assert a.asa == pytest.approx(c.asa, rel=1e-5) and a.p_abandon < 1e-6


def test_erlang_a_edges() -> None:
    """No calls: all answered; no agents: all abandon; very few calls per agent: nobody waits; a huge
    patience under overload is refused with a hint instead of summing millions of states."""
    assert erlang_a(0.0, 100, 60, 3, 20).service_level == 1.0
    assert erlang_a(0.1, 100, 60, 0, 20).p_abandon == 1.0
    f = erlang_a(0.001, 60, 60, 400, 20)
    assert f.p_wait == 0.0 and f.service_level == 1.0
    with pytest.raises(ValueError, match="patience as endless"):
        erlang_a(10.0, 100, 1e9, 100, 20)


def test_simulated_acd_with_impatient_callers_agrees_with_erlang_a() -> None:
    """The ACD in virtual time (AcdService, Poisson arrivals, exponential talk and patience: M/M/8+M at 9
    Erlangs, patience 60 s, 20,000 callers): abandonment within 2.5 points, answered within 20 s within 5
    points and ASA within 20% of Erlang A. Sixteen seeds at 7,000 callers had standard deviations of 1.1
    points, 2.4 points and 7% (means 18.9%, 63.5%, 10.6 s against 19.2%, 62.8%, 10.9 s); at 20,000 about
    0.65, 1.4 and 4.5%, so the bounds are about 3.5 standard deviations."""
    c = Centre(n_agents=8, rate=9 / 60, aht=60.0, seed=2027, patience=60.0)
    c.run(20_000)
    rows = {r.uniqueid: r for r in c.rows}
    kept = [rows[f"u{i}"] for i in range(1000, 20_000)]  # the first 1,000 callers are warm-up
    abandoned = np.mean([r.outcome == "abandoned" for r in kept])
    in_target = np.mean([r.outcome == "answered" and r.wait <= 20 for r in kept])
    asa = np.mean([r.wait for r in kept if r.outcome == "answered"])
    f = erlang_a(9 / 60, 60, 60, 8, 20)
    assert abs(abandoned - f.p_abandon) <= 0.025, (abandoned, f.p_abandon)
    assert abs(in_target - f.service_level) <= 0.05, (in_target, f.service_level)
    assert abs(asa - f.asa) <= 0.2 * f.asa, (asa, f.asa)
    assert erlang_c_figures(9 / 60, 60, 8, 20).service_level == 0.0  # Erlang C has no steady state here


# ---- agents needed


@pytest.mark.parametrize("model", [Model.ERLANG_C, Model.ERLANG_A])
def test_agents_needed_is_the_fewest_meeting_the_target(model: Model) -> None:
    """One agent fewer misses the target; with an abandonment ceiling Erlang A may need more."""
    target = ServiceTarget(80, 20)
    for rate, aht in ((100 / 1800, 180), (3.0, 240), (0.001, 300)):
        f = agents_needed(model, rate, aht, 90.0, target)
        below = erlang_c_figures(rate, aht, f.agents - 1, 20) if model is Model.ERLANG_C \
            else erlang_a(rate, aht, 90.0, f.agents - 1, 20)
        assert target.met_by(f) and not target.met_by(below)
    loose = agents_needed(Model.ERLANG_A, 0.5, 300, 30.0, ServiceTarget(50, 60))
    strict = agents_needed(Model.ERLANG_A, 0.5, 300, 30.0, ServiceTarget(50, 60, max_abandon=1))
    assert strict.agents > loose.agents and strict.p_abandon <= 0.01 < loose.p_abandon
    assert agents_needed(Model.ERLANG_C, 0.0, 300, None, target).agents == 0
    with pytest.raises(ValueError, match="more than 50 agents"):
        agents_needed(Model.ERLANG_C, 1.0, 300, None, target, max_agents=50)


def test_service_target_parsing() -> None:
    assert ServiceTarget.parse("90/15") == ServiceTarget(90, 15)
    assert ServiceTarget.parse("80%/20s") == ServiceTarget(80, 20)
    for bad in ("80", "x/20", "100/20", "80/-1"):
        with pytest.raises(ValueError, match="PERCENT/SECONDS"):
            ServiceTarget.parse(bad)


# ---- forecasts


def test_forecast_csv_rows_and_errors() -> None:
    """A good file gives its intervals (patience optional, several queues); every bad row is named by
    file:line with what was expected, and nothing is returned."""
    good = "start,calls,aht,patience,queue\n09:00,100,180,120,sales\n09:15,12.5,200,,sales\n09:00,3,60,,help\n"
    ivs = read_forecast(io.StringIO(good), "f.csv", 15)
    assert ivs[0] == ForecastInterval("09:00", 100, 180, 120, "sales") and ivs[1].patience is None
    assert [iv.queue for iv in ivs] == ["sales", "sales", "help"]
    bad = ("Start,Calls,AHT\n2026-11-23 09:00,10,180\n09:10,10,180\n09:30,-1,180\n09:45,5,0\n10:00,5\n"
           "25:00,1,1\n2026-11-23 09:00,1,1\n" + "1" * 2000 + "\n")
    with pytest.raises(ForecastError) as info:
        read_forecast(io.StringIO(bad), "f.csv", 15)
    assert str(info.value).splitlines() == [
        "f.csv:3: start: '09:10' is not on a 15-minute boundary (--interval)",
        "f.csv:4: calls: expected a number >= 0, got '-1'",
        "f.csv:5: aht: expected a number > 0, got '0'",
        "f.csv:6: 2 fields, the header has 3",
        "f.csv:7: start: not a time of day: '25:00'",
        "f.csv:8: interval 2026-11-23 09:00 already given on line 2",
        "f.csv:9: line longer than 1000 characters"]
    with pytest.raises(ForecastError, match="f.csv:1: expected a header naming start, calls and aht.*missing aht"):
        read_forecast(io.StringIO("start,calls\n09:00,1\n"), "f.csv", 15)


def test_staffing_plan_needs_a_patience_for_erlang_a() -> None:
    ivs = [ForecastInterval("09:00", 100, 180, None, "q")]
    with pytest.raises(ValueError, match="interval 09:00 q: Erlang A needs a patience"):
        staffing_plan(ivs, 1800, Model.ERLANG_A, ServiceTarget())
    assert staffing_plan(ivs, 1800, Model.ERLANG_A, ServiceTarget(), default_patience=120)[0].figures.agents == 12


PARIS = ZoneInfo("Europe/Paris")


def _at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=PARIS).timestamp()


def _past(queue: str, entered: str, wait: float, outcome: str, talk: float = 0.0,
          wrapup: float = 0.0) -> QueueCallFinished:
    t = _at(entered)
    return QueueCallFinished(ts=t + wait + talk, server="p", uniqueid=f"{queue}{t}{wait}", call_id="c", queue=queue,
                             entered=t, outcome=outcome, wait=wait, talk=talk, wrapup=wrapup,
                             answered_at=t + wait if outcome == "answered" else None)


def _state(agent: str, at: str, state: str, previous: str, since: str) -> AgentStateChanged:
    return AgentStateChanged(ts=_at(at), agent_id=agent, state=state, previous=previous, reason="", since=_at(since))


RECORDS: list[object] = [
    _past("sales", "2026-11-16 09:00", 5, "answered", 50),  # the week before: left out
    _past("sales", "2026-11-23 09:01", 10, "answered", 100, 20),
    _past("sales", "2026-11-23 09:05", 30, "answered", 200),
    _past("sales", "2026-11-23 09:10", 40, "abandoned"),
    _past("sales", "2026-11-23 09:14", 60, "overflowed"),
    _past("sales", "2026-11-23 09:20", 20, "abandoned"),
    _past("support", "2026-11-24 10:00", 15, "abandoned"),  # no answered call: no handle time
    _past("sales", "2026-11-30 00:00", 5, "answered", 50),  # the week after: left out
    _state("a1", "2026-11-20 08:00", "ready", "logged_out", "2026-11-20 07:00"),  # logged in all week
    _state("a2", "2026-11-23 09:05", "ready", "logged_out", "2026-11-22 18:00"),
    _state("a2", "2026-11-23 09:20", "logged_out", "ready", "2026-11-23 09:05"),
]


def test_forecast_from_calls_and_logged_in_agents() -> None:
    """Calls per interval, AHT of the answered (the queue's where none), patience = all waiting time /
    abandons over the queue's week; logged-in agents averaged over each interval."""
    calls = [PastCall(e.queue, e.entered, e.wait, e.outcome, e.talk + e.wrapup)
             for e in RECORDS[1:7] if isinstance(e, QueueCallFinished)]
    got = forecast_from_calls(calls, 900, PARIS)
    assert got["sales"] == [ForecastInterval("2026-11-23 09:00", 4, 160, 80, "sales"),
                            ForecastInterval("2026-11-23 09:15", 1, 160, 80, "sales")]
    assert got["support"] == []
    assert forecast_from_calls(calls, 900, PARIS, default_aht=100)["support"][0].aht == 100
    changes = [StateChange(e.agent_id, e.ts, e.state, e.previous, e.ts - e.since)
               for e in RECORDS if isinstance(e, AgentStateChanged)]
    start, end = _at("2026-11-23 00:00"), _at("2026-11-30 00:00")
    logged = logged_in_per_interval(changes, start, end, 900, PARIS)
    assert logged["2026-11-23 09:00"] == pytest.approx(1 + 10 / 15)
    assert logged["2026-11-23 09:15"] == pytest.approx(1 + 5 / 15)
    assert logged["2026-11-29 23:45"] == 1.0 and len(logged) == 7 * 96
    only_a2 = logged_in_per_interval(changes, start, end, 900, PARIS, frozenset({"a2"}))
    assert only_a2 == pytest.approx({"2026-11-23 09:00": 10 / 15, "2026-11-23 09:15": 5 / 15})


def fill_records(url: str) -> str:
    """``url`` with RECORDS in the ACD's tables."""
    engine = make_engine(url)
    try:
        QueueCallRecord.metadata.create_all(engine, tables=[QueueCallRecord.__table__, AgentStateRecord.__table__])
        with engine.begin() as conn:
            for i, event in enumerate(RECORDS):
                row = row_for(event, str(i))
                assert row is not None
                conn.execute(insert(row[0]).values(**row[1]))
    finally:
        engine.dispose()
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def records_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database holding RECORDS: a SQLite file, or a PostgreSQL database of its own."""
    if request.param == "sqlite":
        return fill_records(f"sqlite:///{tmp_path}/records.sqlite3")
    return fill_records(request.getfixturevalue("pg_url"))


def test_staffing_command_from_records(records_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`cti staffing --from-records --week-of` reads that week only, per queue, with the logged-in agents;
    a queue without a handle time is named with the hint."""
    from centre.cli import main

    assert main(["staffing", "--from-records", "--db", records_db, "--week-of", "2026-11-26", "--tz", "Europe/Paris",
                 "--model", "erlang-a", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    sales, support = out["queues"]
    assert sales["queue"] == "sales" and sales["model"] == "erlang-a"
    first, second = sales["intervals"]
    assert (first["start"], first["calls"], first["aht"], first["patience"]) == ("2026-11-23 09:00", 4, 160, 80)
    assert first["logged_in"] == pytest.approx(1.67, abs=0.01) and second["logged_in"] == pytest.approx(1.33, abs=0.01)
    f = erlang_a(4 / 900, 160, 80, first["agents"], 20)
    assert first["service_level"] == round(f.service_level, 4) and first["service_level"] >= 0.8
    assert support["intervals"] == [] and any("--aht" in n for n in support["notes"])
    assert main(["staffing", "--from-records", "--db", records_db, "--week-of", "2026-12-10", "--tz", "UTC"]) == 2
    assert "no queue calls in the records for the week of 2026-12-07 (UTC)" in capsys.readouterr().err


CONFIG = """\
database:
  url: {url}
acd:
  timezone: Europe/Paris
  agents:
    - {{id: a1, name: A, endpoint: PJSIP/a1, skills: {{sales: 1}}}}
    - {{id: a2, name: B, endpoint: PJSIP/a2, skills: {{support: 1}}}}
  queues:
    - {{name: sales, skills: {{sales: 1}}, service_level: {{percent: 90, seconds: 30}}}}
    - {{name: support, skills: {{support: 1}}}}
statistics:
  interval_minutes: 30
"""


def test_staffing_command_from_records_with_a_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """With --config: the database, time zone, interval length and each queue's target come from it, and a
    queue's logged-in agents are its members only."""
    from centre.cli import main

    url = fill_records(f"sqlite:///{tmp_path}/records.sqlite3")
    config = tmp_path / "centre.yaml"
    config.write_text(CONFIG.format(url=url))
    assert main(["staffing", "--from-records", "--config", str(config), "--week-of", "2026-11-23", "--queue", "sales",
                 "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["interval_minutes"] == 30 and len(out["queues"]) == 1
    sales = out["queues"][0]
    assert sales["target"] == {"percent": 90, "seconds": 30, "max_abandon": None} and sales["notes"] == []
    (only,) = sales["intervals"]
    assert (only["start"], only["calls"], only["logged_in"]) == ("2026-11-23 09:00", 5, 1.0)
    assert erlang_c_figures(5 / 1800, 160, only["agents"], 30).service_level >= 0.9


def test_staffing_command_from_a_forecast(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The table names the model and target and gives one line per interval; CSV carries the same numbers;
    a bad row exits 2 naming file:line, so does a records option; `cti acd-staffing` still works."""
    from centre.cli import main

    path = tmp_path / "forecast.csv"
    path.write_text("start,calls,aht,patience\n09:00,100,180,120\n09:30,150,200,\n10:00,0,180,60\n")
    assert main(["staffing", "--forecast", str(path), "--interval", "30", "--target", "80/20"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "erlang-c, target 80% within 20 s, 30-minute intervals"
    assert lines[2].split() == ["09:00", "100.0", "180.0", "120.0", "14", "88.8", "7.8", "0.0", "71.4"]
    assert lines[4].split()[4] == "0"
    assert main(["staffing", "--forecast", str(path), "--interval", "30", "--model", "erlang-a", "--patience", "90",
                 "--format", "csv"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[0].startswith("queue,start,calls,aht,patience,agents,logged_in,service_level,asa,abandon")
    assert rows[1].split(",")[:6] == ["", "09:00", "100.0", "180.0", "120.0", "12"]
    path.write_text("start,calls,aht\n09:00,lots,180\n")
    assert main(["staffing", "--forecast", str(path)]) == 2
    assert f"{path}:2: calls: expected a number, got 'lots'" in capsys.readouterr().err
    assert main(["staffing", "--forecast", str(tmp_path / "none.csv")]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert main(["staffing", "--forecast", str(path), "--week-of", "2026-11-23"]) == 2
    assert "--week-of: only with --from-records" in capsys.readouterr().err
    assert main(["acd-staffing", "--calls-per-hour", "200", "--aht", "180"]) == 0
    assert "-> 14 agents" in capsys.readouterr().out
