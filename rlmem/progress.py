"""A one-line terminal progress bar: steps (or episodes), their rate, ETA, latest eval return.

Updated by the runner between compiled chunks. It draws only when the stream is a TTY, so
logs of batch jobs (Slurm, CI, pipes) stay free of carriage-return noise; there it writes
the same text as a plain line at most every `log_interval` seconds instead.
"""

from __future__ import annotations

import math
import sys
import time
from typing import TextIO


def _format_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def _format_count(n: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.1f}{unit}"
    return f"{n:.0f}"


class Progress:
    """Progress over `total` steps of the run's step axis.

    Args:
      total: steps the run will have taken at the end.
      initial: steps already done (a resumed run); the bar starts there.
      stream: where to draw (default stdout).
      enabled: force on/off; default: on only when `stream` is a TTY.
      width: characters of the bar itself.
      log_interval: when the bar is off, seconds between plain progress lines (None: never).
      unit: what a step is, as shown ("steps", or "episodes" for `loop.rollout=episode`).
    """

    def __init__(
        self,
        total: int,
        *,
        initial: int = 0,
        stream: TextIO | None = None,
        enabled: bool | None = None,
        width: int = 24,
        log_interval: float | None = 30.0,
        unit: str = "steps",
    ):
        self.unit = unit
        self.total = int(total)
        self.initial = int(initial)
        self.steps = int(initial)
        self.stream = stream if stream is not None else sys.stdout
        if enabled is None:
            isatty = getattr(self.stream, "isatty", None)
            enabled = bool(isatty and isatty())
        self.enabled = enabled
        self.width = width
        self.log_interval = log_interval
        self._last_log = time.perf_counter()
        self.eval_return: float | None = None
        # The rate is measured from the first update on: the first chunk includes the
        # compilation, which would make the ETA far too pessimistic.
        self._base: tuple[float, int] | None = None

    @property
    def steps_per_second(self) -> float:
        """Steps per second since the first update (0 until there are two updates)."""
        if self._base is None:
            return 0.0
        t0, s0 = self._base
        elapsed = time.perf_counter() - t0
        return (self.steps - s0) / elapsed if elapsed > 0 else 0.0

    def line(self) -> str:
        """The text of the bar as it would be drawn now."""
        frac = min(1.0, self.steps / self.total) if self.total > 0 else 1.0
        filled = int(frac * self.width)
        rate = self.steps_per_second
        eta = (self.total - self.steps) / rate if rate > 0 else math.inf
        if self.steps >= self.total:
            eta = 0.0
        bar = "#" * filled + "-" * (self.width - filled)
        text = (
            f"[{bar}] {_format_count(self.steps)}/{_format_count(self.total)} {self.unit} "
            f"{frac:4.0%} | {_format_count(rate) if rate else '?'} {self.unit}/s | "
            f"ETA {_format_duration(eta)}"
        )
        if self.eval_return is not None and math.isfinite(self.eval_return):
            text += f" | eval {self.eval_return:.3f}"
        return text

    def update(self, steps: int, eval_return: float | None = None) -> None:
        """Set the absolute step count (and the latest mean eval return) and redraw."""
        self.steps = int(steps)
        if self._base is None:
            self._base = (time.perf_counter(), self.steps)
        if eval_return is not None:
            self.eval_return = float(eval_return)
        if self.enabled:
            self.stream.write("\r" + self.line())
            self.stream.flush()
        elif self.log_interval is not None and (
            time.perf_counter() - self._last_log >= self.log_interval or self.steps >= self.total
        ):
            self._last_log = time.perf_counter()
            self.stream.write("rlmem: " + self.line() + "\n")
            self.stream.flush()

    def note(self, text: str) -> None:
        """Print a line of its own, above the bar when the bar is drawn."""
        if self.enabled:
            self.stream.write("\r" + text.ljust(len(self.line())) + "\n" + self.line())
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        """End the bar's line so the next print starts on a fresh one."""
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()
