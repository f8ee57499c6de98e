"""The interval reports written out: flat rows (``flatten``: the columns of docs/reports.md) as CSV or JSON,
streamed row by row, and the HTML page (a table and the charts of ``centre.charts``). A queue row gets the
agents it needed (Erlang C, ``acd.erlang``, on the period's offered calls and AHT against the queue's
target); a campaign row the abandon rate over the compliance window (rolling 30 days, by the periods'
ends) against the law's cap (``dialer.settings.LAW_CAP``)."""

from __future__ import annotations

import csv
import html
import json
from collections import deque
from collections.abc import Iterable, Iterator
from typing import IO, Any

from acd.erlang import agents_for_service_level
from dialer.settings import LAW_CAP
from kpi.report import Periods, ReportRow

COMPLIANCE_WINDOW = 30 * 86400.0
MAX_REQUIRED = 10_000

COMMON = ["start", "end", "start_local", "end_local"]
COLUMNS: dict[str, list[str]] = {
    "queue": [*COMMON, "queue", "offered", "answered", "abandoned", "short_abandoned", "overflowed", "service_level",
              "target_percent", "target_seconds", "abandon_rate", "asa", "handled", "aht", "holds", "avg_hold",
              "max_hold", "transfers", "callbacks", "staffed", "required"],
    "agent": [*COMMON, "agent", "handled", "aht", "holds", "occupancy", "ready_seconds", "busy_seconds",
              "not_ready_seconds", "not_ready"],
    "campaign": [*COMMON, "campaign", "dials", "answers", "live_answers", "contacts", "abandons", "machines",
                 "contact_rate", "abandon_rate", "abandon_rate_30d", "abandon_cap"],
    "disposition": [*COMMON, "disposition", "calls"],
}
COLUMNS["team"] = [*COMMON, "team", *COLUMNS["agent"][5:]]


def required_agents(offered: int, aht: float | None, span: float, percent: float, seconds: float) -> int | None:
    """Agents Erlang C says a period's traffic needed to meet the target (None without calls or AHT)."""
    if not offered or not aht or span <= 0 or percent >= 100:
        return None
    try:
        return agents_for_service_level(offered / span, aht, percent, seconds, max_agents=MAX_REQUIRED)
    except ValueError:
        return None


class Flattener:
    """Report rows -> flat dicts (the CSV columns), in the centre's time zone; keeps the rolling compliance
    window of each campaign (rows come in period order)."""

    def __init__(self, kind: str, timezone: str) -> None:
        self.kind = kind
        self.periods = Periods(timezone, "day")
        self.window: dict[str, deque[tuple[float, int, int]]] = {}

    def __call__(self, row: ReportRow) -> dict[str, Any]:
        f = row.figures
        out: dict[str, Any] = {"start": row.start, "end": row.end, "start_local": self.periods.label(row.start),
                               "end_local": self.periods.label(row.end), self.kind: row.entity}
        if self.kind == "queue":
            out.update({k: f[k] for k in COLUMNS["queue"][5:-1]})
            out["required"] = required_agents(f["offered"], f["aht"], row.end - row.start, f["target_percent"],
                                              f["target_seconds"])
        elif self.kind in ("agent", "team"):
            nr = f["not_ready"]
            out.update({k: f[k] for k in ("handled", "aht", "holds", "occupancy", "ready_seconds", "busy_seconds")})
            out["not_ready_seconds"] = round(sum(nr.values()), 3)
            out["not_ready"] = ";".join(f"{r or '-'}={s:g}" for r, s in nr.items())
        elif self.kind == "campaign":
            out.update({k: f[k] for k in COLUMNS["campaign"][5:-2]})
            w = self.window.setdefault(row.entity, deque())
            w.append((row.end, f["abandons"], f["live_answers"]))
            while w and w[0][0] <= row.end - COMPLIANCE_WINDOW:
                w.popleft()
            live = sum(x[2] for x in w)
            out["abandon_rate_30d"] = round(sum(x[1] for x in w) / live, 6) if live else None
            out["abandon_cap"] = LAW_CAP
        else:
            out["calls"] = f["calls"]
        return out


def _csv_value(v: Any) -> Any:
    return "" if v is None else v


def write_csv(kind: str, rows: Iterable[dict[str, Any]], out: IO[str]) -> int:
    writer = csv.writer(out, lineterminator="\n")
    cols = COLUMNS[kind]
    writer.writerow(cols)
    n = 0
    for r in rows:
        writer.writerow([_csv_value(r.get(c)) for c in cols])
        n += 1
    return n


def write_json(rows: Iterable[dict[str, Any]], out: IO[str]) -> int:
    """A JSON array, one row per line, streamed."""
    n = 0
    out.write("[")
    for r in rows:
        out.write(",\n" if n else "\n")
        out.write(json.dumps(r, ensure_ascii=False))
        n += 1
    out.write("\n]\n")
    return n


def write_html(kind: str, title: str, rows: list[dict[str, Any]], charts: dict[str, bytes], out: IO[str],
               max_rows: int = 5000) -> None:
    """One self-contained page: the charts (PNG, inline) and the table (the first ``max_rows`` rows)."""
    import base64

    cols = COLUMNS[kind]
    out.write("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
              f"<title>{html.escape(title)}</title><style>body{{font-family:sans-serif;margin:1.5em}}"
              "table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px;"
              "text-align:right}th{background:#eee;position:sticky;top:0}img{max-width:100%}</style></head><body>\n")
    out.write(f"<h1>{html.escape(title)}</h1>\n")
    for name, png in charts.items():
        out.write(f"<figure><img alt=\"{html.escape(name)}\" src=\"data:image/png;base64,"
                  f"{base64.b64encode(png).decode()}\"></figure>\n")
    out.write(f"<p>{len(rows)} rows{f' (the first {max_rows} shown)' if len(rows) > max_rows else ''}.</p>\n")
    out.write("<table><thead><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in cols if c not in ("start", "end"))
              + "</tr></thead><tbody>\n")
    for r in rows[:max_rows]:
        out.write("<tr>" + "".join(f"<td>{html.escape(str(_csv_value(r.get(c))))}</td>" for c in cols
                                   if c not in ("start", "end")) + "</tr>\n")
    out.write("</tbody></table></body></html>\n")


def flat_rows(kind: str, timezone: str, rows: Iterable[ReportRow]) -> Iterator[dict[str, Any]]:
    flatten = Flattener(kind, timezone)
    for r in rows:
        yield flatten(r)
