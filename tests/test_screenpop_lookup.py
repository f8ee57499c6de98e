"""Cached look-ups and pop delivery over a real store (SQLite and PostgreSQL), timed by task.Clock.

Store calls go through ``JobQueue``: it runs them (for real, against the database) when the test says
so, which stands in for the thread pool's timing so that "the store answered after 0.3 s" is
deterministic. One test uses a real thread pool and the project's asyncio reactor loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.threadpool import ThreadPool

from cti.db import make_engine
from cti.events import CallQueued
from cti.reactor import install_reactor, reactor_loop
from cti.threads import thread_runner
from ivr.events import IvrCompleted, PathStep
from ivr.ports import LookupResult
from screenpop.compose import LookupKey, PopContext
from screenpop.context import pop_context
from screenpop.lookup import LookupOutcome, PopLookup, TtlLruCache
from screenpop.settings import ScreenpopSection
from screenpop.store import AccountRecord, CustomerInput, CustomerStore, PhoneRecord
from tests.conftest import POSTGRES_URL
from tests.screenpop_db import database_fixtures, temporary_database

SETTINGS = ScreenpopSection(slow_after=0.25, lookup_timeout=2.0, cache_ttl=30.0,
                            crm_url_template="https://crm.example.com/c/{external_id}")
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


class JobQueue:
    """A ``run_in_thread`` that queues the store calls until ``run()``; they then run for real, in order."""

    def __init__(self) -> None:
        self.jobs: list[tuple[Callable[[], Any], Deferred]] = []

    def __call__(self, fn: Callable[[], Any]) -> Deferred:
        d: Deferred = Deferred()
        self.jobs.append((fn, d))
        return d

    def run(self) -> None:
        while self.jobs:
            fn, d = self.jobs.pop(0)
            try:
                result = fn()
            except Exception:
                d.errback()
            else:
                d.callback(result)


db_url, empty_store = database_fixtures(POSTGRES_URL)


@pytest.fixture
def store(empty_store) -> CustomerStore:
    s = empty_store
    out = s.upsert_customers([
        CustomerInput("C1", "Ann", "Lee", phones=(PhoneRecord("+12015550123"),), accounts=(AccountRecord("ACC-1"),)),
        CustomerInput("C2", "Bob", "Lee", phones=(PhoneRecord("+12015550123"),), accounts=(AccountRecord("ACC-2"),)),
        CustomerInput("C3", "Cy", "Ng", phones=(PhoneRecord("+12125550100"),), accounts=(AccountRecord("ACC-3"),),
                      segment="gold", attributes=(("vip", "yes"),)),
    ])
    s.add_interaction("pbx1/old", started_at=T0, direction="inbound", customer_id=out[2].customer_id,
                      queue="billing", disposition="resolved")
    return s


def make(store: CustomerStore, **kwargs) -> tuple[PopLookup, JobQueue, Clock, list[dict]]:
    jobs, clock = JobQueue(), Clock()
    lookup = PopLookup(store, jobs, clock, cache_ttl=kwargs.pop("cache_ttl", 30.0),
                       cache_size=kwargs.pop("cache_size", 100), slow_after=0.25, settings=SETTINGS, **kwargs)
    return lookup, jobs, clock, []


def call(ani: str = "212-555-0100", **kwargs) -> PopContext:
    return PopContext(call_id=kwargs.pop("call_id", "1700.1"), uniqueid="1700.2", direction="inbound", ani=ani,
                      queue="billing", server="pbx1", **kwargs)


def test_fast_store_sends_one_complete_pop(store):
    """When the store answers before slow_after, the agent gets one complete pop and no timer is left."""
    lookup, jobs, clock, sent = make(store)
    done = lookup.pop(call(), sent.append)
    assert sent == []
    clock.advance(0.1)
    jobs.run()
    assert [(m["type"], m["complete"], m["lookup"]["status"]) for m in sent] == [("pop", True, "found")]
    assert sent[0]["customer"]["profile"]["external_id"] == "C3"
    assert [i["call_key"] for i in sent[0]["customer"]["interactions"]] == ["pbx1/old"]
    assert sent[0]["crm_url"] == "https://crm.example.com/c/C3"
    assert done.called and clock.getDelayedCalls() == []


def test_slow_store_sends_partial_pop_then_update(store):
    """A store slower than slow_after: a partial pop (complete false) goes out at slow_after with what the
    call knows, then the update with the customer when the store answers."""
    lookup, jobs, clock, sent = make(store)
    lookup.pop(call(ivr_path=("main", "menu:1")), sent.append)
    clock.advance(0.25)
    assert [(m["type"], m["complete"], m["lookup"]["status"]) for m in sent] == [("pop", False, "pending")]
    assert sent[0]["ivr"]["path"] == ["main", "menu:1"] and sent[0]["queue"] == "billing"
    jobs.run()
    assert [(m["type"], m["complete"], m["lookup"]["status"]) for m in sent[1:]] == [("pop_update", True, "found")]
    assert sent[1]["call_key"] == sent[0]["call_key"] == "pbx1/1700.1"
    assert clock.getDelayedCalls() == []


def test_cached_lookup_pops_immediately_until_the_ttl(store):
    """A second call from the same number is popped before pop() returns, without a store query; after
    cache_ttl the store is asked again."""
    lookup, jobs, clock, sent = make(store)
    lookup.pop(call(), sent.append)
    jobs.run()
    lookup.pop(call(call_id="1700.9"), sent.append)
    assert len(sent) == 2 and sent[1]["complete"] and sent[1]["call_id"] == "1700.9"
    assert lookup.store_queries == 1 and jobs.jobs == []
    clock.advance(30.0)
    lookup.pop(call(call_id="1701.0"), sent.append)
    assert len(sent) == 2 and lookup.store_queries == 2
    jobs.run()
    assert len(sent) == 3


def test_concurrent_lookups_share_one_query(store):
    """Three calls from one number while the store is busy make one query and all three get their pop."""
    lookup, jobs, clock, sent = make(store)
    for n in range(3):
        lookup.pop(call(call_id=f"c{n}"), sent.append)
    assert lookup.store_queries == 1 and len(jobs.jobs) == 1
    jobs.run()
    assert sorted(m["call_id"] for m in sent) == ["c0", "c1", "c2"]
    assert all(m["lookup"]["status"] == "found" for m in sent)


def test_shared_number_is_a_choice_and_unknown_is_a_new_caller(store):
    """A number two customers share pops both as a choice; an unknown number pops as a new caller; an
    anonymous caller pops at once without a query."""
    lookup, jobs, clock, sent = make(store)
    lookup.pop(call("(201) 555-0123"), sent.append)
    lookup.pop(call("+14155550100", call_id="u"), sent.append)
    jobs.run()
    assert [m["lookup"]["status"] for m in sent] == ["multiple", "not_found"]
    assert [m["profile"]["external_id"] for m in sent[0]["matches"]] == ["C1", "C2"]
    assert sent[1]["new_caller"] and sent[1]["ani"] == "+14155550100"
    lookup.pop(call("anonymous", call_id="anon"), sent.append)
    assert sent[2]["new_caller"] and sent[2]["complete"] and lookup.store_queries == 2


def test_collected_account_wins_over_the_number(store):
    """An account the caller entered identifies the customer even from a shared number; an account that
    matches nobody falls back to the number."""
    lookup, jobs, clock, sent = make(store)
    lookup.pop(call("(201) 555-0123", ivr_collected={"account": "acc 2", "pin": "****"}), sent.append)
    jobs.run()
    assert sent[0]["lookup"] == {"status": "found", "by": "account", "value": "acc 2"}
    assert sent[0]["customer"]["profile"]["external_id"] == "C2"
    lookup.pop(call("212 555 0100", account="NOPE-1"), sent.append)
    jobs.run()
    jobs.run()
    assert sent[1]["lookup"]["by"] == "ani" and sent[1]["customer"]["profile"]["external_id"] == "C3"


def test_store_down_gives_unavailable_and_is_not_cached(store):
    """A failing store yields a complete 'unavailable' pop (never an exception to the caller) and the
    failure is not cached: the next call asks the store again."""
    lookup, jobs, clock, sent = make(store)
    broken = CustomerStore(make_engine("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=1"))
    lookup.store = broken
    done = lookup.pop(call(), sent.append)
    jobs.run()
    assert [(m["type"], m["complete"], m["lookup"]["status"]) for m in sent] == [("pop", True, "unavailable")]
    assert done.called and len(lookup.cache) == 0
    lookup.store = store
    lookup.pop(call(), sent.append)
    jobs.run()
    assert sent[1]["lookup"]["status"] == "found" and lookup.store_queries == 2


def test_store_that_never_answers_times_out_and_fills_the_cache_later(store):
    """No answer within lookup_timeout: partial pop, then an 'unavailable' update; the late answer sends
    nothing more for that call but fills the cache for the next one."""
    lookup, jobs, clock, sent = make(store)
    lookup.pop(call(), sent.append)
    clock.pump([0.25, 1.75])
    assert [(m["type"], m["lookup"]["status"]) for m in sent] == [("pop", "pending"), ("pop_update", "unavailable")]
    assert sent[1]["complete"] is True
    jobs.run()
    assert len(sent) == 2
    lookup.pop(call(call_id="next"), sent.append)
    assert sent[2]["lookup"]["status"] == "found"
    assert clock.getDelayedCalls() == []


def test_failing_send_does_not_break_the_lookup(store):
    """An exception from the console delivery is logged; later pops still work."""
    lookup, jobs, clock, sent = make(store)

    def explode(message: dict) -> None:
        raise RuntimeError("console gone")

    done = lookup.pop(call(), explode)
    jobs.run()
    assert done.called
    lookup.pop(call(), sent.append)
    assert sent and sent[0]["complete"]


def test_disposition_refreshes_the_cached_history(store):
    """After set_disposition on a call of a cached customer, the next pop shows the new interaction."""
    lookup, jobs, clock, sent = make(store)
    lookup.pop(call(), sent.append)
    jobs.run()
    cid = sent[0]["customer"]["customer_id"]
    lookup.record_interaction("pbx1/1700.1", started_at=datetime(2026, 3, 2, tzinfo=UTC), direction="inbound",
                              customer_id=cid, queue="billing")
    wrote = lookup.set_disposition("pbx1/1700.1", disposition="sale", notes="upsold", agent_id="1001")
    jobs.run()
    assert isinstance(wrote.result, int)
    lookup.pop(call(call_id="later"), sent.append)
    jobs.run()
    history = sent[1]["customer"]["interactions"]
    assert [(i["call_key"], i["disposition"]) for i in history] == [("pbx1/1700.1", "sale"), ("pbx1/old", "resolved")]


def test_ivr_port_answers(store):
    """The IVR's lookup(): one customer is found (strings only, with id and tier), a shared number or an
    unknown account is not_found, an empty value needs no query, a failing store is unavailable."""
    lookup, jobs, clock, sent = make(store)
    results = [lookup.lookup("ani", "2125550100"), lookup.lookup("account", "ACC-3"),
               lookup.lookup("ani", "+12015550123"), lookup.lookup("account", "ZZZ"), lookup.lookup("account", " ")]
    jobs.run()
    got = [d.result for d in results]
    assert all(isinstance(r, LookupResult) for r in got)
    assert [r.status for r in got] == ["found", "found", "not_found", "not_found", "not_found"]
    assert got[0].customer["external_id"] == "C3" and got[0].customer["tier"] == "gold"
    assert got[0].customer["vip"] == "yes" and got[0].customer["id"].isdigit()
    assert all(isinstance(v, str) for v in got[0].customer.values())
    lookup.store = CustomerStore(make_engine("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=1"))
    failing = lookup.lookup("ani", "+14155550100")
    jobs.run()
    assert failing.result == LookupResult("unavailable")


def test_ivr_cancel_and_timeout_leave_no_timer(store):
    """The IVR cancelling its look-up gets 'unavailable' and no timer is left; a store slower than
    lookup_timeout also answers 'unavailable'."""
    lookup, jobs, clock, sent = make(store)
    d = lookup.lookup("ani", "2125550100")
    d.cancel()
    assert d.result == LookupResult("unavailable")
    assert clock.getDelayedCalls() == []
    slow = lookup.lookup("ani", "2125550199")
    clock.advance(2.0)
    assert slow.result == LookupResult("unavailable")
    jobs.run()
    assert clock.getDelayedCalls() == []


def test_customer_identified_by_the_ivr_is_looked_up_by_id(store):
    """A queued call carrying CTI_CUSTOMER_ID pops that customer even from a shared number; the context
    takes the path and masked entries from the IVR's completion and the wait from the event time."""
    lookup, jobs, clock, sent = make(store)
    bob = next(c for c in store.find_by_phone("+12015550123") if c.external_id == "C2")
    queued = CallQueued(server="pbx1", ts=100.0, call_id="1700.1", uniqueid="1700.2", channel="PJSIP/trunk-1",
                        queue="billing",
                        skills="billing:1", priority=0, language="en", caller_num="2015550123", caller_name="B LEE",
                        dnis="8005550199", data={"CTI_CUSTOMER_ID": str(bob.id), "CTI_ACCOUNT": "ACC-2"})
    ivr = IvrCompleted("pbx1", 95.0, "1700.2", "PJSIP/trunk-1", "main",
                       path=(PathStep("menu", "menu", 90.0, digits="2"),
                             PathStep("pin", "collect", 93.0, digits="****")),
                       collected={"account": "ACC-2", "pin": "****"}, outcome="queue", queue="billing")
    ctx = pop_context(queued, agent_id="1001", now=112.5, ivr=ivr)
    assert (ctx.wait_seconds, ctx.ivr_path, ctx.customer_id) == (12.5, ("menu:2", "pin:****"), str(bob.id))
    lookup.pop(ctx, sent.append)
    jobs.run()
    assert sent[0]["lookup"]["by"] == "id" and sent[0]["customer"]["profile"]["external_id"] == "C2"
    bare = pop_context(queued, agent_id="1001", now=100.0)
    assert bare.ivr_collected == {"account": "ACC-2"} and bare.direction == "inbound"


