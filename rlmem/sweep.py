"""Vectorised sweeps: K hyper-parameter settings x S seeds as one compiled program.

    python train.py 'sweep.vmap={algo.optim.learning_rate:[1e-4,3e-4],algo.gamma:[0.9,0.99]}' \
        num_seeds=3

`sweep.vmap` maps config keys to lists of values. Its **members** are every combination
of them, the first key varying slowest (as in `-m`): here 4 members; with `num_seeds = 3`
that is 12 **runs**, vmapped side by side in one process and compiled once. Run
`r = k * num_seeds + i` is member `k` with seed `seed + i`, so the members share their
seeds (and with them their envs' and networks' initial draws). Each run equals, bit for
bit, that seed of a plain run of the member's config with as many runs side by side: a
plain run takes the same path with its config's values (`rlmem.loop.LoopState.hparams`).
(At another vmap width XLA's batched kernels may round differently in the last bits.)

Only hyper-parameters that are numbers inside the compiled program can be vmapped (the
algorithm's `sweepable`: the optimiser's scalars, gamma, ...). Keys that change array
shapes or code (network sizes, `algo.batch_size`, `batching.*`, `memory.*`, `env.*`) are
refused before anything is built: sweep them with `-m` (one job each), which composes
with `sweep.vmap` (every `-m` job is then a vectorised sweep).

Every run is a first-class run: its own rows in `metrics.jsonl` (with `member` and the
member's values under their config keys), its own W&B run (grouped by member, its config
the member's), and `scripts/plot_runs.py` splits a sweep directory into its members.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

ALGO_PREFIX = "algo."


@dataclass(frozen=True)
class Member:
    """One combination of a vectorised sweep's values.

    Attributes:
      index: the member's position `k` (the first `sweep.vmap` key varies slowest).
      values: config key -> value (`{"algo.gamma": 0.9}`), in `sweep.vmap`'s key order.
    """

    index: int
    values: Mapping[str, float] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """`algo.gamma=0.9,algo.optim.learning_rate=0.0003` (W&B groups, messages)."""
        return ",".join(f"{key}={value:g}" for key, value in self.values.items())

    @property
    def hparams(self) -> dict[str, float]:
        """The values by the algorithm's hyper-parameter names (`"gamma"`, ...)."""
        return {key.removeprefix(ALGO_PREFIX): value for key, value in self.values.items()}


@dataclass(frozen=True)
class Run:
    """One trained run: a seed, and the sweep member it belongs to (None: no sweep)."""

    seed: int
    member: Member | None = None

    @property
    def label(self) -> str:
        """`seed 3`, or `member 1 (algo.gamma=0.9) seed 3`: how messages name the run."""
        if self.member is None:
            return f"seed {self.seed}"
        return f"member {self.member.index} ({self.member.label}) seed {self.seed}"

    @property
    def key(self) -> str:
        """A short unique name within the run directory (W&B run ids): `3` or `m1-s3`."""
        return str(self.seed) if self.member is None else f"m{self.member.index}-s{self.seed}"


def members(vmap: Mapping[str, Sequence[float]]) -> tuple[Member, ...]:
    """Every combination of a (checked) `sweep.vmap`, the first key varying slowest;
    `()` when it is empty (not a vectorised sweep)."""
    if not vmap:
        return ()
    keys = list(vmap)
    return tuple(Member(k, dict(zip(keys, combo, strict=True)))
                 for k, combo in enumerate(itertools.product(*(vmap[key] for key in keys))))


def runs(seeds: Sequence[int], sweep_members: Sequence[Member]) -> tuple[Run, ...]:
    """The runs of a config: every member with every seed (member-major), or the seeds."""
    if not sweep_members:
        return tuple(Run(int(s)) for s in seeds)
    return tuple(Run(int(s), m) for m in sweep_members for s in seeds)


def member_config(config: dict, member: Member | None) -> dict:
    """A copy of the plain config `config` with the member's values set (its own config)."""
    out = copy.deepcopy(config)
    if member is None:
        return out
    for key, value in member.values.items():
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def vmap_error(vmap: Any, algo_name: str, sweepable: Sequence[str]) -> str | None:
    """Why `sweep.vmap` cannot run (a message naming the key), or None.

    Args:
      vmap: the config's `sweep.vmap`.
      algo_name: `algo.name` (for the message).
      sweepable: the algorithm's vmappable hyper-parameters (names below `algo.`).
    """
    allowed = [ALGO_PREFIX + name for name in sweepable]
    if not isinstance(vmap, Mapping):
        return (f"sweep.vmap must be a mapping of config keys to lists of values, got "
                f"{vmap!r}; e.g. sweep.vmap='{{algo.gamma:[0.9,0.99]}}'")
    for key, values in vmap.items():
        if key not in allowed:
            return (f"sweep.vmap key {key!r} cannot be vmapped with algo.name={algo_name!r}"
                    f"{_why_not(str(key))}; sweep it with -m (one job per value) instead. "
                    f"Vmappable keys: {', '.join(sorted(allowed))}")
        if not isinstance(values, list | tuple) or not values:
            return (f"sweep.vmap.{key} must be a non-empty list of values, got {values!r}; "
                    f"e.g. sweep.vmap='{{{key}:[0.1,0.2]}}'")
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            return f"sweep.vmap.{key} must be a list of numbers, got {list(values)!r}"
        if len(set(values)) != len(values):
            return f"sweep.vmap.{key}={list(values)!r} repeats a value; list each value once"
    return None


def _why_not(key: str) -> str:
    """Why a key cannot be vmapped, in words, for the refusal message."""
    section = key.split(".", 1)[0]
    if section in ("env", "memory", "batching"):
        return f" ({section}.* chooses the code and the array shapes)"
    if section in ("loop", "eval"):
        return f" ({section}.* fixes the loop's static shape)"
    if section == "algo":
        return " (it changes array shapes or the compiled code, or is not a hyper-parameter)"
    return " (not a hyper-parameter of the algorithm)"
