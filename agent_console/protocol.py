"""Console protocol v1: inbound message schema and validation, replies, close codes, rate limit. No I/O.

Must not import the hub, websockets or the backend. Every inbound frame goes through ``decode()``;
its ``ProtocolError`` carries a stable ``error_id`` (see docs/console-protocol.md) and never echoes
the offending value (a frame may hold a password). Time is passed in.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Union, get_args

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)

PROTOCOL_VERSION = 1

# Close codes (RFC 6455 section 7.4.2: 4000-4999 are for applications).
CLOSE_UNAUTHENTICATED = 4001  # no valid hello (bad credentials, wrong first message, hello timeout)
CLOSE_REPLACED = 4003  # the same agent opened a newer session; do not reconnect automatically
CLOSE_RATE_LIMITED = 4008  # flood: more messages than the per-connection rate limit
CLOSE_SERVER_FULL = 4013  # max_connections reached; retry later
CLOSE_GOING_AWAY = 1001  # server shutting down; reconnect with backoff
# A slow consumer (send queue full) is aborted without a close frame: the client sees 1006.

Id = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")]
RequestId = str | int
Text = Annotated[str, Field(max_length=4000)]
Short = Annotated[str, Field(min_length=1, max_length=128)]
Phone = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^\+?[0-9*#]{1,63}$")]
Endpoint = Annotated[str, Field(min_length=3, max_length=128, pattern=r"^[A-Za-z0-9]+/[A-Za-z0-9_.@:+-]+$")]


class _Msg(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    v: Literal[1]
    id: Annotated[str, Field(min_length=1, max_length=64)] | Annotated[int, Field(ge=0, le=2**53)]


class Hello(_Msg):
    type: Literal["hello"]
    agent_id: Id
    password: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    token: Annotated[str, Field(min_length=1, max_length=1024)] | None = None
    role: Literal["agent", "supervisor"] | None = None
    client: Annotated[str, Field(max_length=128)] | None = None

    @model_validator(mode="after")
    def _one_credential(self) -> Hello:
        if (self.password is None) == (self.token is None):
            raise ValueError("give exactly one of password or token")
        return self


class Ping(_Msg):
    type: Literal["ping"]


class Login(_Msg):
    type: Literal["login"]
    endpoint: Endpoint | None = None  # None: the agent's configured endpoint


class Logout(_Msg):
    type: Literal["logout"]


class Ready(_Msg):
    type: Literal["ready"]


class NotReady(_Msg):
    type: Literal["not_ready"]
    reason: Id


class _CallAction(_Msg):
    call_id: Short | None = None  # None: the agent's current call


class HangupCall(_CallAction):
    type: Literal["hangup"]


class Hold(_CallAction):
    type: Literal["hold"]


class Retrieve(_CallAction):
    type: Literal["retrieve"]


class RecordingPause(_CallAction):
    """Pause the call's recording (PCI DSS: while the customer reads a card number): silence is recorded."""

    type: Literal["recording_pause"]


class RecordingResume(_CallAction):
    type: Literal["recording_resume"]


class Transfer(_CallAction):
    type: Literal["transfer"]
    to: Literal["queue", "number"]
    target: Short


class AttendedTransfer(_CallAction):
    type: Literal["attended_transfer"]
    number: Phone


class AttendedComplete(_CallAction):
    type: Literal["attended_complete"]


class AttendedCancel(_CallAction):
    type: Literal["attended_cancel"]


def _in_utc_range(value: datetime) -> datetime:
    """A callback time must exist in UTC too (9999-12-31T23:59-23:59 is in year 10000 there)."""
    try:
        value.astimezone(UTC)
    except OverflowError:
        raise ValueError("out of range (before year 1 or after 9999 in UTC)") from None
    return value


CallbackTime = Annotated[AwareDatetime, Field(strict=False), AfterValidator(_in_utc_range)]


class CallbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)

    at: CallbackTime  # ISO-8601 with an offset, e.g. 2025-03-01T14:30:00Z
    number: Phone
    notes: Text = ""


class Dispose(_Msg):
    type: Literal["dispose"]
    call_id: Short
    disposition: Id
    notes: Text = ""
    callback: CallbackRequest | None = None
    then: Literal["ready", "not_ready"] = "ready"
    reason: Id | None = None  # not-ready reason when then == "not_ready"


class ScheduleCallback(_Msg):
    type: Literal["schedule_callback"]
    at: CallbackTime
    number: Phone
    notes: Text = ""
    call_id: Short | None = None
    lead_id: Short | None = None


class PreviewAccept(_Msg):
    type: Literal["preview_accept"]
    lead_id: Short


