"""Phone number normalisation to E.164 with the ``phonenumbers`` library. Pure; no I/O.

``normalise_for_lookup`` is lenient (an ANI from a trunk: any number that is possible in full, not only
locally); ``normalise_strict`` is what the importer stores (the number must be valid for its region).
"""

from __future__ import annotations

from functools import lru_cache

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, ValidationResult

# ANIs and CSV cells longer than this are not phone numbers (phonenumbers itself caps at 250).
MAX_PHONE_CHARS = 64


class PhoneError(ValueError):
    """A value that is not a usable phone number; the message says why (without echoing secrets)."""


def _parse(raw: str, region: str) -> tuple[phonenumbers.PhoneNumber, bool]:
    """The number read in ``region`` (or as international, see below) and whether it is valid."""
    text = raw.strip()
    if not text:
        raise PhoneError("empty phone number")
    if len(text) > MAX_PHONE_CHARS:
        raise PhoneError(f"phone number longer than {MAX_PHONE_CHARS} characters")
    try:
        number = phonenumbers.parse(text, region)
    except NumberParseException as exc:
        raise PhoneError(f"not a phone number ({exc.args[0] if exc.args else exc})") from None
    valid = phonenumbers.is_valid_number(number)
    if not valid and not text.startswith("+"):
        # A trunk may deliver an international number without its "+" (e.g. 442079460000):
        # prefer that reading when it is valid and the regional one is not.
        digits = "".join(ch for ch in text if ch.isdigit())
        if len(digits) >= 10:
            try:
                intl = phonenumbers.parse("+" + digits, None)
            except NumberParseException:
                intl = None
            if intl is not None and phonenumbers.is_valid_number(intl):
                return intl, True
    return number, valid


def normalise_strict(raw: str, region: str) -> str:
    """E.164 of ``raw`` read in ``region``; raises ``PhoneError`` unless the number is valid."""
    number, valid = _parse(raw, region)
    if not valid:
        raise PhoneError(f"not a valid number for region {region}")
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


@lru_cache(maxsize=8192)
def normalise_for_lookup(raw: str, region: str) -> str | None:
    """E.164 of an ANI, or None when it cannot name a subscriber (anonymous, too short, junk). Cached: the
    same ANI is read at queueing, at the offer and at the interaction (phonenumbers costs ~0.1 ms a call)."""
    try:
        number, valid = _parse(raw, region)
    except PhoneError:
        return None
    if valid:
        return phonenumbers.format_number(number, PhoneNumberFormat.E164)
    if phonenumbers.is_possible_number_with_reason(number) == ValidationResult.IS_POSSIBLE:
        return phonenumbers.format_number(number, PhoneNumberFormat.E164)
    return None


def is_known_region(region: str) -> bool:
    return region in phonenumbers.SUPPORTED_REGIONS
