"""Warnings that can come in floods, summarised: at most one log line per kind per interval, with a count.

The first warning of a kind is logged at once, in full. Later ones of that kind within ``interval``
seconds are only counted; when the interval ends one line says how many there were and shows the last
one; the next interval then starts (a flood gives one line per minute), and an interval with nothing
new ends the summarising (no timer left). 500 silent FastAGI connections make two lines, not 500.
Time comes from ``clock`` (``IReactorTime``: the reactor, or ``task.Clock`` in tests).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from twisted.internet.interfaces import IDelayedCall, IReactorTime


@dataclass
class _Window:
    timer: IDelayedCall
    count: int = 0
    last: str = ""


class WarningDigest:
    """Rate-limits ``logger.warning`` per kind (``"refused"``, ``"timeout"``, ...)."""

    def __init__(self, logger: logging.Logger, clock: IReactorTime, interval: float = 60.0) -> None:
        self.logger = logger
        self.clock = clock
        self.interval = interval
        self._windows: dict[str, _Window] = {}

    def warn(self, kind: str, message: str, *args: object) -> None:
        """Log ``message % args`` now if no ``kind`` warning was logged in this interval, else count it."""
        window = self._windows.get(kind)
        if window is None:
            self.logger.warning(message, *args)
            self._windows[kind] = _Window(self.clock.callLater(self.interval, self._end, kind))
            return
        window.count += 1
        window.last = message % args if args else message

    def _end(self, kind: str) -> None:
        window = self._windows.pop(kind)
        if window.count:
            self._summary(kind, window)
            self._windows[kind] = _Window(self.clock.callLater(self.interval, self._end, kind))

    def _summary(self, kind: str, window: _Window) -> None:
        self.logger.warning("%d more FastAGI %s warnings in the last %.0f s; the last: %s",
                            window.count, kind, self.interval, window.last)

    def flush(self) -> None:
        """Log what is still counted and stop every timer (the listener is stopping)."""
        windows, self._windows = self._windows, {}
        for kind, window in windows.items():
            if window.timer.active():
                window.timer.cancel()
            if window.count:
                self._summary(kind, window)