def test_outbound_context_uses_the_lead_phone(store):
    """An outbound queued call's pop context takes campaign and lead id from the channel variables and the
    customer's number from the lead, not the channel's caller ID."""
    queued = CallQueued(server="pbx1", ts=10.0, call_id="9.1", uniqueid="9.2", channel="PJSIP/trunk-2",
                        queue="renewals",
                        skills="", priority=0, language="en", caller_num="8005550000", caller_name="", dnis="",
                        data={"CTI_CAMPAIGN": "renew", "CTI_LEAD_ID": "L7"})
    ctx = pop_context(queued, agent_id="1001", now=11.0, lead={"phone": "2125550100", "name": "Cy"},
                      script="Hi {name}")
    assert (ctx.direction, ctx.ani, ctx.campaign, ctx.lead_id, ctx.script) == (
        "outbound", "2125550100", "renew", "L7", "Hi {name}")


def test_cache_is_lru_with_ttl():
    """The cache evicts the least recently used entry past its size and expires entries after ttl."""
    cache = TtlLruCache(2, 10.0)
    cache.put("a", 1, 0.0)
    cache.put("b", 2, 1.0)
    assert cache.get("a", 2.0) == 1
    cache.put("c", 3, 3.0)
    assert (cache.get("b", 3.0), cache.get("a", 3.0), cache.get("c", 3.0)) == (None, 1, 3)
    assert cache.get("a", 10.0) is None and len(cache) == 1
    with pytest.raises(ValueError):
        TtlLruCache(0, 1.0)


