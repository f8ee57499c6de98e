"""Cached customer look-ups for pops and for the IVR, off the event loop. Twisted Deferreds; no SQL here.

Must not import engine packages (acd, dialer, ivr internals) or read the wall clock: time comes from
the ``clock`` (an ``IReactorTime``: the reactor, or ``twisted.internet.task.Clock`` in tests).

Async style: every method returns a ``twisted.internet.defer.Deferred`` and is called on the reactor
thread. Store calls run through ``run_in_thread`` (``cti.threads.end_of_pass_runner(reactor, threadpool)``
in the server, ``cti.threads.thread_runner`` elsewhere). From asyncio code (the console hub) use
``await d.asFuture(loop)``; from Twisted coroutines ``await d`` works directly.

Guarantees: ``pop()`` never delays the call offer (it returns at once; the pop goes out when the
look-up finishes or after ``slow_after`` seconds, whichever is first, then a ``pop_update``
completes it); ``lookup()`` and ``pop()`` never fail (store errors and slowness become
``"unavailable"``). Results are cached (LRU + TTL), and concurrent look-ups of one key share one
store query.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from cti.threads import ThreadRunner
from ivr.ports import LookupResult
from screenpop.compose import LookupKey, PopContext, compose_followup, compose_pop, lookup_keys
from screenpop.phone import normalise_for_lookup
from screenpop.records import CustomerRecord, InteractionChange, InteractionRecord
from screenpop.settings import ScreenpopSection
from screenpop.store import CustomerStore, WrittenInteraction, interaction_update

log = logging.getLogger("screenpop.lookup")

@dataclass(frozen=True, slots=True)
class LookupOutcome:
    """What the store said for one key: the customers (at most ``max_matches``) and their last interactions."""

    key: LookupKey
    customers: tuple[CustomerRecord, ...]
    interactions: dict[int, tuple[InteractionRecord, ...]] = field(default_factory=dict)

    @property
    def status(self) -> Literal["found", "multiple", "not_found"]:
        if not self.customers:
            return "not_found"
        return "found" if len(self.customers) == 1 else "multiple"


def ivr_customer(c: CustomerRecord) -> dict[str, str]:
    """The customer as the IVR sees it (``ivr.ports.LookupResult.customer``): strings only. ``id`` is the
    store id (the IVR sets it as CTI_CUSTOMER_ID, which the pop then looks up first)."""
    out = {str(k): str(v) for k, v in c.attributes.items()}
    out.update({
        "id": str(c.id), "external_id": c.external_id or "", "name": c.name, "first_name": c.first_name,
        "last_name": c.last_name, "language": c.language, "segment": c.segment, "tier": c.segment,
        "account": c.accounts[0].number if c.accounts else "", "phone": " ".join(p.e164 for p in c.phones),
    })
    return out


class TtlLruCache:
    """A bounded mapping whose entries expire ``ttl`` seconds after they were stored. Pure: time is passed in.

    ``tags(value)`` (optional) names what a value shows (for look-up outcomes: the customers' ids), so that
    ``discard_tagged`` drops every entry showing one of them without scanning the whole cache."""

    def __init__(self, size: int, ttl: float, tags: Callable[[Any], Iterable[Hashable]] | None = None) -> None:
        if size < 1 or ttl <= 0:
            raise ValueError("cache size must be >= 1 and ttl > 0")
        self.size = size
        self.ttl = ttl
        self._data: OrderedDict[Any, tuple[float, Any]] = OrderedDict()
        self._tags = tags
        self._tagged: dict[Hashable, set[Any]] = {}  # tag -> keys of the entries whose value has it

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: Any, now: float) -> Any | None:
        item = self._data.get(key)
        if item is None:
            return None
        stored_at, value = item
        if now - stored_at >= self.ttl:
            self._drop(key)
            return None
        self._data.move_to_end(key)
        return value

    def put(self, key: Any, value: Any, now: float) -> None:
        if key in self._data:
            self._drop(key)
        self._data[key] = (now, value)
        if self._tags is not None:
            for tag in self._tags(value):
                self._tagged.setdefault(tag, set()).add(key)
        while len(self._data) > self.size:
            self._drop(next(iter(self._data)))
        # Expired entries at the least recently used end go now, not when the size bound reaches them: a busy
        # server keeps about (look-ups per second x ttl) entries instead of ``size`` (fewer objects for the
        # garbage collector's full passes to walk).
        while True:
            oldest, (stored_at, _) = next(iter(self._data.items()))
            if oldest == key or now - stored_at < self.ttl:
                break
            self._drop(oldest)

    def discard_tagged(self, tag: Hashable) -> int:
        """Drop every entry whose value has ``tag`` (see the class's docstring); returns how many."""
        doomed = list(self._tagged.get(tag, ()))
        for k in doomed:
            self._drop(k)
        return len(doomed)

    def clear(self) -> None:
        self._data.clear()
        self._tagged.clear()

    def _drop(self, key: Any) -> None:
        _, value = self._data.pop(key)
        if self._tags is not None:
            for tag in self._tags(value):
                keys = self._tagged.get(tag)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del self._tagged[tag]


def _fire(d: Deferred, result: object) -> None:
    """Fire ``d`` with a result or a Failure."""
    if isinstance(result, Failure):
        d.errback(result)
    else:
        d.callback(result)


def _first_fired(d: Deferred, timeout: float, clock: IReactorTime) -> Deferred:
    """A Deferred with ``d``'s result, or failing with TimeoutError after ``timeout`` seconds (``d`` is
    left running: its result still fills the cache). Cancelling it stops its timer."""

    def cancelled(_: Deferred) -> None:
        if timer.active():
            timer.cancel()

    out: Deferred = Deferred(canceller=cancelled)

    def on_timeout() -> None:
        if not out.called:
            out.errback(Failure(TimeoutError(f"store did not answer within {timeout:g}s")))

    timer = clock.callLater(timeout, on_timeout)

    def done(result: object) -> None:
        if timer.active():
            timer.cancel()
        if not out.called:
            _fire(out, result)

    d.addBoth(done)
    return out


def _customer_ids(outcome: Any) -> list[int]:
    """The cache's tags of a look-up outcome: the ids of the customers it shows."""
    return [c.id for c in getattr(outcome, "customers", ())]


class PopLookup:
    """Look-ups by number, account or lead for pops (``pop``) and the IVR (``lookup``), with a shared cache."""

    def __init__(
        self,
        store: CustomerStore,
        run_in_thread: ThreadRunner,
        clock: IReactorTime,
        cache_ttl: float = 30.0,
        cache_size: int = 10_000,
        slow_after: float = 0.25,
        settings: ScreenpopSection | None = None,
        lookup_timeout: float | None = None,
    ) -> None:
        self.store = store
        self.run_in_thread = run_in_thread
        self.clock = clock
        self.settings = settings or ScreenpopSection()
        self.slow_after = slow_after
        self.lookup_timeout = lookup_timeout if lookup_timeout is not None else self.settings.lookup_timeout
        self.cache = TtlLruCache(cache_size, cache_ttl, tags=_customer_ids)
        self._inflight: dict[LookupKey, tuple[float, list[Deferred]]] = {}
        self.store_queries = 0

    @classmethod
    def from_settings(cls, store: CustomerStore, run_in_thread: ThreadRunner, clock: IReactorTime,
                      settings: ScreenpopSection) -> PopLookup:
        return cls(store, run_in_thread, clock, cache_ttl=settings.cache_ttl, cache_size=settings.cache_size,
                   slow_after=settings.slow_after, settings=settings, lookup_timeout=settings.lookup_timeout)

    # one key -----------------------------------------------------------------------------------

    def _load(self, key: LookupKey) -> LookupOutcome:
        """Runs in a worker thread: the customers for ``key`` and their recent interactions."""
        s = self.settings
        if key.by == "ani":
            customers, interactions = self.store.find_by_phone_with_history(
                key.value, limit=s.max_matches, history=s.recent_interactions)
        else:
            customers, interactions = self.store.find_with_history(key.by, key.value, s.recent_interactions)
        return LookupOutcome(key, tuple(customers), interactions)

    def find(self, key: LookupKey) -> Deferred:
        """Deferred[LookupOutcome] for one key: from the cache, a running query, or a new query.

        Fails (with the store's error) when the store fails; failures are not cached. A running query
        older than ``lookup_timeout`` is not joined (a stuck worker must not hold a key forever).
        """
        now = self.clock.seconds()
        hit = self.cache.get(key, now)
        if hit is not None:
            return succeed(hit)
        waiter: Deferred = Deferred()
        flight = self._inflight.get(key)
        if flight is not None and now - flight[0] < self.lookup_timeout:
            flight[1].append(waiter)
            return waiter
        flight = (now, [waiter])
        self._inflight[key] = flight
        self.store_queries += 1
        try:
            query = self.run_in_thread(lambda: self._load(key))
        except Exception:  # the pool refused the job (stopped): same path as a failed query
            query = fail()

        def deliver(result: object) -> None:
            if self._inflight.get(key) is flight:
                del self._inflight[key]
            if not isinstance(result, Failure):
                now = self.clock.seconds()
                self.cache.put(key, result, now)
                if isinstance(result, LookupOutcome) and len(result.customers) == 1 and key.by != "id":
                    # Also under the customer's id: the IVR sets CTI_CUSTOMER_ID after its own look-up by
                    # number or account, and the pop tries the id first, so that pop is then a cache hit.
                    c = result.customers[0]
                    id_key = LookupKey("id", str(c.id))
                    self.cache.put(id_key, LookupOutcome(id_key, result.customers, result.interactions), now)
            for w in flight[1]:
                _fire(w, result)

        query.addBoth(deliver)
        return waiter

    def resolve(self, call: PopContext) -> Deferred:
        """Deferred[LookupOutcome | None]: the first key of ``lookup_keys`` that finds someone, else the
        last key's empty outcome; None when the call has no usable key (anonymous caller)."""
        keys = lookup_keys(call, self.settings)
        if not keys:
            return succeed(None)
        result: Deferred = Deferred()

        def step(index: int) -> None:
            d = self.find(keys[index])

            def got(outcome: LookupOutcome) -> None:
                if outcome.customers or index == len(keys) - 1:
                    result.callback(outcome)
                else:
                    step(index + 1)

            d.addCallbacks(got, result.errback)

        step(0)
        return result

    # the pop -----------------------------------------------------------------------------------

    def pop(self, call: PopContext, send: Callable[[dict[str, Any]], object]) -> Deferred:
        """Send the pop for ``call`` through ``send``; returns at once, never fails.

        Cached: ``send`` is called before this returns with a complete pop. Otherwise ``send`` gets the
        complete pop as soon as the store answers, or a partial pop (``complete`` false) after
        ``slow_after`` seconds and then a ``pop_update``. After ``lookup_timeout`` seconds without an
        answer the update says ``unavailable``. The returned Deferred fires (with None) when no more
        messages will be sent for this call.
        """
        s = self.settings
        state = {"sent": False, "final": False}
        finished: Deferred = Deferred()

        def emit(message: dict[str, Any]) -> None:
            try:
                send(message)
            except Exception:
                log.exception("screen pop delivery failed for call %s", call.call_key)

        def final(message: dict[str, Any]) -> None:
            if state["final"]:
                return
            state["final"] = True
            emit(message)
            finished.callback(None)

        def partial() -> None:
            if not state["final"]:
                state["sent"] = True
                emit(compose_pop(call, None, None, s))

        def answered(outcome: LookupOutcome | None) -> None:
            if timer is not None and timer.active():
                timer.cancel()
            compose = compose_followup if state["sent"] else compose_pop
            if outcome is None:
                final(compose(call, [], {}, s))
            else:
                final(compose(call, list(outcome.customers), outcome.interactions, s, lookup_by=outcome.key))

        def failed(reason: Failure) -> None:
            if timer is not None and timer.active():
                timer.cancel()
            if not state["final"]:
                log.warning("customer look-up for call %s unavailable: %s", call.call_key, reason.getErrorMessage())
            compose = compose_followup if state["sent"] else compose_pop
            final(compose(call, None, None, s, unavailable=True))

        # No timer when no waiting is allowed (the default): it would only be set and cancelled on every pop.
        timer = self.clock.callLater(self.slow_after, partial) if self.slow_after > 0 else None
        _first_fired(self.resolve(call), self.lookup_timeout, self.clock).addCallbacks(answered, failed)
        if timer is None and not state["final"]:
            # Not in the cache and no waiting allowed: what is known goes out now, the rest follows.
            partial()
        return finished

    # the IVR port ------------------------------------------------------------------------------

    def lookup(self, by: Literal["ani", "account"], value: str) -> Deferred:
        """Deferred[ivr.ports.LookupResult] for the IVR's ``CustomerLookup`` port; never fails.

        ``by="ani"`` normalises ``value`` with the default region first. ``found`` only when exactly
        one customer matches (a number shared by several customers is ``not_found``, so the flow asks
        for the account); store errors or no answer within ``lookup_timeout`` give ``unavailable``.
        Cancelling the Deferred (the IVR's own timeout) also gives ``unavailable`` and leaves no timer.
        """
        if by == "ani":
            e164 = normalise_for_lookup(value, self.settings.default_region)
            if e164 is None:
                return succeed(LookupResult("not_found"))
            key = LookupKey("ani", e164)
        elif by == "account":
            if not value.strip():
                return succeed(LookupResult("not_found"))
            key = LookupKey("account", value.strip())
        else:
            return succeed(LookupResult("not_found"))

        def answered(outcome: LookupOutcome) -> LookupResult:
            if len(outcome.customers) == 1:
                return LookupResult("found", ivr_customer(outcome.customers[0]))
            return LookupResult("not_found")

        def failed(reason: Failure) -> LookupResult:
            log.warning("IVR customer look-up by %s unavailable: %s", by, reason.getErrorMessage())
            return LookupResult("unavailable")

        return _first_fired(self.find(key), self.lookup_timeout, self.clock).addCallbacks(answered, failed)

    # writes ------------------------------------------------------------------------------------

    def invalidate_customer(self, customer_id: int) -> int:
        """Forget cached outcomes that show ``customer_id`` (after a new interaction or disposition)."""
        return self.cache.discard_tagged(customer_id)

    def record_interaction(self, call_key: str, **fields: Any) -> Deferred:
        """Deferred[int]: ``CustomerStore.add_interaction`` in a worker thread; refreshes the cache."""
        return self._write(lambda: self.store.add_interaction(call_key, **fields), fields.get("customer_id"))

    def set_disposition(self, call_key: str, **fields: Any) -> Deferred:
        """Deferred[int]: ``CustomerStore.update_interaction`` in a worker thread (the console's
        disposition and notes); refreshes the cache. Fails with ``StoreInputError`` on over-long input.
        One statement finds the row's customer as it updates it (no second query)."""
        def write() -> list[WrittenInteraction]:
            return self.store.write_interactions([interaction_update(call_key, **fields)])

        return self.run_in_thread(write).addCallback(self._written).addCallback(lambda ids: ids[0])

    def write_interactions(self, changes: Sequence[InteractionChange]) -> Deferred:
        """Deferred[list[int]]: ``CustomerStore.write_interactions`` (the changes in order, one transaction) in
        one worker-thread job; refreshes the cache of every customer they touched. Fails as a whole."""
        return self.run_in_thread(lambda: self.store.write_interactions(changes)).addCallback(self._written)

    def _written(self, written: list[WrittenInteraction]) -> list[int]:
        for customer_id in {cid for _, cid in written if cid is not None}:
            self.invalidate_customer(customer_id)
        return [iid for iid, _ in written]

    def _write(self, fn: Callable[[], int], customer_id: int | None) -> Deferred:
        def done(result: int) -> int:
            if customer_id is not None:
                self.invalidate_customer(customer_id)
            return result
        return self.run_in_thread(fn).addCallback(done)
