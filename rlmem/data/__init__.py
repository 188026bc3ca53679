"""Replay as one tape: a jitted transition store and its two samplers.

The flag convention (`start`, `terminated`, `truncated`, `mask`) is documented once, in
:mod:`rlmem.types`; this module documents what the store keeps and the batch layouts the
samplers return.

Store (:mod:`rlmem.data.tape`)
------------------------------
``TapeStore`` is a pytree of fixed-shape arrays: `capacity // num_envs` transitions per
env stream, each stream a circular tape in time order, plus a per-stream circular index of
episode start times. It lives inside `jit`, can be donated between steps and is saved by
Orbax like any other state.

    store = init_store(capacity, num_envs, example, extras_example=None)
    store = add(store, chunk, extras=None)      # chunk: Transition [num_envs, T]

* `example` is one transition (a `Transition` whose leaves have no leading dims; its
  `mask` is ignored); `extras_example` an optional dict of per-step extras (e.g. the
  recurrent carry *before* `obs[t]`) stored beside each transition.
* An episode is *valid* while its first transition is still in the store; then every one
  of its transitions is (they are newer). Overwriting a stream's oldest episode start drops
  that whole episode at once, so no sampled episode is ever half-overwritten, and episodes
  never span two streams. Episodes still running in the envs are valid and sampled too.
* `start` flags are the source of truth for episode boundaries; the first transition ever
  written to a stream is treated as a start. An episode longer than the per-stream capacity
  loses its start and can never be sampled (choose `capacity / num_envs` larger than the
  longest episode).

Tape-based batching (:mod:`rlmem.data.tape_sampler`)
----------------------------------------------------
    batch = sample_tape(store, key, batch_size, weighting="episode")
    transition, extras, cut = batch                 # a NamedTuple `TapeBatch`

* `transition`: `Transition` with every field `[B, ...]`: whole episodes drawn i.i.d.
  (with replacement) and concatenated in time order until exactly `B` transitions.
  `weighting="episode"` draws every valid episode with equal probability (the paper);
  `"transition"` draws the episode holding a uniformly drawn valid transition (probability
  proportional to its length).
* `start[i]` is True on the first transition of every episode in the tape (also for a
  still-running or partially observed first episode). The last transition of a
  still-running episode, and the tape's last transition when the batch cut its episode,
  get `truncated=True` unless terminated ("a cut that is not a terminal state": bootstrap
  from `next_obs`), so `start[i+1] == terminated[i] | truncated[i]` holds on the tape.
* `mask` is all True whenever the store holds at least one valid episode (B draws of
  episodes of length >= 1 always fill the tape, repeating episodes if the store is small);
  all False only while the store holds no valid episode (then every field is zero).
* `extras`: the stored extras gathered the same way, `[B, ...]`.
* `cut`: `[]` bool, True when the last episode of the tape was cut by the batch end.
* Cost: O(B log B + num_envs), independent of capacity.

Segment-based batching (:mod:`rlmem.data.segment_sampler`)
----------------------------------------------------------
    batch = sample_segments(store, key, num_segments, segment_length, burn_in=0)

Segments are the length-`L` pieces of each valid episode at offsets `0, L, 2L, ...` from
its start; every segment in the store is drawn with equal probability (i.i.d.). Row `n`
of the batch holds the `burn_in` steps before the segment (same episode only) followed by
the segment, `W = burn_in + L` columns, zero-padded:

* `transition`: `Transition` `[N, W, ...]`; `start` True on the episode's first step if it
  is in the row; the last valid step of a segment cut inside its episode gets
  `truncated=True` (as for TBB). Column `burn_in + j` is step `j` of the segment.
* `mask`: `[N, W]` valid data (False for padding: before the episode start in the burn-in
  columns, after the episode end in the segment columns).
* `learn_mask`: `[N, W]` `mask` and not burn-in: the steps that carry gradient.
* `extras`: stored extras `[N, W, ...]` (zero where padded).
* `initial_extras`: stored extras at the row's first valid step `[N, ...]`, i.e. the
  recurrent state to start the row from for R2D2-style stored state; the paper's SBB
  starts from zeros instead and ignores it.
* Rows are all-False masks only while the store holds no valid episode.

Both samplers take static `batch_size` / `num_segments` / `segment_length` / `burn_in`
(use `static_argnames` under `jit`) and work under `jax.vmap` over keys and stores.
"""

from rlmem.data.segment_sampler import SegmentBatch, sample_segments
from rlmem.data.tape import (
    TapeStore,
    add,
    init_store,
    is_replay_store,
    num_episodes,
    num_transitions,
)
from rlmem.data.tape_sampler import TapeBatch, sample_tape

__all__ = [
    "SegmentBatch",
    "TapeBatch",
    "TapeStore",
    "add",
    "init_store",
    "is_replay_store",
    "num_episodes",
    "num_transitions",
    "sample_segments",
    "sample_tape",
]
