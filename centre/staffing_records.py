"""The stored records a staffing forecast is made of (``cti staffing --from-records``): the queue calls that
entered in a period (``acd_queue_calls``) and the agent state changes over it (``acd_agent_states``, with
each agent's last change before it, to know who was logged in at its start). Blocking SQL, read only;
SQLite and PostgreSQL alike (SQLite hands back naive datetimes: they are UTC)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine, and_, func, select

from acd.staffing_history import PastCall, StateChange
from acd.tables import AgentStateRecord, QueueCallRecord, utc


def _epoch(value: datetime) -> float:
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


def past_calls(engine: Engine, start: float, end: float) -> list[PastCall]:
    """The queue calls that entered a queue in [start, end)."""
    q = QueueCallRecord
    query = select(q.queue, q.entered_at, q.wait, q.outcome, q.talk, q.wrapup).where(
        q.entered_at >= utc(start), q.entered_at < utc(end)).order_by(q.id)
    with engine.connect() as conn:
        return [PastCall(r.queue, _epoch(r.entered_at), float(r.wait or 0.0), r.outcome,
                         float(r.talk or 0.0) + float(r.wrapup or 0.0)) for r in conn.execute(query)]


def state_changes(engine: Engine, start: float, end: float) -> list[StateChange]:
    """Every agent state change in [start, end) and each agent's last one before ``start``."""
    a = AgentStateRecord
    last_before = select(func.max(a.id).label("id")).where(a.changed_at < utc(start)).group_by(a.agent_id).subquery()
    columns = (a.agent_id, a.changed_at, a.state, a.previous, a.previous_seconds)
    with engine.connect() as conn:
        rows = list(conn.execute(select(*columns).join(last_before, and_(a.id == last_before.c.id))))
        rows += conn.execute(select(*columns).where(a.changed_at >= utc(start), a.changed_at < utc(end))
                             .order_by(a.id))
    return [StateChange(r.agent_id, _epoch(r.changed_at), r.state, r.previous, float(r.previous_seconds or 0.0))
            for r in rows]
