"""Deterministic demo customers: CSV rows, the callers the simulator can play, and seeding a store.

Pure generation (``random.Random(seed)``, no clock: ``seed_store`` takes ``now``); only ``seed_store``
touches the database, through ``CustomerStore``. Phone numbers are US ``NXX-555-01XX`` numbers, the
range reserved for fiction, valid for ``phonenumbers`` (past about 34,000 customers it continues with
555-0200 and up). A few customers share their household's number, so some pops offer a choice.
"""

from __future__ import annotations

import csv
import io
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

import phonenumbers

from screenpop.importer import parse_row
from screenpop.records import CustomerInput
from screenpop.store import CustomerStore

CSV_COLUMNS = ("external_id", "first_name", "last_name", "company", "email", "language", "segment", "phone",
               "mobile", "account", "product", "account_status", "city", "vip", "notes")
DEFAULT_COUNT = 3000
DEFAULT_SEED = 1

FIRST = ("Ann", "Bob", "Carla", "Dev", "Elena", "Farid", "Grace", "Hugo", "Ines", "Jamal", "Kim", "Luis", "Maya",
         "Noah", "Olga", "Priya", "Quinn", "Rosa", "Sam", "Tariq", "Uma", "Victor", "Wen", "Ximena", "Yusuf", "Zoe")
LAST = ("Lee", "Garcia", "Smith", "Nguyen", "Okafor", "Kowalski", "Haddad", "Rossi", "Tanaka", "Murphy", "Silva",
        "Cohen", "Patel", "Dubois", "Johansson", "Novak", "Moreau", "Schmidt", "Ortiz", "Walker")
CITIES = ("Newark", "Boston", "Denver", "Austin", "Seattle", "Miami", "Chicago", "Portland", "Atlanta", "Phoenix")
COMPANIES = ("", "", "", "", "Acme Corp", "Globex", "Initech", "Umbrella Ltd", "Stark & Sons")
PRODUCTS = ("broadband", "mobile", "tv", "bundle")
STATUSES = ("active", "active", "active", "overdue", "suspended")
SEGMENTS = ("bronze", "bronze", "silver", "silver", "gold")
LANGUAGES = ("en",) * 16 + ("es",) * 3 + ("fr",)
QUEUES = ("support", "billing", "sales")
DISPOSITIONS = ("resolved", "resolved", "sale", "no-sale", "callback", "complaint")
NOTES = ("", "", "", "", "Prefers e-mail", "Asked about fibre upgrade", "Disputed last invoice", "Moving house soon")


@dataclass(frozen=True, slots=True)
class DemoCaller:
    """A demo customer as the simulator needs it: who calls, from which number, with which account."""

    e164: str
    national: str
    external_id: str
    account: str
    name: str


@lru_cache(maxsize=1)
def demo_area_codes() -> tuple[int, ...]:
    """US area codes for which phonenumbers accepts every NXX-555-01XX number."""
    codes = []
    for ac in range(201, 990):
        n = phonenumbers.parse(f"+1{ac}5550100")
        if phonenumbers.is_valid_number(n) and phonenumbers.region_code_for_number(n) == "US":
            codes.append(ac)
    return tuple(codes)


def _numbers(rng: random.Random, count: int) -> list[str]:
    codes = demo_area_codes()
    pool = max(len(codes) * 100, count)
    if count > len(codes) * 900:
        raise ValueError(f"at most {len(codes) * 900} demo phone numbers")
    out = []
    for idx in rng.sample(range(pool), count):
        out.append(f"+1{codes[idx % len(codes)]}555{100 + idx // len(codes):04d}")
    return out


