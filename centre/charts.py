"""The reports' charts as PNG bytes (matplotlib, Agg, imported lazily: only a chart pays for it): service
level and offered calls per interval, required vs logged-in agents, an agent state timeline, abandonment
over the compliance window, calls by disposition. Titles, units, and the targets as lines of one colour
(``TARGET_COLOUR``, drawn without anti-aliasing so the line is that exact colour)."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

TARGET_COLOUR = "#d62728"
TARGET_RGB = (0xD6, 0x27, 0x28)
STATE_COLOURS = {"ready": "#2ca02c", "reserved": "#bcbd22", "on_call": "#1f77b4", "wrap_up": "#17becf"}
NOT_READY_COLOUR = "#ff7f0e"
SIZE = (11.0, 4.5)


def _figure(size: tuple[float, float] = SIZE) -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    return Figure(figsize=size, dpi=100, layout="constrained")


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _times(rows: Sequence[Mapping[str, Any]], zone: ZoneInfo) -> list[datetime]:
    return [datetime.fromtimestamp(r["start"], zone) for r in rows]


def _time_axis(ax: Any, zone: ZoneInfo, span: float) -> None:
    import matplotlib.dates as mdates

    fmt = "%H:%M" if span <= 86400 + 3600 else "%d %b %H:%M" if span <= 3 * 86400 else "%d %b"
    ax.xaxis.set_major_locator(mdates.AutoDateLocator(tz=zone, maxticks=12))
    ax.xaxis.set_major_formatter(mdates.DateFormatter(fmt, tz=zone))
    ax.set_xlabel(f"local time ({zone.key})")


def _integers(ax: Any) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(integer=True))


def _width(rows: Sequence[Mapping[str, Any]]) -> float:
    """The bars' width in days (matplotlib's date unit): one period, a little less."""
    return 0.9 * (rows[0]["end"] - rows[0]["start"]) / 86400.0 if rows else 0.01


def service_level_chart(rows: Sequence[Mapping[str, Any]], queue: str, timezone: str) -> bytes:
    """Offered calls per interval (bars, left axis) and the service level (line, right axis, %) against the
    queue's target (a horizontal line)."""
    zone = ZoneInfo(timezone)
    fig = _figure()
    ax = fig.add_subplot()
    x = _times(rows, zone)
    ax.bar(x, [r["offered"] for r in rows], width=_width(rows), align="edge", color="#c7c7c7", label="offered")
    ax.set_ylabel("offered calls per interval")
    _integers(ax)
    ax2 = ax.twinx()
    middles = [datetime.fromtimestamp((r["start"] + r["end"]) / 2, zone) for r in rows]
    ax2.plot(middles, [None if r["service_level"] is None else 100 * r["service_level"] for r in rows], marker=".",
             color="#1f77b4", label="service level")
    target = rows[0]["target_percent"] if rows else 80.0
    seconds = rows[0]["target_seconds"] if rows else 20.0
    ax2.axhline(target, color=TARGET_COLOUR, linewidth=2, antialiased=False,
                label=f"target {target:g}% in {seconds:g} s")
    ax2.set_ylim(0, 105)
    ax2.set_ylabel("service level (%)")
    if rows:
        _time_axis(ax, zone, rows[-1]["end"] - rows[0]["start"])
    ax.set_title(f"Queue {queue}: service level and offered calls per interval")
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax2.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="lower right", fontsize="small")
    return _png(fig)


def staffing_chart(rows: Sequence[Mapping[str, Any]], queue: str, timezone: str) -> bytes:
    """Agents needed (Erlang C on the interval's offered calls and AHT, for the target) vs agents logged in
    and working (average over the interval)."""
    zone = ZoneInfo(timezone)
    fig = _figure()
    ax = fig.add_subplot()
    # steps over each interval, the last one to its end
    x = [*_times(rows, zone), *([datetime.fromtimestamp(rows[-1]["end"], zone)] if rows else [])]
    required = [r["required"] or 0 for r in rows]
    staffed = [r["staffed"] for r in rows]
    ax.step(x, required + required[-1:], where="post", color=TARGET_COLOUR, linewidth=2, antialiased=False,
            label="required (Erlang C)")
    ax.step(x, staffed + staffed[-1:], where="post", color="#1f77b4", linewidth=1.5, label="logged in")
    ax.set_ylabel("agents")
    _integers(ax)
    ax.set_ylim(bottom=0)
    if rows:
        _time_axis(ax, zone, rows[-1]["end"] - rows[0]["start"])
        t = rows[0]
        ax.set_title(f"Queue {queue}: required vs logged-in agents per interval (target {t['target_percent']:g}% "
                     f"in {t['target_seconds']:g} s)")
    ax.legend(loc="upper right", fontsize="small")
    return _png(fig)