class PreviewSkip(_Msg):
    type: Literal["preview_skip"]
    lead_id: Short
    reason: Annotated[str, Field(max_length=200)] = ""


class ChooseCustomer(_Msg):
    type: Literal["choose_customer"]
    call_id: Short
    customer_id: Short


class Snapshot(_Msg):
    type: Literal["snapshot"]


# A statistics topic: queue:<name>, team:<name> or campaign:<name> (docs/console-protocol.md, "Live statistics").
Topic = Annotated[str, Field(min_length=3, max_length=80, pattern=r"^(queue|team|campaign):[A-Za-z0-9_.@ -]{1,64}$")]


class ResumePoint(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    epoch: Annotated[str, Field(min_length=1, max_length=64)]
    seq: Annotated[int, Field(ge=0, le=2**53)]


class Subscribe(_Msg):
    type: Literal["subscribe"]
    topics: Annotated[list[Topic], Field(min_length=1, max_length=500)]
    resume: Annotated[dict[Topic, ResumePoint], Field(max_length=500)] | None = None


class Unsubscribe(_Msg):
    type: Literal["unsubscribe"]
    topics: Annotated[list[Topic], Field(min_length=1, max_length=500)]


# ---------------------------------------------------------------- supervisor actions (audited)
SkillName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
SkillLevel = Annotated[int, Field(ge=1, le=10)]
CampaignName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]{1,64}$")]


class ForceNotReady(_Msg):
    type: Literal["force_not_ready"]
    agent_id: Id
    reason: Id = "supervisor"  # a configured not-ready reason, or "supervisor"


class ForceLogout(_Msg):
    type: Literal["force_logout"]
    agent_id: Id


class SetSkills(_Msg):
    type: Literal["set_skills"]
    agent_id: Id
    skills: Annotated[dict[SkillName, SkillLevel], Field(max_length=64)]  # the agent's whole new set


class Monitor(_Msg):
    type: Literal["monitor"]
    agent_id: Id
    mode: Literal["listen", "whisper", "barge"] = "listen"


class PauseCampaign(_Msg):
    type: Literal["pause_campaign"]
    campaign: CampaignName


class ResumeCampaign(_Msg):
    type: Literal["resume_campaign"]
    campaign: CampaignName


class SetCampaign(_Msg):
    type: Literal["set_campaign"]
    campaign: CampaignName
    mode: Annotated[str, Field(min_length=1, max_length=20)] | None = None  # one of the dial modes
    max_abandon_rate: Annotated[float, Field(strict=False, ge=0.0, le=1.0)] | None = None
    ratio: Annotated[float, Field(strict=False, ge=0.1, le=5.0)] | None = None

    @model_validator(mode="after")
    def _something(self) -> SetCampaign:
        if self.mode is None and self.max_abandon_rate is None and self.ratio is None:
            raise ValueError("give mode, max_abandon_rate or ratio")
        return self


MESSAGE_MODELS: tuple[type[_Msg], ...] = (
    Hello, Ping, Login, Logout, Ready, NotReady, HangupCall, Hold, Retrieve, Transfer, AttendedTransfer,
    AttendedComplete, AttendedCancel, Dispose, ScheduleCallback, PreviewAccept, PreviewSkip, ChooseCustomer,
    Snapshot, Subscribe, Unsubscribe,
    RecordingPause, RecordingResume,
    ForceNotReady, ForceLogout, SetSkills, Monitor, PauseCampaign, ResumeCampaign, SetCampaign,
)
_REQUEST: TypeAdapter[_Msg] = TypeAdapter(
    Annotated[Union[MESSAGE_MODELS], Field(discriminator="type")]  # type: ignore[valid-type]  # noqa: UP007
)
REQUEST_TYPES: frozenset[str] = frozenset(get_args(m.model_fields["type"].annotation)[0] for m in MESSAGE_MODELS)

AGENT_ACTIONS = frozenset({
    "login", "logout", "ready", "not_ready", "hangup", "hold", "retrieve", "transfer", "attended_transfer",
    "attended_complete", "attended_cancel", "dispose", "schedule_callback", "preview_accept", "preview_skip",
    "choose_customer",
    "recording_pause", "recording_resume",
})
#: The agent's actions on its current call: with several nodes, carried out by the node whose PBX carries the call
#: (centre/console_relay.py).
CALL_ACTIONS = frozenset({"hangup", "hold", "retrieve", "transfer", "attended_transfer", "attended_complete",
                          "attended_cancel", "recording_pause", "recording_resume", "choose_customer"})
#: Supervisors' actions on agents and campaigns: each one is audited (centre/audit.py).
AUDITED_ACTIONS = frozenset({"force_not_ready", "force_logout", "set_skills", "monitor", "pause_campaign",
                             "resume_campaign", "set_campaign"})