def generate_customers(n: int = DEFAULT_COUNT, seed: int = DEFAULT_SEED) -> list[dict[str, str]]:
    """``n`` customers as CSV rows (keys ``CSV_COLUMNS``); the same ``n`` and ``seed`` give the same rows."""
    if n < 0:
        raise ValueError("n must be >= 0")
    rng = random.Random(seed)
    phones = iter(_numbers(rng, 2 * n))
    accounts = iter(rng.sample(range(10_000_000, 100_000_000), 2 * n))
    rows: list[dict[str, str]] = []
    for i in range(n):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        household = rows and rng.random() < 0.04  # shares the previous customer's landline
        phone = rows[-1]["phone"] if household else next(phones)
        if household:
            last = rows[-1]["last_name"]
        mobile = next(phones) if rng.random() < 0.35 else ""
        accts = [str(next(accounts))] + ([str(next(accounts))] if rng.random() < 0.08 else [])
        rows.append({
            "external_id": f"C{i + 1:06d}", "first_name": first, "last_name": last,
            "company": rng.choice(COMPANIES),
            "email": f"{first}.{last}.{i + 1}@example.com".lower(),
            "language": rng.choice(LANGUAGES), "segment": rng.choice(SEGMENTS),
            "phone": phone, "mobile": mobile, "account": ";".join(accts),
            "product": rng.choice(PRODUCTS), "account_status": rng.choice(STATUSES),
            "city": rng.choice(CITIES), "vip": "yes" if rng.random() < 0.05 else "no",
            "notes": rng.choice(NOTES),
        })
    return rows


def customers_csv(rows: list[dict[str, str]]) -> str:
    """The rows as CSV text with a header, ready for ``cti customers import``."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def demo_callers(n: int = DEFAULT_COUNT, seed: int = DEFAULT_SEED) -> list[DemoCaller]:
    """One caller per demo customer (main number), for the simulator to call as known customers."""
    out = []
    for row in generate_customers(n, seed):
        number = phonenumbers.parse(row["phone"])
        national = str(number.national_number)
        out.append(DemoCaller(row["phone"], national, row["external_id"], row["account"].split(";")[0],
                              f"{row['first_name']} {row['last_name']}"))
    return out


def demo_phone_numbers(n: int = DEFAULT_COUNT, seed: int = DEFAULT_SEED) -> list[str]:
    """Every distinct E.164 number of the demo customers (main and mobile), in generation order."""
    seen: dict[str, None] = {}
    for row in generate_customers(n, seed):
        for number in (row["phone"], row["mobile"]):
            if number:
                seen.setdefault(number, None)
    return list(seen)


def demo_inputs(rows: list[dict[str, str]], region: str = "US") -> list[CustomerInput]:
    """The rows through the importer's own validation (so demo data obeys the import rules)."""
    header = list(CSV_COLUMNS)
    out = []
    for row in rows:
        inp, reasons = parse_row(header, [row[c] for c in CSV_COLUMNS], region)
        if inp is None:
            raise ValueError(f"demo row {row['external_id']} is invalid: {'; '.join(reasons)}")
        out.append(inp)
    return out


def seed_store(store: CustomerStore, now: datetime, n: int = DEFAULT_COUNT, seed: int = DEFAULT_SEED,
               only_if_empty: bool = True, history: bool = True) -> int:
    """Load the demo customers (and a few past interactions before ``now``) into ``store``.

    Returns how many customers were written; 0 when ``only_if_empty`` and the store has customers.
    Idempotent: customers are upserted by external id and interactions keyed ``demo/<external_id>/<k>``.
    """
    if only_if_empty and store.count_customers() > 0:
        return 0
    rows = generate_customers(n, seed)
    inputs = demo_inputs(rows)
    ids: list[int] = []
    for start in range(0, len(inputs), 500):
        ids.extend(o.customer_id or 0 for o in store.upsert_customers(inputs[start:start + 500]))
    if history:
        rng = random.Random(seed + 1)
        calls = []
        for row, cid in zip(rows, ids, strict=True):
            for k in range(rng.choice((0, 0, 0, 1, 1, 2, 3))):
                calls.append({
                    "call_key": f"demo/{row['external_id']}/{k}", "customer_id": cid,
                    "started_at": now - timedelta(days=rng.uniform(1, 180)), "direction": "inbound",
                    "ani": row["phone"], "queue": rng.choice(QUEUES), "agent_id": f"{rng.randint(1001, 1010)}",
                    "outcome": "answered", "disposition": rng.choice(DISPOSITIONS),
                    "notes": rng.choice(NOTES),
                })
        store.add_interactions(calls)
    return len(inputs)
