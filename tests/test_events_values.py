"""Domain events (cti/events.py) and ACD events (acd/events.py) are frozen values: built with keywords only,
checked on construction, and holding no mutable container."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from acd.events import AcdWarning, AgentStateChanged, CallOverflowed, QueueCallFinished
from acd.tables import QueueCallRecord, row_for
from cti.events import CallEnded, CallQueued, CallTransferred, DeviceStateChanged

QUEUED: dict[str, Any] = {"server": "pbx", "ts": 1.0, "call_id": "L1", "uniqueid": "u1", "channel": "PJSIP/t-1",
                          "queue": "sales", "skills": "", "priority": 0, "language": "en", "caller_num": "+1555",
                          "caller_name": "", "dnis": "100"}
FINISHED: dict[str, Any] = {"ts": 9.0, "server": "pbx", "uniqueid": "u1", "call_id": "L1", "queue": "sales",
                            "entered": 1.0, "outcome": "answered", "wait": 3.0}


def test_events_are_built_with_keywords_only() -> None:
    """A positional construction (the 12-argument CallQueued(...) of old) is refused with TypeError."""
    with pytest.raises(TypeError):
        CallQueued("pbx", 1.0, "L1", "u1", "PJSIP/t-1", "sales", "", 0, "en", "+1555", "", "100")  # type: ignore[misc]
    with pytest.raises(TypeError):
        AgentStateChanged(1.0, "a1", "ready", "not_ready", "", 0.0)  # type: ignore[misc]
    assert CallQueued(**QUEUED).uniqueid == "u1"


def test_an_event_keeps_its_variables_whatever_the_builder_does_later() -> None:
    """CallQueued.data is a read-only copy: changing the dict it was built from, or writing through the event,
    changes nothing; readers still use .get, [] and items(); a replace() keeps it read-only."""
    variables = {"CTI_CAMPAIGN": "renewals", "CTI_LEAD_ID": "7"}
    event = CallQueued(**QUEUED, data=variables)
    variables["CTI_CAMPAIGN"] = "other"
    assert event.data.get("CTI_CAMPAIGN") == "renewals" and event.data["CTI_LEAD_ID"] == "7"
    with pytest.raises(TypeError):
        event.data["CTI_CAMPAIGN"] = "x"  # type: ignore[index]
    copy = dataclasses.replace(event, caller_num="+1666")
    assert dict(copy.data) == {"CTI_CAMPAIGN": "renewals", "CTI_LEAD_ID": "7"}
    with pytest.raises(TypeError):
        copy.data["x"] = "y"  # type: ignore[index]
    assert dict(CallQueued(**QUEUED).data) == {}


def test_acd_events_hold_read_only_mappings_and_rows_still_store_them() -> None:
    """QueueCallFinished.data and AcdWarning.details are read-only copies; the recorder's row takes a plain dict."""
    data = {"CTI_ACCOUNT": "42"}
    row = QueueCallFinished(**FINISHED, data=data)
    data["CTI_ACCOUNT"] = "43"
    with pytest.raises(TypeError):
        row.data["CTI_ACCOUNT"] = "44"  # type: ignore[index]
    model, values = row_for(row, "n") or (None, {})
    assert model is QueueCallRecord and values["ivr_data"] == {"CTI_ACCOUNT": "42"}
    assert type(values["ivr_data"]) is dict  # the JSON column gets a plain dict
    details = {"ref": "acd-overflow-1"}
    warning = AcdWarning(ts=1.0, code="command-failed", message="Redirect failed", details=details)
    details.clear()
    assert dict(warning.details) == {"ref": "acd-overflow-1"}
    with pytest.raises(TypeError):
        warning.details["ref"] = "x"  # type: ignore[index]


@pytest.mark.parametrize(("build", "field"), [
    (lambda: CallQueued(**{**QUEUED, "server": ""}), "CallQueued.server"),
    (lambda: CallQueued(**{**QUEUED, "uniqueid": ""}), "CallQueued.uniqueid"),
    (lambda: DeviceStateChanged(server="", ts=1.0, device="PJSIP/1001", state="INUSE"), "DeviceStateChanged.server"),
    (lambda: CallEnded(server="pbx", ts=1.0, call_id="", cause=16, cause_txt="", hung_up_by=None, answered=False,
                       duration=0.0), "CallEnded.call_id"),
    (lambda: CallTransferred(server="pbx", ts=1.0, call_id="L1", uniqueid="u1", channel="c", kind="sideways",
                             target="", result=""), "CallTransferred.kind"),
    (lambda: AgentStateChanged(ts=1.0, agent_id="a1", state="dancing", previous="ready", reason="", since=0.0),
     "AgentStateChanged.state"),
    (lambda: AgentStateChanged(ts=1.0, agent_id="", state="ready", previous="not_ready", reason="", since=0.0),
     "AgentStateChanged.agent_id"),
    (lambda: QueueCallFinished(**{**FINISHED, "outcome": "lost"}), "QueueCallFinished.outcome"),
    (lambda: QueueCallFinished(**{**FINISHED, "uniqueid": ""}), "QueueCallFinished.uniqueid"),
    (lambda: CallOverflowed(ts=1.0, server="pbx", uniqueid="u1", call_id="L1", queue="sales", wait=60.0,
                            action="teleport", target=""), "CallOverflowed.action"),
    (lambda: AcdWarning(ts=1.0, code="", message="?"), "AcdWarning.code"),
])
def test_a_bad_event_is_never_built(build: Any, field: str) -> None:
    """Empty ids and unknown kinds, states, outcomes and actions raise ValueError naming the field."""
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        build()
