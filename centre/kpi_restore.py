"""The stored records the statistics are rebuilt from after a restart (``kpi.rebuild``), read back as the
events that wrote them: ``acd_queue_calls`` rows as ``QueueCallFinished``, ``acd_agent_states`` rows as
``AgentStateChanged``, ``dialer_attempts`` rows as the dialer's attempt events, the IVR's rows of
``callbacks`` as ``CallbackRequested`` and the agents' (scheduled from the console on a call) as
``AgentCallbackScheduled`` for the queue of their part of that call, the agents' parts of calls
(``customer_interactions``) that had holds as ``HoldsRecorded`` (at the part's end: the call's end for the
first part, its talk's end for a later one; a first part whose call has not ended yet, at the call's
start), and those that went on to an outside number as ``CallTransferredOut``. Blocking (SQL): at
start-up, off the loop. SQLite and PostgreSQL alike (SQLite hands back naive datetimes: they are UTC)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, func, or_, select

from acd.events import AgentStateChanged, QueueCallFinished
from acd.tables import AgentStateRecord, QueueCallRecord, utc
from cti.events import AgentCallbackScheduled, CallTransferredOut
from dialer.events import AttemptAnswered, AttemptFinished, AttemptStarted
from dialer.store import Callback, DialerAttempt
from ivr.events import CallbackRequested
from kpi.core import HoldsRecorded
from screenpop.store import Interaction


def _epoch(value: datetime) -> float:
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


def agent_callback_queue(conn: Connection, agent_id: str, call_id: str) -> str:
    """The queue an agent's callback counts for: live, the queue of the agent's part of that call, i.e. its
    interaction row (written when the agent answered, keyed <server>/<call id>[/<part>]); "" if none."""
    i = Interaction
    queue = conn.execute(select(i.queue).where(
        i.agent_id == agent_id, i.queue != "",
        or_(i.call_key.endswith(f"/{call_id}", autoescape=True),
            i.call_key.contains(f"/{call_id}/", autoescape=True))).order_by(i.id.desc()).limit(1)).scalar()
    return str(queue or "")


def recorded_events(engine: Engine, since: float) -> list[object]:
    """The records of queue calls that ended, agent state changes, dial attempts and callbacks the IVR took
    since ``since``."""
    out: list[object] = []
    start = utc(since)
    q, a, d = QueueCallRecord, AgentStateRecord, DialerAttempt
    with engine.connect() as conn:
        for r in conn.execute(select(q).where(q.ended_at >= start).order_by(q.id)).mappings():
            out.append(QueueCallFinished(
                ts=_epoch(r["ended_at"]), server=r["server"], uniqueid=r["uniqueid"], call_id=r["call_id"],
                queue=r["queue"], entered=_epoch(r["entered_at"]), outcome=r["outcome"], wait=r["wait"],
                agent_id=r["agent_id"], answered_at=None if r["answered_at"] is None else _epoch(r["answered_at"]),
                talk=r["talk"], wrapup=r["wrapup"], offers=r["offers"], overflow_action=r["overflow_action"],
                overflow_target=r["overflow_target"], caller_num=r["caller_num"], dnis=r["dnis"],
                priority=r["priority"]))
        for r in conn.execute(select(a).where(a.changed_at >= start).order_by(a.id)).mappings():
            ts = _epoch(r["changed_at"])
            out.append(AgentStateChanged(ts=ts, agent_id=r["agent_id"], state=r["state"], previous=r["previous"],
                                         reason=r["reason"], since=ts - r["previous_seconds"], queue=r["queue"],
                                         uniqueid=r["uniqueid"]))
        rows = conn.execute(select(d).where(or_(d.started_at >= start, d.ended_at >= start)).order_by(d.id))
        for r in rows.mappings():
            started = _epoch(r["started_at"])
            out.append(AttemptStarted(started, r["campaign"], r["lead_id"], r["ref"], r["attempt"], r["number"]))
            if r["answered_at"] is not None:
                out.append(AttemptAnswered(_epoch(r["answered_at"]), r["campaign"], r["lead_id"], r["ref"],
                                           r["uniqueid"]))
            if r["ended_at"] is not None and r["result"]:
                out.append(AttemptFinished(_epoch(r["ended_at"]), r["campaign"], r["lead_id"], r["ref"], r["attempt"],
                                           r["result"], "", None, late=bool(r["late"])))
        c = Callback
        for r in conn.execute(select(c).where(c.source == "ivr", c.created_at >= start).order_by(c.id)).mappings():
            out.append(CallbackRequested(server="", ts=_epoch(r["created_at"]), uniqueid=r["call_id"], channel="",
                                         flow="", number=r["number"], queue=r["queue"]))
        i = Interaction
        rows = conn.execute(select(c.created_at, c.agent_id, c.call_id).where(
            c.source == "agent", c.created_at >= start, c.call_id != "", c.agent_id != "").order_by(c.id))
        for r in rows.mappings():
            call_id = r["call_id"]
            queue = agent_callback_queue(conn, r["agent_id"], call_id)
            if queue:
                out.append(AgentCallbackScheduled(ts=_epoch(r["created_at"]), queue=queue, agent_id=r["agent_id"],
                                                  call_id=call_id))
        at = func.coalesce(i.ended_at, i.started_at)
        rows = conn.execute(select(at.label("at"), i.queue, i.agent_id, i.hold_seconds, i.hold_count, i.hold_max)
                            .where(i.hold_count > 0, at >= start).order_by(i.id))
        for r in rows.mappings():
            out.append(HoldsRecorded(ts=_epoch(r["at"]), queue=r["queue"], agent_id=r["agent_id"],
                                     seconds=float(r["hold_seconds"]), count=int(r["hold_count"]),
                                     longest=float(r["hold_max"])))
        rows = conn.execute(select(i.transferred_at, i.queue, i.agent_id).where(i.transferred_at >= start)
                            .order_by(i.id))
        for r in rows.mappings():
            out.append(CallTransferredOut(ts=_epoch(r["transferred_at"]), queue=r["queue"], agent_id=r["agent_id"]))
    return out
