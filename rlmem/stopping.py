"""Stopping a run cleanly on SIGINT (Ctrl-C) or SIGTERM (what a cluster sends before it
preempts a job).

    with StopRequest(say) as stop:
        while ...:
            run a compiled chunk; log; checkpoint
            if stop.signum is not None:
                save a checkpoint, then raise stop.error(step, unit)

The first signal only sets `signum` (and says so): the run finishes the chunk in flight
(a compiled call cannot be interrupted halfway anyway), writes a checkpoint, flushes its
metrics and W&B runs, and ends with one line and exit status 128 + the signal's number
(130 for SIGINT, 143 for SIGTERM). The same command resumes it exactly. The first signal
also gives both signals back their default action, so a second Ctrl-C aborts at once
(nothing after the latest checkpoint is kept; it stays valid, and a resume repairs the
metrics file).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable

from rlmem.errors import RunError

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class RunStopped(RunError):
    """The run stopped on a signal after saving a checkpoint; its message says where."""

    verb = "stopped"  # train.py: "rlmem: stopped: <message>", not "error"

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum  # the shell's convention for a signal's death


class StopRequest:
    """A context that turns SIGINT/SIGTERM into a request to stop after the current chunk.

    Outside the main thread (where Python cannot install handlers) it does nothing and
    `signum` stays None. The previous handlers come back on exit.

    Args:
      say: prints one line (the runner's message function).
    """

    def __init__(self, say: Callable[[str], None]):
        self.say = say
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def _handle(self, signum: int, frame: object) -> None:
        self.signum = signum
        for s in SIGNALS:  # a second signal: the default action, i.e. abort at once
            signal.signal(s, signal.SIG_DFL)
        self.say(f"rlmem: {signal.Signals(signum).name} received: finishing this chunk, then "
                 "saving a checkpoint and stopping (Ctrl-C again to abort at once)")

    def error(self, step: int, total: int, unit: str) -> RunStopped:
        """The exception that ends the run after its checkpoint at `step` was saved."""
        name = signal.Signals(self.signum).name
        return RunStopped(
            f"{name}: stopped at {unit[:-1]} {step} of {total}; "
            "checkpoint saved, run the same command to resume", self.signum)
