"""Supervisor actions (issue 16, item 4) through the console hub on real sockets, the production backend, the
real server (ACD, dialer, sessions) and the simulated PBX (tests/console_stack.py): forced not ready and
log-out (after the call's work when on a call, told to the agent's console with who did it), skills changed
live (a waiting caller offered at once), monitor / whisper / barge (an Originate of the supervisor's phone into
[cti-spy], ChanSpy in the PBX), campaigns paused, resumed and changed; every action refused for an agent,
and audited (who, what, on whom, when, ok or refused and why) on SQLite and PostgreSQL."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from agent_console.protocol import AUDITED_ACTIONS
from centre.audit import AuditEntry, AuditStore
from cti.ami.message import AMIMessage
from cti.contract import CTI_SPY_CHANNEL, SPY_CONTEXT
from sim.far_end import FarEnd
from tests.console_stack import SUPERVISOR_PHONE, Client, Stack, open_client, run, running
from tests.dial_windows import noon_zone

#: One valid request per supervisor action (what an agent sends in the role test).
REQUESTS: dict[str, dict[str, Any]] = {
    "force_not_ready": {"agent_id": "1002", "reason": "meeting"},
    "force_logout": {"agent_id": "1002"},
    "set_skills": {"agent_id": "1002", "skills": {"sales": 5}},
    "monitor": {"agent_id": "1002", "mode": "listen"},
    "pause_campaign": {"campaign": "spring"},
    "resume_campaign": {"campaign": "spring"},
    "set_campaign": {"campaign": "spring", "mode": "predictive"},
}


def audit(stack: Stack) -> list[AuditEntry]:
    """The audit rows, oldest first."""
    assert stack.server.database is not None
    return list(reversed(AuditStore(stack.server.database.engine).entries()))


async def ready(stack: Stack, agent_id: str) -> Client:
    c = await open_client(stack, agent_id)
    await c.request("login")
    await c.request("ready")
    return c


async def supervisor(stack: Stack) -> Client:
    return await open_client(stack, "sup", role="supervisor")


def test_the_actions_table_is_the_one_tested() -> None:
    assert set(REQUESTS) == AUDITED_ACTIONS


@pytest.mark.parametrize("action", sorted(REQUESTS))
def test_an_agent_may_not(action: str) -> None:
    """Each supervisor action from an agent's console is refused (forbidden), changes nothing, writes no row."""
    async def body() -> None:
        async with running() as stack:
            agent = await ready(stack, "1001")
            reply = await agent.request(action, **REQUESTS[action])
            assert reply["type"] == "error" and reply["error_id"] == "forbidden"
            assert "not allowed for role agent" in reply["message"]
            assert stack.state("1002") == "logged_out" and stack.state("1001") == "ready"
            assert audit(stack) == []
    run(body)


