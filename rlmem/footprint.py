"""How much memory a run needs, from the exact shapes of its state, before anything runs.

    footprint = estimate(exp)          # jax.eval_shape: no compile, no allocation
    print(footprint.summary())
    if message := footprint.error():   # more than this machine has
        raise ConfigError(message)

The training state is the vmapped `LoopState` of every run (seeds x sweep members):
parameters, target parameters, optimiser state, the replay store with its stored
recurrent carries (`batching.initial_state=stored`), envs, acting carries, keys and
counters; `jax.eval_shape(exp.init_state)` gives every leaf's exact shape. What a run
holds at its peak, on top of the process it starts in:

* the state once: a compiled chunk updates it in place (its buffers are donated);
* on a CPU, `CHECKPOINT_COPIES` more while a checkpoint is written: the `Checkpointer`
  copies every leaf to host arrays before its asynchronous save and Orbax serialises from
  those into buffers of its own (on an accelerator these copies are in host memory,
  beside the device's state, and not counted here);
* the process itself: its resident size when the estimate is made (Python, JAX, the built
  config), plus XLA's compiled programs (init and the training chunk) and their
  temporaries: `COMPILE_MINIMUM`, or `COMPILE_ALLOWANCE` of the state if more.

Measured on the 2-core CPU (FFM at the paper's sizes, segments with stored carries, so
the replay is nearly all of the state): the peak resident size of `train.py` grew by 2.9x
the state (0.30 -> 0.61 GiB of state: 2.03 -> 2.90 GiB peak), from about 1.15 GiB with
no state, of which 0.35 GiB was the process before anything was compiled.
`tests/test_footprint.py` checks the estimate against the measured peak of such a run
(within 25 %).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np

from rlmem.data import is_replay_store

CHECKPOINT_COPIES = 2  # of the state, in host memory, while a checkpoint is written
COMPILE_ALLOWANCE = 0.10  # of the state: compiled programs' temporaries
COMPILE_MINIMUM = 768 * 2**20  # bytes: XLA's compiled programs and their scratch


def human(num: float) -> str:
    """`1.2 GiB`-style sizes."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(num) < 1024 or unit == "GiB":
            return f"{num:.0f} {unit}" if unit == "B" else f"{num:.1f} {unit}"
        num /= 1024
    raise AssertionError("unreachable")


def _nbytes(tree: Any) -> int:
    return int(sum(np.prod(x.shape, dtype=np.int64) * x.dtype.itemsize
                   for x in jax.tree.leaves(tree)))


def resident_bytes() -> int:
    """This process's resident set size now (Linux `/proc/self/statm`; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def available_bytes() -> int:
    """Memory the host can still give this process (Linux `MemAvailable`; else total)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


@dataclass(frozen=True)
class Footprint:
    """A run's memory, in bytes.

    Attributes:
      state: the whole vmapped training state.
      replay: the part of it that is replay stores.
      carries: the part of the replay that is stored recurrent carries.
      runs: runs side by side (seeds x sweep members).
      process: the process's resident size when estimated.
      host_copy: whether checkpoints copy the state into the same memory (CPU).
      checkpoint_replay: whether checkpoints include the replay (not `exclude_replay`).
      available: what the host could still give when estimated.
    """

    state: int
    replay: int
    carries: int
    runs: int
    process: int
    host_copy: bool
    checkpoint_replay: bool
    available: int

    @property
    def checkpoint_copy(self) -> int:
        """What a checkpoint's host copy adds to the same memory."""
        if not self.host_copy:
            return 0
        saved = self.state if self.checkpoint_replay else self.state - self.replay
        return CHECKPOINT_COPIES * saved

    @property
    def added(self) -> int:
        """What the run adds to the process: state, checkpoint copy, compiled programs."""
        compiled = max(COMPILE_MINIMUM, int(COMPILE_ALLOWANCE * self.state))
        return self.state + self.checkpoint_copy + compiled

    @property
    def peak(self) -> int:
        """The process's expected peak resident size."""
        return self.process + self.added

    def summary(self) -> str:
        carries = f", stored carries {human(self.carries)}" if self.carries else ""
        during = " while a checkpoint is written" if self.checkpoint_copy else ""
        return (f"memory: training state {human(self.state)} for {self.runs} run(s) (replay "
                f"{human(self.replay)}{carries}); peak about {human(self.peak)}{during}, of "
                f"{human(self.available + self.process)} available")

    def error(self) -> str | None:
        """Why this run cannot fit (naming the keys to change), or None."""
        if self.added <= self.available:
            return None
        hints = [f"algo.buffer_capacity (the replay is {human(self.replay)})",
                 f"num_seeds or sweep.vmap ({self.runs} run(s) side by side)"]
        if self.carries:
            hints.append(f"batching.initial_state=zeros (stored carries take "
                         f"{human(self.carries)})")
        if self.checkpoint_copy and self.checkpoint_replay:
            hints.append("checkpoint.exclude_replay=true (checkpoints copy the replay)")
        return (f"this run needs about {human(self.added)} on top of the "
                f"{human(self.process)} this process holds (training state "
                f"{human(self.state)} for {self.runs} run(s), replay {human(self.replay)}), "
                f"and only {human(self.available)} is available: lower "
                + "; or ".join(hints)
                + "; or set loop.check_memory=false to start anyway")


def estimate(exp: Any) -> Footprint:
    """The `Footprint` of a built `rlmem.config.Experiment`, from abstract shapes."""
    state = jax.eval_shape(exp.init_state)
    replay = carries = 0
    for store in jax.tree.leaves(state, is_leaf=is_replay_store):
        if is_replay_store(store):
            replay += _nbytes(store)
            carries += _nbytes(getattr(store, "extras", None) or {})
            carries += _nbytes(getattr(store, "sparse", None) or {})
    return Footprint(
        state=_nbytes(state), replay=replay, carries=carries, runs=len(exp.runs),
        process=resident_bytes(), host_copy=jax.devices()[0].platform == "cpu",
        checkpoint_replay=not exp.checkpoint.exclude_replay, available=available_bytes(),
    )