def test_cache_drops_tagged_entries_and_keeps_its_index_with_evictions_and_expiry():
    """``discard_tagged`` drops exactly the live entries whose value carries the tag; entries that were
    replaced, evicted or expired leave nothing behind in the index."""
    cache = TtlLruCache(3, 10.0, tags=lambda v: v)
    cache.put("a", (1, 2), 0.0)
    cache.put("b", (2,), 0.0)
    cache.put("c", (3,), 0.0)
    cache.put("a", (3,), 1.0)  # replaced: "a" no longer shows customer 1 or 2
    assert cache.discard_tagged(1) == 0 and len(cache) == 3
    cache.put("d", (2, 4), 2.0)  # evicts "b", the least recently used
    assert cache.get("b", 2.0) is None
    assert cache.discard_tagged(2) == 1 and cache.get("d", 2.0) is None
    assert cache.get("c", 10.5) is None  # expired
    assert cache.discard_tagged(3) == 1 and len(cache) == 0  # only "a" was left to drop
    assert cache._tagged == {}
    cache.put("e", (5,), 20.0)
    cache.clear()
    assert cache.discard_tagged(5) == 0 and cache._tagged == {}


def _wait(d: Deferred, timeout: float = 10.0) -> Any:
    """Run the project's asyncio reactor loop until ``d`` fires (fail after ``timeout`` seconds)."""
    loop = reactor_loop()
    return loop.run_until_complete(asyncio.wait_for(d.asFuture(loop), timeout))