def test_force_not_ready_and_log_out_of_an_idle_agent_at_once() -> None:
    async def body() -> None:
        async with running() as stack:
            agent = await ready(stack, "1001")
            sup = await supervisor(stack)
            reply = await sup.request("force_not_ready", agent_id="1001", reason="meeting")
            assert reply["type"] == "result" and reply["pending"] is False
            assert (reply["state"]["state"], reply["state"]["reason"], reply["state"]["by"]) == \
                ("not_ready", "meeting", "sup")
            pushed = await agent.wait_push("state", lambda m: m["reason"] == "meeting")
            assert (pushed["state"], pushed["by"]) == ("not_ready", "sup")  # the console says why and who
            notice = await agent.wait_push("notice")
            assert notice["notice"] == "supervisor" and "by supervisor sup" in notice["message"]

            # without a reason: "supervisor"; the agent may get ready again afterwards (it is not locked)
            await agent.request("ready")
            reply = await sup.request("force_not_ready", agent_id="1001")
            assert reply["state"]["reason"] == "supervisor"

            reply = await sup.request("force_logout", agent_id="1001")
            assert reply["state"]["state"] == "logged_out" and reply["state"]["by"] == "sup"
            pushed = await agent.wait_push("state", lambda m: m["state"] == "logged_out" and "by" in m)
            assert pushed["by"] == "sup"

            # refusals: an unknown agent, an unknown reason, a logged-out agent (the state machine's word)
            bad = await sup.request("force_not_ready", agent_id="9999")
            assert bad["error_id"] == "unknown-agent"
            bad = await sup.request("force_not_ready", agent_id="1002", reason="nap")
            assert bad["error_id"] == "unknown-reason" and "supervisor" in bad["details"]["allowed"]
            bad = await sup.request("force_logout", agent_id="1002")
            assert bad["error_id"] == "illegal-transition"

            rows = audit(stack)
            assert [(r.supervisor_id, r.action, r.target, r.result) for r in rows] == [
                ("sup", "force_not_ready", "agent:1001", "ok"), ("sup", "force_not_ready", "agent:1001", "ok"),
                ("sup", "force_logout", "agent:1001", "ok"), ("sup", "force_not_ready", "agent:9999", "refused"),
                ("sup", "force_not_ready", "agent:1002", "refused"), ("sup", "force_logout", "agent:1002", "refused")]
            assert rows[0].params == {"agent_id": "1001", "reason": "meeting"}
            assert rows[3].reason.startswith("unknown-agent: ") and rows[5].reason.startswith("illegal-transition")
            assert all(abs(r.at - stack.server.now()) < 60 for r in rows)
    run(body)


def test_an_agent_on_a_call_is_forced_not_ready_then_logged_out_when_its_work_ends() -> None:
    """On a call: pending (the agent keeps its call and its wrap-up); when the wrap-up ends, even by the
    agent's own "ready" disposition, the supervisor's not ready applies."""
    async def body() -> None:
        async with running() as stack:
            agent = await ready(stack, "1001")
            await stack.connect("1001")
            sup = await supervisor(stack)
            reply = await sup.request("force_not_ready", agent_id="1001", reason="training")
            assert reply["pending"] is True and reply["state"]["state"] == "on_call"
            notice = await agent.wait_push("notice")
            assert "when this call's work ends" in notice["message"]
            assert stack.state("1001") == "on_call"
            call_id = stack.live("1001").queued.call_id  # type: ignore[union-attr]
            await stack.hang_up_phone("1001")
            assert stack.state("1001") == "wrap_up"
            done = await agent.request("dispose", call_id=call_id, disposition="resolved", then="ready")
            assert done["type"] == "result"
            assert (done["state"]["state"], done["state"]["reason"], done["state"]["by"]) == \
                ("not_ready", "training", "sup")

            # log-out during the next call: pending, then logged out when the wrap-up ends
            await agent.request("ready")
            await stack.connect("1001")
            reply = await sup.request("force_logout", agent_id="1001")
            assert reply["pending"] is True and stack.state("1001") == "on_call"
            call_id = stack.live("1001").queued.call_id  # type: ignore[union-attr]
            await stack.hang_up_phone("1001")
            assert stack.state("1001") == "wrap_up"
            await agent.request("dispose", call_id=call_id, disposition="resolved")
            assert stack.state("1001") == "logged_out"
            pushed = await agent.wait_push("state", lambda m: m["state"] == "logged_out" and "by" in m)
            assert pushed["by"] == "sup"
    run(body)


