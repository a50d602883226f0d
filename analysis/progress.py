"""The progress-report protocol that every pipeline takes.

A pipeline receives a ``ProgressReporter`` and calls ``report(stage, fraction, message)``
as it works and ``log(message)`` for lines a user should see. The web worker passes a
reporter that stores progress on the job row and pushes it to the browser; the command
line passes ``ConsoleReporter``; a notebook can pass ``NullReporter``.

A reporter may raise ``Cancelled`` from ``report`` or ``log`` when the user cancelled the
job; pipelines let it propagate and leave no partial result behind.
"""

from __future__ import annotations

import sys
import time
from typing import Protocol, TextIO, runtime_checkable


class Cancelled(Exception):
    """Raised inside a pipeline when its job was cancelled."""


@runtime_checkable
class ProgressReporter(Protocol):
    def report(self, stage: str, fraction: float, message: str | None = None) -> None:
        """Record that ``stage`` is ``fraction`` (0 to 1) done, with an optional message."""

    def log(self, message: str) -> None:
        """Record one line of log text for the user."""


def clamp_fraction(fraction: float) -> float:
    if fraction != fraction:  # NaN
        return 0.0
    return min(1.0, max(0.0, float(fraction)))


class NullReporter:
    """A reporter that discards everything."""

    def report(self, stage: str, fraction: float, message: str | None = None) -> None:
        pass

    def log(self, message: str) -> None:
        pass


class RecordingReporter:
    """A reporter that keeps every call, for tests and notebooks."""

    def __init__(self) -> None:
        self.reports: list[tuple[str, float, str | None]] = []
        self.lines: list[str] = []

    def report(self, stage: str, fraction: float, message: str | None = None) -> None:
        self.reports.append((stage, clamp_fraction(fraction), message))

    def log(self, message: str) -> None:
        self.lines.append(message)


class ConsoleReporter:
    """A reporter for the command line: one line per stage change or 10% step."""

    def __init__(self, stream: TextIO | None = None, step: float = 0.1) -> None:
        self.stream = stream or sys.stderr
        self.step = step
        self._stage: str | None = None
        self._last_fraction = -1.0
        self._started = time.monotonic()

    def report(self, stage: str, fraction: float, message: str | None = None) -> None:
        fraction = clamp_fraction(fraction)
        if stage == self._stage and fraction - self._last_fraction < self.step and fraction < 1.0:
            return
        self._stage = stage
        self._last_fraction = fraction
        elapsed = time.monotonic() - self._started
        suffix = f": {message}" if message else ""
        print(f"[{elapsed:7.1f} s] {stage} {fraction * 100:5.1f}%{suffix}", file=self.stream)

    def log(self, message: str) -> None:
        print(message, file=self.stream)


class Subtask:
    """Map a sub-step's 0..1 progress into the range ``[start, end]`` of the parent stage."""

    def __init__(self, reporter: ProgressReporter, stage: str, start: float, end: float) -> None:
        self.reporter = reporter
        self.stage = stage
        self.start = start
        self.end = end

    def report(self, stage: str, fraction: float, message: str | None = None) -> None:
        scaled = self.start + (self.end - self.start) * clamp_fraction(fraction)
        self.reporter.report(self.stage, scaled, message or stage)

    def log(self, message: str) -> None:
        self.reporter.log(message)
