"""Orbax and tensorstore, made quiet and plain-spoken for `rlmem.checkpoint`.

* `quiet_orbax()`: Orbax's log records on the `absl` logger (which Hydra's logging config
  prints and writes to the run's log file) lose their INFO chatter (dozens of lines per
  save), and its warnings and errors are cut to one short line without traceback (a failed
  asynchronous save logs its traceback several times; the error itself reaches the caller).
  It also makes a failed Orbax operation cancel the tasks it leaves running (see
  `_run_in_new_loop`), which otherwise print ``RuntimeError: Event loop is closed``
  tracebacks long after the failure.
* `short(text)`, `why(err)`: an error message without tensorstore's JSON specs and cut to
  a few hundred characters; the OS's words ("No space left on device") when there are some.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from typing import Any

_SPEC = re.compile(r"\s*\[tensorstore_spec(?:\[\d+\])?='(?:[^'\\]|\\.)*'\]")


def short(text: str, limit: int = 300) -> str:
    """`text` without tensorstore's JSON specs, cut to `limit` characters."""
    text = _SPEC.sub("", str(text))
    return text if len(text) <= limit else text[:limit] + f" ... [{len(text) - limit} more]"


def why(err: BaseException) -> str:
    """The short reason of an Orbax/tensorstore error: the OS's words when there are some."""
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror + (f": {seen.filename}" if seen.filename else "")
        seen = seen.__cause__ or seen.__context__
    code = re.search(r"\[os_error_code='?(\d+)'?\]", str(err))
    if code:
        return os.strerror(int(code.group(1)))
    return f"{type(err).__name__}: {short(str(err))}"


class _QuietOrbax(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if "/orbax/" not in record.pathname:
            return True
        if record.levelno < logging.WARNING:
            return False
        record.msg, record.args = short(record.getMessage()), ()
        record.exc_info, record.exc_text = None, None
        return True


def _run_in_new_loop(coro: Any) -> Any:
    """Orbax's `asyncio_utils._run_sync_via_new_loop`, except that when the coroutine fails
    the tasks it left running are cancelled before the loop closes.

    Orbax closes its loop with them pending: when a restore fails on one leaf, the
    tensorstore reads of the others complete later and call into the closed loop, each
    printing a `RuntimeError: Event loop is closed` traceback. Cancelling the task that
    awaits a tensorstore future cancels the read.
    """
    loop = asyncio.new_event_loop()
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(coro)
    except BaseException:
        try:
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        except Exception:  # noqa: BLE001 - best effort; the original error matters
            pass
        raise
    finally:
        asyncio.set_event_loop(None)
        loop.close()


_FILTER = _QuietOrbax()


def quiet_orbax() -> None:
    """Install the log filter and the loop fix (idempotent)."""
    logging.getLogger("absl").addFilter(_FILTER)  # a filter is only added once
    try:
        from orbax.checkpoint._src import asyncio_utils
    except ImportError:  # another Orbax layout: leave it as it is
        return
    if callable(getattr(asyncio_utils, "_run_sync_via_new_loop", None)):
        asyncio_utils._run_sync_via_new_loop = _run_in_new_loop