def test_skills_changed_live_offer_a_waiting_caller_at_once() -> None:
    """A support caller no agent may take (1001 has sales only, 1002 is logged out) is offered to 1001 the
    moment a supervisor gives it the support skill."""
    async def body() -> None:
        async with running() as stack:
            await ready(stack, "1001")
            sup = await supervisor(stack)
            stack.arrive(queue="support")
            await stack.until(lambda: stack.server.acd.queue_stats(stack.server.now())["support"].waiting == 1,
                              "the caller waiting")
            await stack.advance(2.0)
            assert stack.state("1001") == "ready" and stack.phone("1001") is None

            for skills, error in (({"spanish": 3}, "unknown-skill"), ({"support": 11}, "invalid-params"),
                                  ({"bad skill!": 1}, "invalid-params"), ({"support": 0}, "invalid-params")):
                bad = await sup.request("set_skills", agent_id="1001", skills=skills)
                assert bad["error_id"] == error, skills
            assert (await sup.request("set_skills", agent_id="nobody", skills={}))["error_id"] == "unknown-agent"
            assert stack.state("1001") == "ready"

            reply = await sup.request("set_skills", agent_id="1001", skills={"sales": 5, "support": 3})
            assert reply["skills"] == {"sales": 5, "support": 3} and reply["queues"] == ["sales", "support"]
            assert stack.state("1001") == "reserved"  # offered in the same step, before the reply
            await stack.ringing("1001")
            assert stack.server.acd.eligible_agents("support") == ("1001", "1002")

            # and taken away again: 1001 no longer works support
            await stack.answer("1001")
            reply = await sup.request("set_skills", agent_id="1001", skills={"sales": 5})
            assert reply["queues"] == ["sales"] and stack.server.acd.eligible_agents("support") == ("1002",)
            rows = audit(stack)
            assert [r.result for r in rows] == ["refused"] * 2 + ["ok", "ok"]  # invalid frames never reach it
            assert rows[2].params == {"agent_id": "1001", "skills": {"sales": 5, "support": 3}}
    run(body)


def test_monitor_whisper_and_barge_ring_the_supervisors_phone_into_chanspy() -> None:
    async def body() -> None:
        async with running() as stack:
            events: list[AMIMessage] = []
            stack.pbx.add_listener(lambda m: events.append(m) if m.get("Event", "").startswith("ChanSpy") else None)
            sup = await supervisor(stack)
            assert (await sup.request("monitor", agent_id="1001"))["error_id"] == "no-active-call"
            assert (await sup.request("monitor", agent_id="1001", mode="spy"))["error_id"] == "invalid-params"
            await ready(stack, "1001")
            await stack.connect("1001")
            agent_channel = stack.live("1001").agent_channel  # type: ignore[union-attr]
            for mode in ("listen", "whisper", "barge"):
                since = len(stack.sender.sent)
                reply = await sup.request("monitor", agent_id="1001", mode=mode)
                assert reply["type"] == "result", reply
                assert (reply["mode"], reply["channel"], reply["endpoint"]) == (mode, agent_channel, SUPERVISOR_PHONE)
                (originate,) = [f for name, f in stack.sender.actions(since) if name == "Originate"]
                assert (originate["Channel"], originate["Context"], originate["Exten"]) == \
                    (SUPERVISOR_PHONE, SPY_CONTEXT, mode)
                assert originate["Variable"] == [f"{CTI_SPY_CHANNEL}={agent_channel}"]
                await stack.until(lambda: sum(e.get("Event") == "ChanSpyStart" for e in events) == 1,
                                  f"the supervisor's phone spying ({mode})")
                start = next(e for e in events if e.get("Event") == "ChanSpyStart")
                assert start.get("SpyerChannel", "").startswith(SUPERVISOR_PHONE + "-")
                assert start.get("SpyeeChannel") == agent_channel
                assert start.get("SpyerExten") == mode and start.get("SpyerContext") == SPY_CONTEXT
                spy = stack.pbx.find_channel(start.get("SpyerChannel", ""))
                assert spy is not None and not spy.dead
                stack.pbx.far_hangup(spy)  # the supervisor hangs up; the agent's call goes on
                await stack.until(lambda: any(e.get("Event") == "ChanSpyStop" for e in events), "ChanSpyStop")
                events.clear()
                assert stack.state("1001") == "on_call"

            # the agent's call ends while a supervisor listens: ChanSpy (E) ends and the spy hangs up
            await sup.request("monitor", agent_id="1001", mode="listen")
            await stack.until(lambda: any(e.get("Event") == "ChanSpyStart" for e in events), "spying")
            spy = stack.pbx.find_channel(next(e for e in events if e.get("Event") == "ChanSpyStart")
                                         .get("SpyerChannel", ""))
            await stack.hang_up_phone("1001")
            await stack.until(lambda: spy is not None and spy.dead, "the supervisor's channel to end")
            rows = audit(stack)  # (the invalid mode never reached the backend: a frame error, no row)
            assert [(r.action, r.target, r.result) for r in rows] == \
                [("monitor", "agent:1001", "refused")] + [("monitor", "agent:1001", "ok")] * 4
            assert rows[2].params == {"agent_id": "1001", "mode": "whisper"}
    run(body)


