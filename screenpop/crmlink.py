"""External CRM links built from a URL template with every value URL-encoded. Pure; no I/O, no imports
from the rest of the project.

The template uses ``{field}`` placeholders (``{{`` and ``}}`` for literal braces). Only plain names
from ``CRM_FIELDS`` are allowed: no attribute access, indexing, conversions or format specs, so a
template can never reach into Python objects. Each value is encoded with
``urllib.parse.quote(value, safe="")``, so ``/``, ``?``, ``&``, ``#``, ``=`` and spaces are all escaped.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from urllib.parse import quote

CRM_FIELDS: tuple[str, ...] = (
    "call_id", "call_key", "uniqueid", "direction", "ani", "dnis", "queue", "agent_id",
    "customer_id", "external_id", "account", "first_name", "last_name", "name", "email",
    "campaign", "lead_id",
)

_FORMATTER = string.Formatter()


class CrmTemplateError(ValueError):
    """The CRM URL template is malformed or names an unknown field."""


def template_fields(template: str) -> list[str]:
    """The placeholder names of ``template`` in order; raises ``CrmTemplateError`` on anything else."""
    names: list[str] = []
    try:
        parts = list(_FORMATTER.parse(template))
    except ValueError as exc:
        raise CrmTemplateError(f"malformed template: {exc}") from None
    for _literal, name, spec, conversion in parts:
        if name is None:
            continue
        if name == "" or name.isdigit():
            raise CrmTemplateError("placeholders must be named, e.g. {ani}")
        if spec or conversion:
            raise CrmTemplateError(f"placeholder {{{name}}} may not have a conversion or format spec")
        if name not in CRM_FIELDS:
            raise CrmTemplateError(f"unknown placeholder {{{name}}}; known: {', '.join(CRM_FIELDS)}")
        names.append(name)
    return names


def build_link(template: str, values: Mapping[str, object]) -> str:
    """Fill ``template``: each value URL-encoded with ``safe=""``; missing or None values become ``""``."""
    out: list[str] = []
    for literal, name, _spec, _conv in _FORMATTER.parse(template):
        out.append(literal)
        if name is None:
            continue
        if name not in CRM_FIELDS:
            raise CrmTemplateError(f"unknown placeholder {{{name}}}")
        value = values.get(name)
        out.append("" if value is None else quote(str(value), safe=""))
    return "".join(out)