def timeline_chart(segments: Mapping[str, Sequence[tuple[float, float, str]]], start: float, end: float,
                   timezone: str) -> bytes:
    """One bar per agent, coloured by state over time (not ready in one colour, whatever the reason)."""
    import matplotlib.dates as mdates
    from matplotlib.patches import Patch

    zone = ZoneInfo(timezone)
    agents = list(segments)
    fig = _figure((SIZE[0], max(2.5, 0.9 + 0.28 * len(agents))))
    ax = fig.add_subplot()
    for y, agent in enumerate(agents):
        by_colour: dict[str, list[tuple[float, float]]] = {}
        for s, e, key in segments[agent]:
            colour = NOT_READY_COLOUR if key.startswith("not_ready") else STATE_COLOURS.get(key, "#7f7f7f")
            by_colour.setdefault(colour, []).append((mdates.date2num(datetime.fromtimestamp(s, zone)),
                                                     (e - s) / 86400.0))
        for colour, bars in by_colour.items():
            ax.broken_barh(bars, (y - 0.4, 0.8), facecolors=colour)
    ax.set_yticks(range(len(agents)), agents, fontsize="small")
    ax.set_ylim(max(0.6, len(agents) - 0.4), -0.6)  # the first agent on top
    ax.set_xlim(mdates.date2num(datetime.fromtimestamp(start, zone)),
                mdates.date2num(datetime.fromtimestamp(end, zone)))
    _time_axis(ax, zone, end - start)
    ax.set_title("Agent states over time")
    handles = [Patch(color=c, label=s.replace("_", " ")) for s, c in STATE_COLOURS.items()]
    handles.append(Patch(color=NOT_READY_COLOUR, label="not ready"))
    fig.legend(handles=handles, loc="outside lower center", ncol=5, fontsize="small")
    return _png(fig)


def abandonment_chart(rows: Sequence[Mapping[str, Any]], campaign: str, timezone: str) -> bytes:
    """A campaign's abandon rate per period (bars) and over the rolling 30-day window (line), against the cap."""
    zone = ZoneInfo(timezone)
    fig = _figure()
    ax = fig.add_subplot()
    x = _times(rows, zone)
    ax.bar(x, [100 * (r["abandon_rate"] or 0) for r in rows], width=_width(rows), align="edge", color="#c7c7c7",
           label="abandon rate per period")
    ax.plot(x, [None if r["abandon_rate_30d"] is None else 100 * r["abandon_rate_30d"] for r in rows],
            color="#1f77b4", label="rolling 30 days")
    cap = rows[0]["abandon_cap"] if rows else 0.03
    ax.axhline(100 * cap, color=TARGET_COLOUR, linewidth=2, antialiased=False, label=f"cap {100 * cap:g}%")
    ax.set_ylabel("abandoned / live answers (%)")
    ax.set_ylim(0, max(100 * cap * 2, *(100 * (r["abandon_rate"] or 0) for r in rows)) * 1.05)
    if rows:
        _time_axis(ax, zone, rows[-1]["end"] - rows[0]["start"])
    ax.set_title(f"Campaign {campaign}: abandonment over the compliance window")
    ax.legend(loc="upper right", fontsize="small")
    return _png(fig)


def disposition_chart(totals: Mapping[str, int]) -> bytes:
    fig = _figure((SIZE[0], max(2.5, 0.9 + 0.3 * len(totals))))
    ax = fig.add_subplot()
    names = sorted(totals, key=lambda k: totals[k])
    ax.barh(names, [totals[n] for n in names], color="#1f77b4")
    ax.set_xlabel("calls")
    ax.set_title("Calls by disposition")
    return _png(fig)