def test_a_supervisor_without_a_phone_cannot_monitor() -> None:
    async def body() -> None:
        from tests.console_stack import HASHES, make_settings
        settings = make_settings(supervisors=[{"id": "sup", "password_hash": HASHES["sup"]}])
        async with running(settings) as stack:
            await ready(stack, "1001")
            await stack.connect("1001")
            sup = await supervisor(stack)
            assert (await sup.request("monitor", agent_id="1001"))["error_id"] == "no-endpoint"
    run(body)


# ------------------------------------------------------------------------------------------- campaigns
LEADS = "".join(f"L{i},+1555000{i:04d},Lead {i}\n" for i in range(1, 30))
NUMBERS = {f"+1555000{i:04d}": FarEnd("answer", ring_time=3.0) for i in range(1, 30)}


def progressive(leads: Path) -> dict[str, Any]:
    return {"pace_interval": 0.5, "campaigns": [{
        "name": "spring", "queue": "sales", "leads": str(leads), "mode": "progressive", "caller_id": "+15550100",
        "calling_window": {"start": "09:00", "end": "20:00"}, "timezone": noon_zone(time.time())}]}


def _originates(stack: Stack) -> int:
    return sum(name == "Originate" for name, _ in stack.sender.actions())


def _campaign(snapshot: dict[str, Any]) -> dict[str, Any]:
    (campaign,) = snapshot["campaigns"]
    return campaign  # type: ignore[no-any-return]


def test_pause_stops_new_dials_at_once_and_resume_dials_again() -> None:
    async def body() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            leads = Path(tmp) / "leads.csv"
            leads.write_text("id,number,name\n" + LEADS, encoding="utf-8")
            async with running(dialer=progressive(leads), numbers=NUMBERS) as stack:
                sup = await supervisor(stack)
                await ready(stack, "1001")
                await stack.until(lambda: _originates(stack) >= 1, "the first dial")
                reply = await sup.request("pause_campaign", campaign="spring")
                assert reply["paused"] is True and reply["enabled"] is False
                dialled = _originates(stack)
                wallboard = await sup.wait_push("wallboard", lambda m: _campaign(m)["paused"])
                assert _campaign(wallboard)["enabled"] is False
                assert _campaign(await sup.request("snapshot"))["paused"] is True
                # the call in flight goes on: the person answers and is offered to the agent
                await stack.ringing("1001")
                await stack.answer("1001")
                await ready(stack, "1002")
                await stack.advance(3.0)
                assert _originates(stack) == dialled  # nothing new while paused, with an agent ready
                reply = await sup.request("resume_campaign", campaign="spring")
                assert reply["paused"] is False and reply["enabled"] is True
                await stack.until(lambda: _originates(stack) > dialled, "a dial after the resume")
                assert (await sup.request("pause_campaign", campaign="autumn"))["error_id"] == "unknown-campaign"
                assert [(r.action, r.target, r.result) for r in audit(stack)] == [
                    ("pause_campaign", "campaign:spring", "ok"), ("resume_campaign", "campaign:spring", "ok"),
                    ("pause_campaign", "campaign:autumn", "refused")]
    run(body)