def test_partial_pop_then_update_over_real_threads(tmp_path):
    """The production shell: with the store held in a real worker thread, the partial pop arrives first;
    releasing the store brings the completing update, delivered on the reactor's thread."""
    gate = threading.Event()

    class HeldStore(CustomerStore):
        def find_by_phone_with_history(self, e164: str, limit: int = 20, history: int = 5) -> tuple:
            gate.wait(10)
            return super().find_by_phone_with_history(e164, limit, history)

    reactor = install_reactor()
    pool = ThreadPool(minthreads=1, maxthreads=2, name="screenpop-test")
    pool.start()
    with temporary_database("sqlite", tmp_path, POSTGRES_URL) as url:
        store = HeldStore(make_engine(url))
        try:
            store.upsert_customers([CustomerInput("C3", "Cy", phones=(PhoneRecord("+12125550100"),))])
            lookup = PopLookup.from_settings(store, thread_runner(reactor, pool), reactor,
                                             ScreenpopSection(slow_after=0.05, lookup_timeout=5.0))
            sent: list[tuple[dict, bool]] = []
            first: Deferred = Deferred()

            def send(message: dict) -> None:
                sent.append((message, threading.current_thread() is threading.main_thread()))
                if len(sent) == 1:
                    first.callback(None)

            done = lookup.pop(call(), send)
            _wait(first)
            assert [(m["type"], m["complete"]) for m, _ in sent] == [("pop", False)]
            gate.set()
            _wait(done)
            assert [(m["type"], m["lookup"]["status"]) for m, _ in sent] == [
                ("pop", "pending"), ("pop_update", "found")]
            assert all(on_main for _, on_main in sent)
        finally:
            gate.set()
            pool.stop()
            store.engine.dispose()