SUPERVISOR_ACTIONS = frozenset({"snapshot", "subscribe", "unsubscribe"}) | AUDITED_ACTIONS
ALLOWED: dict[str, frozenset[str]] = {"agent": AGENT_ACTIONS | {"ping"}, "supervisor": SUPERVISOR_ACTIONS | {"ping"}}
# Server pushes (``type`` of messages that are not replies); other packages push these through the hub.
PUSH_TYPES = frozenset({"state", "pop", "pop_update", "call", "preview", "wallboard", "heartbeat", "notice",
                        "stats_snapshot", "stats_delta",
                        "recording"})


class ProtocolError(Exception):
    """A frame was refused. ``re`` is the request id when one could be read, so the client can match it."""

    def __init__(self, error_id: str, message: str, re: RequestId | None = None,
                 fields: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.error_id = error_id
        self.message = message
        self.re = re
        self.fields = fields or []

    def to_message(self) -> dict[str, Any]:
        return error(self.re, self.error_id, self.message, fields=self.fields)


def _request_id(obj: dict[str, Any]) -> RequestId | None:
    rid = obj.get("id")
    if isinstance(rid, bool):
        return None
    if isinstance(rid, str) and 0 < len(rid) <= 64:
        return rid
    if isinstance(rid, int) and 0 <= rid <= 2**53:
        return rid
    return None


def decode(frame: str | bytes) -> BaseModel:
    """Parse and validate one inbound frame into its message model, or raise ProtocolError."""
    if isinstance(frame, bytes):
        raise ProtocolError("bad-frame", "binary frames are not part of the protocol; send JSON text")
    try:
        obj = json.loads(frame)
    except ValueError:
        raise ProtocolError("bad-json", "frame is not valid JSON") from None
    except RecursionError:  # [[[[...]]]]: json nests by recursion; no message nests deeper than a few levels
        raise ProtocolError("bad-json", "frame nests too deeply") from None
    if not isinstance(obj, dict):
        raise ProtocolError("bad-message", "a message is a JSON object")
    rid = _request_id(obj)
    version = obj.get("v")
    if type(version) is not int or version != PROTOCOL_VERSION:  # True == 1 and 1.0 == 1 in Python
        raise ProtocolError("unsupported-version", f"protocol version must be {PROTOCOL_VERSION}", rid)
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise ProtocolError("bad-message", "missing \"type\"", rid)
    if kind not in REQUEST_TYPES:
        raise ProtocolError("unknown-type", f"unknown message type {kind[:40]!r}", rid)
    if rid is None:
        raise ProtocolError("bad-message", "missing or invalid \"id\" (string of 1-64 chars or integer)")
    try:
        return _REQUEST.validate_python(obj)
    except ValidationError as exc:
        fields = [{"field": ".".join(str(p) for p in e["loc"][1:]) or "(message)", "problem": e["msg"]}
                  for e in exc.errors(include_input=False, include_url=False)[:10]]
        raise ProtocolError("invalid-params", f"invalid {kind} message", rid, fields) from None


def params_of(message: BaseModel) -> dict[str, Any]:
    """The action parameters of a request: its fields without ``v``, ``type`` and ``id``."""
    return message.model_dump(exclude={"v", "type", "id"})


def result(re: RequestId | None, **payload: Any) -> dict[str, Any]:
    return {"v": PROTOCOL_VERSION, "type": "result", "re": re, **payload}


def error(re: RequestId | None, error_id: str, message: str, *, fields: list[dict[str, str]] | None = None,
          details: dict[str, Any] | None = None) -> dict[str, Any]:
    """An error reply. ``fields``: which fields of the request were invalid; ``details``: error-specific data."""
    out: dict[str, Any] = {"v": PROTOCOL_VERSION, "type": "error", "re": re, "error_id": error_id, "message": message}
    if fields:
        out["fields"] = fields
    if details:
        out["details"] = details
    return out


def encode(message: dict[str, Any]) -> str:
    """Serialise an outbound message (compact JSON; datetimes as ISO-8601)."""
    if "v" not in message:
        message = {"v": PROTOCOL_VERSION, **message}
    return json.dumps(message, separators=(",", ":"), default=_json_default)


def _json_default(value: object) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


class RateLimiter:
    """Token bucket: ``burst`` messages at once, refilled at ``rate`` per second. Pure; time passed in."""

    __slots__ = ("_rate", "_burst", "_tokens", "_last")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._last = now

    def allow(self, now: float) -> bool:
        elapsed = max(0.0, now - self._last)
        self._last = now
        self._tokens = min(self._burst, self._tokens + elapsed * self._rate)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False
