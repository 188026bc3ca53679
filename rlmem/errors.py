"""The base of rlmem's expected failures: a run that must not (or cannot) go on.

A `RunError`'s message says in full what happened and what to do, so `train.py` prints it
as one ``rlmem: error: <message>`` on stderr, without a traceback (set
``HYDRA_FULL_ERROR=1`` for one), and exits with its `exit_code`: 2 for a refusal (the
command or the run directory must change: a locked run directory, a resume whose
checkpoint does not match, no valid checkpoint left), 1 for a failure at run time (a
checkpoint that could not be written).
"""

from __future__ import annotations


class RunError(Exception):
    """A run refused or stopped for a reason its message states in full."""

    exit_code = 2
