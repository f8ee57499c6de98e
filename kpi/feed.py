"""The supervisors' subscriptions to the statistics, sans-I/O: topics in, frames out, time passed in.

A *stream* per topic (``queue:<name>``, ``team:<name>``, ``campaign:<name>``) shared by its subscribers:

* a new subscriber gets a ``stats_snapshot`` (the stream's last published figures and their ``seq``),
  then ``stats_delta`` frames, each with the next ``seq``: the paths that changed (``set``: ``[path,
  value]`` pairs, a path being the list of keys from the top) and those that went away (``unset``);
* updates are coalesced: a stream publishes at most once per ``min_interval`` seconds (0.2 s; a team's, 1 s:
  ``intervals``) (when its figures
  changed, or every ``refresh`` seconds for the figures that move with time: waits, times in state,
  sliding windows), so a burst of events costs a subscriber one frame;
* a reconnecting client subscribes with ``resume`` (the ``epoch`` and last ``seq`` it applied): it gets
  the deltas after that ``seq`` from the stream's history (``history`` deltas kept) and goes on without a
  gap, or a fresh snapshot when it is too far behind or the server restarted (another ``epoch``). The
  history keeps each delta as its JSON text: what the client would have received, and text is invisible
  to the garbage collector (100 queues x 600 deltas kept as dicts and lists are millions of tracked
  objects, which made every full collection hold the event loop for 200-300 ms).

Applying a snapshot and then the deltas in ``seq`` order gives exactly the figures published with the
last ``seq`` (``apply_delta``; tests/test_kpi_feed.py checks it as a property).
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

Path = tuple[str, ...]
Message = dict[str, Any]

SNAPSHOT = "stats_snapshot"
DELTA = "stats_delta"


def flatten(figures: Mapping[str, Any], prefix: Path = ()) -> dict[Path, Any]:
    """Leaves of nested dicts by path (lists and scalars are leaves; an empty dict is a leaf too)."""
    out: dict[Path, Any] = {}
    for k, v in figures.items():
        path = (*prefix, k)
        if type(v) is dict and v:
            out.update(flatten(v, path))
        else:
            out[path] = v
    return out


def diff_nested(old: Mapping[str, Any], new: Mapping[str, Any], prefix: list[str],
                changed: list[list[Any]], gone: list[list[str]]) -> None:
    """Append to ``changed`` (``[path, value]``) and ``gone`` (paths) what differs from ``old`` to ``new``;
    equal subtrees are skipped whole (one C-level comparison)."""
    for k, v in new.items():
        if k in old:
            was = old[k]
            if was == v and type(was) is type(v):
                continue
            if type(v) is dict and type(was) is dict and v and was:
                diff_nested(was, v, [*prefix, k], changed, gone)
                continue
        if type(v) is dict and v:
            changed.extend([[list(p), x] for p, x in flatten(v, (*prefix, k)).items()])
        else:
            changed.append([[*prefix, k], v])
    for k in old:
        if k not in new:
            was = old[k]
            if type(was) is dict and was:
                gone.extend([list(p) for p in flatten(was, (*prefix, k))])
            else:
                gone.append([*prefix, k])


def diff(old: Mapping[Path, Any], new: Mapping[Path, Any]) -> tuple[list[list[Any]], list[list[str]]]:
    """(set, unset): what changed from ``old`` to ``new`` (flat: by path)."""
    changed = [[list(p), v] for p, v in new.items() if p not in old or old[p] != v or type(old[p]) is not type(v)]
    gone = [list(p) for p in old if p not in new]
    return changed, gone


def apply_delta(figures: dict[str, Any], delta: Mapping[str, Any]) -> None:
    """What a client does with a ``stats_delta``: remove ``unset`` paths, then write ``set`` ones."""
    for path in delta["unset"]:
        node = figures
        for k in path[:-1]:
            node = node[k]
        del node[path[-1]]
        _prune(figures, path[:-1])
    for path, value in delta["set"]:
        node = figures
        for k in path[:-1]:
            nxt = node.get(k)
            if not isinstance(nxt, dict):
                nxt = node[k] = {}
            node = nxt
        node[path[-1]] = value


def _prune(figures: dict[str, Any], path: list[str]) -> None:
    """Remove dicts left empty along ``path`` (an empty dict is sent as a leaf, never left behind)."""
    while path:
        node = figures
        for k in path[:-1]:
            node = node[k]
        if node[path[-1]] == {}:
            del node[path[-1]]
            path = path[:-1]
        else:
            return


@dataclass(slots=True)
class Stream:
    topic: str
    seq: int = 0
    figures: dict[str, Any] | None = None  # the last published (nested)
    history: deque[tuple[int, str]] = field(default_factory=deque)  # (seq, the delta as JSON)
    sent_at: float = float("-inf")
    subscribers: set[str] = field(default_factory=set)
    min_interval: float = 0.2


class Feed:
    """Streams, subscribers and their frames. ``figures(topic, now)`` makes a topic's figures (the core's);
    ``known(topic)`` says whether a topic exists; ``epoch`` names this server's run (seqs restart with it)."""

    def __init__(self, figures: Callable[[str, float], dict[str, Any]], known: Callable[[str], bool], *,
                 epoch: str, min_interval: float = 0.2, refresh: float = 1.0, history: int = 600,
                 intervals: Mapping[str, float] | None = None) -> None:
        """``intervals``: ``min_interval`` by topic kind where it differs (``{"team": 1.0}``: a team's figures
        are its agents', made again at most once a second)."""
        self.figures = figures
        self.intervals = dict(intervals or {})
        self.known = known
        self.epoch = epoch
        self.min_interval = min_interval
        self.refresh = refresh
        self.history = history
        self.streams: dict[str, Stream] = {}
        self.sessions: dict[str, set[str]] = {}  # session -> its topics
        self.counters = {"snapshots": 0, "deltas": 0, "resumed": 0, "evaluations": 0}

    def subscribe(self, session: str, topics: Iterable[str], now: float,
                  resume: Mapping[str, Mapping[str, Any]] | None = None) -> list[Message]:
        """Subscribe ``session`` to ``topics`` (KeyError naming the first unknown one; nothing changed then).
        Returns the frames it needs now: per topic a snapshot, or (``resume``) the deltas it missed."""
        topics = list(dict.fromkeys(topics))
        for topic in topics:
            if not self.known(topic):
                raise KeyError(topic)
        out: list[Message] = []
        mine = self.sessions.setdefault(session, set())
        for topic in topics:
            stream = self.streams.get(topic)
            if stream is None:
                interval = self.intervals.get(topic.partition(":")[0], self.min_interval)
                stream = self.streams[topic] = Stream(topic, min_interval=interval)
            if stream.figures is None:
                self._publish(stream, now)
            stream.subscribers.add(session)
            mine.add(topic)
            since = (resume or {}).get(topic)
            missed = self._missed(stream, since) if since is not None else None
            if missed is None:
                self.counters["snapshots"] += 1
                out.append(self.snapshot(stream))
            else:
                self.counters["resumed"] += 1
                out.extend(missed)
        return out

    def _missed(self, stream: Stream, since: Mapping[str, Any]) -> list[Message] | None:
        """The deltas after ``since`` (epoch and seq), or None when they are not all kept."""
        seq = since.get("seq")
        if since.get("epoch") != self.epoch or not isinstance(seq, int) or isinstance(seq, bool) \
                or not 0 <= seq <= stream.seq:
            return None
        if seq == stream.seq:
            return []
        if not stream.history or stream.history[0][0] > seq + 1:
            return None
        return [json.loads(text) for kept, text in stream.history if kept > seq]

    def snapshot(self, stream: Stream) -> Message:
        return {"type": SNAPSHOT, "topic": stream.topic, "epoch": self.epoch, "seq": stream.seq,
                "ts": stream.sent_at, "figures": stream.figures}

    def unsubscribe(self, session: str, topics: Iterable[str]) -> None:
        mine = self.sessions.get(session, set())
        for topic in topics:
            mine.discard(topic)
            stream = self.streams.get(topic)
            if stream is not None:
                stream.subscribers.discard(session)
        if not mine:
            self.sessions.pop(session, None)

    def drop(self, session: str) -> None:
        """The session went away."""
        self.unsubscribe(session, list(self.sessions.get(session, ())))

    def has_subscribers(self) -> bool:
        return bool(self.sessions)

    def due(self, now: float, dirty: set[str]) -> list[tuple[str, Message]]:
        """The frames to send at ``now``: the watched streams that are ``dirty`` (their figures changed) or
        due a refresh, at most one per stream per ``min_interval``. ``dirty`` topics sent are removed from it."""
        out: list[tuple[str, Message]] = []
        for stream in self.streams.values():
            if not stream.subscribers or now - stream.sent_at < stream.min_interval:
                continue
            if stream.topic in dirty or now - stream.sent_at >= self.refresh:
                dirty.discard(stream.topic)
                delta = self._publish(stream, now)
                if delta is not None:
                    out.extend((s, delta) for s in sorted(stream.subscribers))
        return out

    def _publish(self, stream: Stream, now: float) -> Message | None:
        """Make the stream's figures now; the delta from the last ones (None: nothing changed, or the first)."""
        self.counters["evaluations"] += 1
        figures = self.figures(stream.topic, now)
        stream.sent_at = now
        old, stream.figures = stream.figures, figures
        if old is None:
            return None
        changed: list[list[Any]] = []
        gone: list[list[str]] = []
        diff_nested(old, figures, [], changed, gone)
        if not (changed or gone):
            return None
        stream.seq += 1
        delta = {"type": DELTA, "topic": stream.topic, "epoch": self.epoch, "seq": stream.seq, "ts": now,
                 "set": changed, "unset": gone}
        stream.history.append((stream.seq, json.dumps(delta, separators=(",", ":"))))
        while len(stream.history) > self.history:
            stream.history.popleft()
        self.counters["deltas"] += 1
        return delta