def test_stuck_query_is_not_joined_forever(store):
    """A query that has not answered within lookup_timeout is not joined by later look-ups of the same key:
    a new query starts, and its answer pops the later call even though the first never answers."""
    lookup, jobs, clock, sent = make(store)
    lookup.pop(call(call_id="first"), sent.append)
    stuck = jobs.jobs.pop(0)
    clock.advance(2.0)
    lookup.pop(call(call_id="second"), sent.append)
    assert lookup.store_queries == 2
    jobs.run()
    assert [(m["call_id"], m["lookup"]["status"]) for m in sent] == [
        ("first", "pending"), ("first", "unavailable"), ("second", "found")]
    stuck[1].callback(stuck[0]())
    assert len(sent) == 3 and clock.getDelayedCalls() == []


def test_service_wiring_migrates_seeds_and_looks_up(tmp_path):
    """ensure_demo_customers migrates and seeds an empty database once; start_pop_lookup answers an IVR
    look-up of a demo caller over its own thread pool on the running reactor loop."""
    from centre.wiring import ensure_demo_customers, start_pop_lookup
    from screenpop.demo_data import demo_callers

    url = f"sqlite:///{tmp_path}/demo.sqlite3"
    assert ensure_demo_customers(url, T0, n=200, seed=9) == 200
    assert ensure_demo_customers(url, T0, n=200, seed=9) == 0
    reactor = install_reactor()
    lookup, stop = start_pop_lookup(url, ScreenpopSection(), reactor, threads=2, migrate=False)
    try:
        caller = demo_callers(200, 9)[10]
        result = _wait(lookup.lookup("account", caller.account))
        assert (result.status, result.customer["external_id"]) == ("found", caller.external_id)
    finally:
        stop()
        stop()


def test_unique_match_is_cached_under_the_customer_id_too(store):
    """A look-up by number that finds one customer also answers a later look-up by that customer's id
    from the cache (the IVR's look-up warms the pop, which tries CTI_CUSTOMER_ID first); a number shared
    by several customers caches nothing under an id."""
    lookup, jobs, clock, sent = make(store)
    found: list = []
    lookup.find(LookupKey("ani", "+12125550100")).addCallback(found.append)
    jobs.run()
    customer = found[0].customers[0]
    queries = lookup.store_queries
    again: list = []
    lookup.find(LookupKey("id", str(customer.id))).addCallback(again.append)
    assert lookup.store_queries == queries
    assert again[0].customers == found[0].customers
    lookup.find(LookupKey("ani", "+12015550123")).addCallback(found.append)
    jobs.run()
    assert len(found[1].customers) == 2
    ids = {str(c.id) for c in found[1].customers}
    assert not any(lookup.cache.get(LookupKey("id", i), clock.seconds()) for i in ids)


