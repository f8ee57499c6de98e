"""Building blocks of the configuration schema: the strict base model and common field types.

Every section model derives from ``ConfigModel`` (unknown keys are errors, values are frozen).
A field can carry ``expected("...")`` so that an error reads ``expected an integer 1-65535``.
Sections may define ``semantic_errors() -> list[tuple[tuple[str | int, ...], str]]`` for checks that
span fields (unknown IVR node targets, ...); the loader calls it and reports each with file:line.
No I/O here.
"""

from __future__ import annotations

from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

Loc = tuple[str | int, ...]


def expected(text: str, **kwargs: Any) -> Any:
    """A pydantic ``Field`` whose validation errors say ``expected <text>``."""
    extra = dict(kwargs.pop("json_schema_extra", None) or {})
    extra["expected"] = text
    return Field(json_schema_extra=extra, **kwargs)


class ConfigModel(BaseModel):
    """Strict base: unknown keys are errors; loaded config is immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def semantic_errors(self) -> list[tuple[Loc, str]]:
        """Cross-field problems as (location relative to this model, message). Override."""
        return []


Port = Annotated[int, Field(ge=1, le=65535, json_schema_extra={"expected": "an integer 1-65535"})]
PositiveSeconds = Annotated[float, Field(gt=0, json_schema_extra={"expected": "a number of seconds > 0"})]


class HostPort(ConfigModel):
    """A listen or connect address."""

    host: str = "127.0.0.1"
    port: Port


def _known_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r} (use an IANA name such as Europe/Paris)") from None
    return value


TimeZoneName = Annotated[str, AfterValidator(_known_zone)]
"""An IANA time zone name such as ``Europe/Paris``, checked against the installed zone database."""
