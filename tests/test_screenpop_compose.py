"""Pop composition, CRM links, phone normalisation and the screenpop settings: pure, no database."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from screenpop.compose import LookupKey, PopContext, compose_followup, compose_pop, lookup_keys, masked
from screenpop.crmlink import CrmTemplateError, build_link, template_fields
from screenpop.phone import PhoneError, normalise_for_lookup, normalise_strict
from screenpop.records import AccountRecord, CustomerRecord, InteractionRecord, PhoneRecord
from screenpop.settings import ScreenpopSection

S = ScreenpopSection(crm_url_template="https://crm.example.com/c?n={name}&p={ani}&id={external_id}&q={queue}")
ANN = CustomerRecord(7, "C7", "Ann", "Lee", phones=(PhoneRecord("+12015550123"),),
                     accounts=(AccountRecord("ACC-1001", "checking", "active"),), attributes={"tier": "gold"})
BOB = CustomerRecord(8, "C8", "Bob", "Lee", phones=(PhoneRecord("+12015550123"),))
CALL = PopContext(call_id="1700000000.10", uniqueid="1700000000.11", direction="inbound", ani="(201) 555-0123",
                  dnis="8005550199", queue="billing", wait_seconds=42.34, server="pbx1", agent_id="1001",
                  ivr_path=("main", "menu:2", "collect_account"),
                  ivr_collected={"account": "ACC-1001", "pin": "1234", "card_number": "4111111111111111"})
H1 = InteractionRecord(3, "pbx1/1699", 7, datetime(2026, 2, 1, 10, 0, tzinfo=UTC), queue="billing",
                       agent_id="1002", outcome="answered", disposition="resolved", notes="late fee waived")


def test_single_match_pop_carries_profile_interactions_ivr_and_link():
    """A found customer's pop has the profile, recent interactions, IVR path and masked entries, queue,
    DNIS, wait time and a CRM link whose values are URL-encoded."""
    pop = compose_pop(CALL, [ANN], {7: [H1]}, S, lookup_by=LookupKey("account", "ACC-1001"))
    assert pop["type"] == "pop" and pop["complete"] is True
    assert pop["call_key"] == "pbx1/1700000000.10"
    assert pop["lookup"] == {"status": "found", "by": "account", "value": "ACC-1001"}
    assert pop["new_caller"] is False
    assert (pop["ani"], pop["ani_e164"], pop["dnis"], pop["queue"], pop["wait_seconds"]) == (
        "(201) 555-0123", "+12015550123", "8005550199", "billing", 42.3)
    assert pop["ivr"] == {"path": ["main", "menu:2", "collect_account"], "steps": [], "reason": "",
                          "collected": {"account": "ACC-1001", "pin": "****", "card_number": "****"}}
    match = pop["customer"]
    assert pop["matches"] == [match]
    assert match["customer_id"] == 7
    assert match["profile"]["name"] == "Ann Lee"
    assert match["profile"]["accounts"] == [{"number": "ACC-1001", "product": "checking", "status": "active"}]
    assert match["interactions"] == [H1.to_dict()]
    assert match["crm_url"] == "https://crm.example.com/c?n=Ann%20Lee&p=%2B12015550123&id=C7&q=billing"
    assert pop["crm_url"] == match["crm_url"]
    assert pop["outbound"] is None


def test_several_matches_are_a_choice():
    """Two customers on one number give status multiple, no chosen customer, and one entry per customer with
    its own interactions and link; the call-level link has the call fields only."""
    pop = compose_pop(CALL, [ANN, BOB], {7: [H1], 8: []}, S, lookup_by=LookupKey("ani", "+12015550123"))
    assert pop["lookup"]["status"] == "multiple"
    assert pop["customer"] is None
    assert [m["customer_id"] for m in pop["matches"]] == [7, 8]
    assert [len(m["interactions"]) for m in pop["matches"]] == [1, 0]
    assert pop["matches"][1]["crm_url"] == "https://crm.example.com/c?n=Bob%20Lee&p=%2B12015550123&id=C8&q=billing"
    assert pop["crm_url"] == "https://crm.example.com/c?n=&p=%2B12015550123&id=&q=billing"


def test_unknown_caller_gets_a_new_caller_pop():
    """No customer found: a complete 'new caller' pop with the ANI and no matches."""
    pop = compose_pop(CALL, [], {}, S)
    assert (pop["new_caller"], pop["complete"], pop["lookup"]["status"]) == (True, True, "not_found")
    assert pop["matches"] == [] and pop["customer"] is None
    assert pop["ani"] == "(201) 555-0123"


def test_pending_pop_is_partial_and_the_followup_completes_it():
    """customers=None gives a partial pop (complete false, status pending) that still carries what the call
    knows; compose_followup sends the whole pop again as pop_update, or 'unavailable' if the look-up failed."""
    partial = compose_pop(CALL, None, None, S)
    assert (partial["complete"], partial["lookup"]["status"], partial["matches"]) == (False, "pending", [])
    assert partial["ivr"]["path"] == ["main", "menu:2", "collect_account"] and partial["queue"] == "billing"
    update = compose_followup(CALL, [ANN], {7: [H1]}, S, lookup_by=LookupKey("ani", "+12015550123"))
    assert (update["type"], update["complete"], update["call_key"]) == ("pop_update", True, partial["call_key"])
    assert update["customer"]["customer_id"] == 7
    failed = compose_followup(CALL, None, None, S)
    assert (failed["type"], failed["complete"], failed["lookup"]["status"]) == ("pop_update", True, "unavailable")
    assert failed["new_caller"] is False


def test_outbound_pop_has_campaign_lead_and_script():
    """An outbound pop carries the campaign, the lead fields (secrets masked) and the script."""
    call = PopContext(call_id="c9", uniqueid="u9", direction="outbound", ani="+442079460123", campaign="renewals",
                      lead_id="L42", lead={"name": "Cy", "plan": "gold", "password": "x"},
                      script="Hello {name}, about your renewal...")
    pop = compose_pop(call, [], {}, ScreenpopSection())
    assert pop["outbound"] == {"campaign": "renewals", "lead_id": "L42",
                               "lead": {"name": "Cy", "plan": "gold", "password": "****"},
                               "script": "Hello {name}, about your renewal..."}
    assert pop["crm_url"] is None
    assert pop["ani_e164"] == "+442079460123"


def test_hostile_ivr_and_lead_data_is_bounded():
    """Over-long values are clipped to 500 characters and at most 100 entries are shown."""
    big = {f"k{i}": "v" * 10_000 for i in range(1000)}
    call = PopContext(call_id="c", uniqueid="u", direction="inbound", ani="x" * 5000, ivr_collected=big,
                      ivr_path=tuple(str(i) for i in range(1000)))
    pop = compose_pop(call, None, None, ScreenpopSection())
    assert len(pop["ivr"]["collected"]) == 100
    assert max(len(v) for v in pop["ivr"]["collected"].values()) == 500
    assert len(pop["ani"]) == 500 and pop["ani_e164"] is None
    assert len(pop["ivr"]["path"]) == 100
    assert masked({"Security_Answer": "blue", "PIN": "1"}, ScreenpopSection()) == {"Security_Answer": "****",
                                                                                   "PIN": "****"}


def test_lookup_keys_most_specific_first():
    """Look-ups go lead customer id, then account (explicit or collected), then the normalised number;
    an anonymous caller with nothing collected has no key."""
    assert lookup_keys(CALL, S) == [LookupKey("account", "ACC-1001"), LookupKey("ani", "+12015550123")]
    anon = PopContext(call_id="c", uniqueid="u", direction="inbound", ani="anonymous")
    assert lookup_keys(anon, S) == []
    masked_entry = PopContext(call_id="c", uniqueid="u", direction="inbound", ani="", ivr_collected={"account": "****"})
    assert lookup_keys(masked_entry, S) == []
    out = PopContext(call_id="c", uniqueid="u", direction="outbound", ani="2125550100",
                     lead={"external_id": "C7", "account": "A-1"})
    assert lookup_keys(out, S) == [LookupKey("external_id", "C7"), LookupKey("account", "A-1"),
                                   LookupKey("ani", "+12125550100")]


def test_crm_link_encodes_every_value():
    """Every placeholder value is URL-encoded with nothing safe: slashes, ampersands, spaces, unicode."""
    link = build_link("https://crm/x/{name}?q={queue}#{{frag}}", {"name": "Zoë & Co/Ltd?", "queue": None})
    assert link == "https://crm/x/Zo%C3%AB%20%26%20Co%2FLtd%3F?q=#{frag}"


@pytest.mark.parametrize("template, message", [
    ("https://crm/{secret}", "unknown placeholder {secret}"),
    ("https://crm/{ani.__class__}", "unknown placeholder {ani.__class__}"),
    ("https://crm/{ani!r}", "may not have a conversion or format spec"),
    ("https://crm/{ani:>10}", "may not have a conversion or format spec"),
    ("https://crm/{}", "placeholders must be named"),
    ("https://crm/{ani", "malformed template"),
])
def test_bad_crm_templates_are_refused(template, message):
    """Templates with unknown names, attribute access, conversions, specs or broken braces are refused."""
    with pytest.raises(CrmTemplateError, match=re.escape(message)):
        template_fields(template)


def test_settings_check_template_and_region():
    """The settings report a bad CRM template as a semantic error and refuse an unknown region."""
    assert ScreenpopSection(crm_url_template="https://crm/{ani}").semantic_errors() == []
    errors = ScreenpopSection(crm_url_template="ftp://crm/{foo}").semantic_errors()
    assert [loc for loc, _ in errors] == [("crm_url_template",), ("crm_url_template",)]
    assert ScreenpopSection(default_region="gb").default_region == "GB"
    with pytest.raises(ValidationError):
        ScreenpopSection(default_region="XX")


@pytest.mark.parametrize("raw, region, e164", [
    ("+1 201-555-0123", "US", "+12015550123"),
    ("(201) 555-0123", "US", "+12015550123"),
    ("12015550123", "US", "+12015550123"),
    ("011 44 20 7946 0123", "US", "+442079460123"),
    ("442079460123", "US", "+442079460123"),
    ("020 7946 0123", "GB", "+442079460123"),
    ("555-0100", "US", None),
    ("anonymous", "US", None),
    ("", "US", None),
    ("1" * 100, "US", None),
])
def test_ani_normalisation(raw, region, e164):
    """ANIs in national, international, IDD-prefixed and '+'-less forms normalise to E.164; local-only,
    empty, junk and over-long values do not."""
    assert normalise_for_lookup(raw, region) == e164


def test_strict_normalisation_explains_refusals():
    """The importer's strict form refuses numbers that are not valid, with the reason."""
    assert normalise_strict("2015550123", "US") == "+12015550123"
    with pytest.raises(PhoneError, match="not a valid number for region US"):
        normalise_strict("555-0100", "US")
    with pytest.raises(PhoneError, match="not a phone number"):
        normalise_strict("call me", "US")