def test_zero_slow_after_sends_what_is_known_at_once(store):
    """With slow_after 0 (the default), a pop the cache cannot complete goes out before pop() returns,
    marked incomplete, and the look-up's answer follows as a pop_update; a cached pop is complete at once."""
    jobs, clock, sent = JobQueue(), Clock(), []
    lookup = PopLookup(store, jobs, clock, slow_after=0.0, settings=ScreenpopSection())
    lookup.pop(call(), sent.append)
    assert [(m["type"], m["complete"]) for m in sent] == [("pop", False)]
    jobs.run()
    assert [(m["type"], m["complete"]) for m in sent] == [("pop", False), ("pop_update", True)]
    assert sent[1]["customer"]["profile"]["external_id"] == "C3"
    again: list = []
    lookup.pop(call(call_id="1700.9"), again.append)
    assert [(m["type"], m["complete"]) for m in again] == [("pop", True)]
    assert clock.getDelayedCalls() == []


def test_load_gives_what_the_separate_store_calls_gave(store):
    """A look-up reads the customers and their recent interactions with one store call, and its outcome is
    what the separate calls gave (find_by_phone / get_customer / find_by_account / find_by_external_id, then
    recent_interactions for each customer), for every key kind, with max_matches and recent_interactions."""
    c1, c2 = (c.id for c in store.find_by_phone("+12015550123"))
    for n in range(4):
        store.add_interaction(f"pbx1/c1-{n}", started_at=T0 + timedelta(minutes=n % 3), direction="inbound",
                              customer_id=c1, agent_id=f"a{n}")
    store.add_interaction("pbx1/c2-0", started_at=T0, direction="outbound", customer_id=c2, campaign="renewals")
    c3 = store.find_by_external_id("C3")

    def separate(key: LookupKey, settings: ScreenpopSection) -> LookupOutcome:
        if key.by == "ani":
            customers = store.find_by_phone(key.value, limit=settings.max_matches)
        else:
            if key.by == "id":
                one = store.get_customer(int(key.value))
            elif key.by == "account":
                one = store.find_by_account(key.value)
            else:
                one = store.find_by_external_id(key.value)
            customers = [one] if one else []
        history = {c.id: tuple(store.recent_interactions(c.id, settings.recent_interactions)) for c in customers}
        return LookupOutcome(key, tuple(customers), history)

    keys = [LookupKey("ani", "+12015550123"), LookupKey("ani", "+12125550100"), LookupKey("ani", "+14155550100"),
            LookupKey("id", str(c1)), LookupKey("id", str(c3.id)), LookupKey("id", "999999"),
            LookupKey("account", "acc 2"), LookupKey("account", "ACC-404"), LookupKey("account", ""),
            LookupKey("external_id", "C3"), LookupKey("external_id", "C404"), LookupKey("external_id", "X" * 65)]
    for settings in (SETTINGS, ScreenpopSection(recent_interactions=0), ScreenpopSection(recent_interactions=2),
                     ScreenpopSection(max_matches=1, recent_interactions=1)):
        lookup = PopLookup(store, JobQueue(), Clock(), settings=settings)
        for key in keys:
            outcome = lookup._load(key)
            assert outcome == separate(key, settings), (key, settings)
            assert list(outcome.interactions) == [c.id for c in outcome.customers]
    shared = PopLookup(store, JobQueue(), Clock(), settings=SETTINGS)._load(LookupKey("ani", "+12015550123"))
    assert shared.status == "multiple"
    assert [i.call_key for i in shared.interactions[c1]] == ["pbx1/c1-2", "pbx1/c1-1", "pbx1/c1-3", "pbx1/c1-0"]
    assert [i.call_key for i in shared.interactions[c2]] == ["pbx1/c2-0"]
    with pytest.raises(ValueError):
        PopLookup(store, JobQueue(), Clock(), settings=SETTINGS)._load(LookupKey("id", "not-a-number"))


def test_cache_drops_expired_entries_as_new_ones_come_in():
    """A busy cache holds about (puts per second x ttl) entries, not its size: expired entries at the least
    recently used end go when a new one is stored (fewer objects for the garbage collector to walk)."""
    cache = TtlLruCache(10_000, 30.0, tags=lambda v: (v,))
    for i in range(3000):  # 100 look-ups a second for 30 s of simulated time
        cache.put(f"k{i}", i, i / 100)
    assert len(cache) == 3000  # nothing expired yet
    for i in range(3000, 9000):  # another minute
        cache.put(f"k{i}", i, i / 100)
    assert 2990 <= len(cache) <= 3001
    assert cache.get("k8999", 90.0) == 8999 and cache.get("k5000", 90.0) is None
    assert cache.discard_tagged(8998) == 1  # the tag index follows the expiry
    assert cache.discard_tagged(100) == 0
