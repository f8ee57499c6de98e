"""The demo campaign's leads: the demo customers (``screenpop.demo_data``) as dialer leads. The application
hands ``demo_leads`` to the dialer for campaigns whose ``leads`` is ``"demo"``."""

from __future__ import annotations

from dialer.leads import Lead, normalise_number
from screenpop.demo_data import generate_customers


def demo_leads(n: int) -> list[Lead]:
    """``n`` leads from the demo customers (the last ones generated, so the inbound demo callers, who are
    drawn from the same customers, are mostly other people). Their ``external_id`` finds them in the pop."""
    rows = generate_customers(max(3000, n))[::-1][:n]
    leads = []
    for row in rows:
        number = normalise_number(row["phone"])
        if number is None:
            continue
        leads.append(Lead(row["external_id"], number, {
            "external_id": row["external_id"], "name": f"{row['first_name']} {row['last_name']}",
            "account": row["account"].split(";")[0], "product": row["product"], "company": row["company"]}))
    return leads
