"""The ``screenpop:`` configuration section. No I/O; imports only cti.config_types and screenpop's pure helpers."""

from __future__ import annotations

from pydantic import Field, field_validator

from cti.config_types import ConfigModel, Loc, PositiveSeconds, expected
from screenpop.crmlink import CrmTemplateError, template_fields
from screenpop.phone import is_known_region

DEFAULT_MASK_KEYS = ("pin", "password", "passcode", "secret", "cvv", "cvc", "card", "ssn", "dob", "security")


class ScreenpopSection(ConfigModel):
    """Customer look-up and pop composition settings."""

    default_region: str = expected(
        "a region code known to phonenumbers, e.g. US, GB, FR (numbers without + are read in it)", default="US")
    crm_url_template: str | None = expected(
        "a URL with {placeholders}, e.g. https://crm.example.com/customer?phone={ani}", default=None)
    cache_ttl: PositiveSeconds = 30.0
    cache_size: int = expected("an integer >= 1", default=10_000, ge=1)
    # A pop never waits for the store longer than this: a pop the cache cannot complete goes out with what
    # is known (a partial pop) and a pop_update follows when the look-up answers. 0 (the default) sends it
    # at once; e.g. 0.25 trades speed for fewer updates when the store is usually quick.
    slow_after: float = expected("a number of seconds >= 0", default=0.0, ge=0.0, le=60.0)
    lookup_timeout: PositiveSeconds = 2.0
    recent_interactions: int = expected("an integer 0-50", default=5, ge=0, le=50)
    max_matches: int = expected("an integer 1-50", default=5, ge=1, le=50)
    account_keys: tuple[str, ...] = Field(default=("account", "account_number"))
    mask_keys: tuple[str, ...] = Field(default=DEFAULT_MASK_KEYS)

    @field_validator("default_region")
    @classmethod
    def _region(cls, value: str) -> str:
        region = value.strip().upper()
        if not is_known_region(region):
            raise ValueError(f"unknown region {value!r}; use a two-letter code such as US or GB")
        return region

    def semantic_errors(self) -> list[tuple[Loc, str]]:
        errors: list[tuple[Loc, str]] = []
        if self.crm_url_template is not None:
            try:
                template_fields(self.crm_url_template)
            except CrmTemplateError as exc:
                errors.append((("crm_url_template",), str(exc)))
            if not self.crm_url_template.lower().startswith(("http://", "https://")):
                errors.append((("crm_url_template",), "must start with http:// or https://"))
        return errors