def test_mode_and_cap_change_at_run_time_within_the_law() -> None:
    async def body() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            leads = Path(tmp) / "leads.csv"
            leads.write_text("id,number,name\n" + LEADS, encoding="utf-8")
            async with running(dialer=progressive(leads), numbers=NUMBERS) as stack:
                sup = await supervisor(stack)
                campaign = stack.server.dialer.campaigns["spring"]  # type: ignore[union-attr]
                reply = await sup.request("set_campaign", campaign="spring", mode="predictive", max_abandon_rate=0.02)
                assert (reply["mode"], reply["max_abandon_rate"]) == ("predictive", 0.02)
                assert (campaign.settings.mode, campaign.settings.max_abandon_rate) == ("predictive", 0.02)
                board = _campaign(await sup.request("snapshot"))
                assert (board["mode"], board["max_abandon_rate"]) == ("predictive", 0.02)

                over = await sup.request("set_campaign", campaign="spring", max_abandon_rate=0.05)
                assert over["error_id"] == "over-legal-cap"
                assert "FTC TSR 16 CFR 310.4(b)(4)" in over["message"] and over["details"]["legal_cap"] == 0.03
                bad = await sup.request("set_campaign", campaign="spring", mode="turbo")
                assert bad["error_id"] == "bad-mode" and "progressive" in bad["message"]
                assert (await sup.request("set_campaign", campaign="spring"))["error_id"] == "invalid-params"
                assert (await sup.request("set_campaign", campaign="nope", mode="preview"))["error_id"] == \
                    "unknown-campaign"
                assert (campaign.settings.mode, campaign.settings.max_abandon_rate) == ("predictive", 0.02)

                reply = await sup.request("set_campaign", campaign="spring", mode="ratio", ratio=2.0)
                assert (reply["mode"], reply["ratio"]) == ("ratio", 2.0)
                reply = await sup.request("set_campaign", campaign="spring", mode="progressive")
                assert (reply["mode"], reply["ratio"]) == ("progressive", 1.0)  # ratio back to 1 outside ratio mode
                rows = audit(stack)
                assert [r.result for r in rows] == ["ok", "refused", "refused", "refused", "ok", "ok"]
                assert rows[1].reason.startswith("over-legal-cap: ") and "us_tsr" in rows[1].reason
                assert rows[0].params == {"campaign": "spring", "mode": "predictive", "max_abandon_rate": 0.02,
                                          "ratio": None}
    run(body)


def test_audit_rows_on_postgresql(pg_url: str) -> None:
    """The same trail on PostgreSQL: an action carried out and one refused."""
    async def body() -> None:
        async with running(db_url=pg_url) as stack:
            await ready(stack, "1001")
            sup = await supervisor(stack)
            assert (await sup.request("force_not_ready", agent_id="1001", reason="lunch"))["type"] == "result"
            assert (await sup.request("set_skills", agent_id="1001", skills={"x1": 2}))["error_id"] == "unknown-skill"
            rows = audit(stack)
            assert [(r.supervisor_id, r.action, r.target, r.result) for r in rows] == [
                ("sup", "force_not_ready", "agent:1001", "ok"), ("sup", "set_skills", "agent:1001", "refused")]
            assert rows[1].params == {"agent_id": "1001", "skills": {"x1": 2}}
            assert rows[1].reason.startswith("unknown-skill: ")
            assert stack.server.database is not None and stack.server.database.engine.dialect.name == "postgresql"
    run(body)


def test_a_refused_originate_is_action_failed_and_audited() -> None:
    async def body() -> None:
        async with running() as stack:
            await ready(stack, "1001")
            await stack.connect("1001")
            sup = await supervisor(stack)
            stack.sender.refuse("Originate", "Originate failed")
            reply = await sup.request("monitor", agent_id="1001", mode="barge")
            assert reply["error_id"] == "action-failed" and "Originate failed" in reply["message"]
            (row,) = audit(stack)
            assert (row.action, row.result, row.params) == ("monitor", "refused", {"agent_id": "1001", "mode": "barge"})
            assert row.reason.startswith("action-failed: ")
            assert stack.state("1001") == "on_call"
    run(body)
