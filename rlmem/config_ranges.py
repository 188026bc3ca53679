"""Allowed values of the numeric config keys (one typed table per section), and the
sizes that can never fit in memory.

`rlmem.config` checks every key listed here before it builds anything, so a value that
cannot run (`algo.gamma=abc`, `algo.optim.learning_rate=inf`, `algo.network.num_blocks=-1`,
a buffer of 10**10 transitions) stops with the key, the value and the allowed range instead of a
`TypeError` deep in a constructor, a silent nonsense run, an endless compile or an OOM.

* Ints are never bools (`num_envs: true` is not 1), floats accept ints (`gamma=1`) and must
  be finite (`inf` and `nan` are refused everywhere).
* Counters, times and capacities are int32 inside the compiled loop and the replay store
  (`rlmem.data.tape`), so every count is bounded by `INT32_MAX`.
* Widths and depths have generous sane bounds (`MAX_WIDTH`, `MAX_DEPTH`): one dense layer
  of width 2**16 alone holds 16 GiB, so anything wider is a typo.
* A replay store (and one batch drawn from it) whose bytes exceed the accelerators' (or the
  host's) memory is refused by `fit_error`, from a lower bound of its size.

`ALGO_RANGES` and `MEMORY_RANGES` are keyed by constructor argument (shared by every
algorithm or memory model that takes it); `tests/test_bad_overrides.py` checks that every
numeric argument of every constructor has an entry.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

INT32_MAX = 2**31 - 1
MAX_WIDTH = 2**16  # layer widths and state sizes
MAX_DEPTH = 256  # stacked blocks and layers


@dataclass(frozen=True)
class Num:
    """A typed range: `kind` (int, float or bool) between `low` and `high` (None = open
    ended; `open_low` / `open_high` exclude the bound), `nullable` also allows null."""

    kind: type
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    nullable: bool = False

    def allowed(self) -> str:
        """E.g. `an int in [1, 2147483647]`, `a float in (0, 1]`, `a finite float > 0`."""
        if self.kind is bool:
            text = "a bool"
        else:
            finite = self.kind is float and (self.low is None or self.high is None)
            what = "an int" if self.kind is int else ("a finite float" if finite else "a float")
            lo, hi = _fmt(self.low), _fmt(self.high)
            if self.low is not None and self.high is not None:
                left, right = "(" if self.open_low else "[", ")" if self.open_high else "]"
                text = f"{what} in {left}{lo}, {hi}{right}"
            elif self.low is not None:
                text = f"{what} {'>' if self.open_low else '>='} {lo}"
            elif self.high is not None:
                text = f"{what} {'<' if self.open_high else '<='} {hi}"
            else:
                text = what
        return f"{text} or null" if self.nullable else text

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.nullable
        if isinstance(value, bool):
            return self.kind is bool
        if self.kind is bool:
            return False
        if self.kind is int and not isinstance(value, int):
            return False
        if not isinstance(value, int | float):
            return False
        if isinstance(value, float) and not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.open_low else value < self.low):
            return False
        return self.high is None or (value < self.high if self.open_high else value <= self.high)

    def error(self, key: str, value: Any) -> str | None:
        """The message for a refused value (None if `value` is allowed)."""
        if self.accepts(value):
            return None
        hint = ""
        if self.kind is int and isinstance(value, float) and value.is_integer():
            hint = f" (write {int(value)}: Hydra reads 1e6 as a float)"
        return f"{key}={value!r} must be {self.allowed()}{hint}"


def _fmt(bound: float | None) -> str:
    return "" if bound is None else (str(int(bound)) if float(bound).is_integer() else str(bound))


COUNT = Num(int, 0, INT32_MAX)  # may be 0
POSITIVE_INT = Num(int, 1, INT32_MAX)
WIDTH = Num(int, 1, MAX_WIDTH)
DEPTH = Num(int, 1, MAX_DEPTH)
UNIT = Num(float, 0, 1)  # probabilities, discounts
POSITIVE = Num(float, 0, open_low=True)  # finite > 0
NON_NEGATIVE = Num(float, 0)  # finite >= 0
FLAG = Num(bool)

# Top-level, env, batching, loop, eval and checkpoint keys (dotted; types are also in
# rlmem.config.SCHEMA). Keys that are absent (e.g. batching.* under tape) are skipped.
FIXED_RANGES: dict[str, Num] = {
    "seed": Num(int, 0, INT32_MAX),  # PRNGKey(seed): larger seeds alias smaller ones
    "num_seeds": POSITIVE_INT,
    "env.max_episode_length": POSITIVE_INT,
    "batching.segment_length": POSITIVE_INT,
    "batching.burn_in": COUNT,
    "batching.period": Num(int, 1, INT32_MAX, nullable=True),
    "loop.iterations": POSITIVE_INT,
    "loop.num_envs": POSITIVE_INT,
    "loop.rollout_steps": POSITIVE_INT,
    "loop.resets_per_step": Num(int, 1, INT32_MAX, nullable=True),
    "loop.chunk_periods": Num(int, 1, INT32_MAX, nullable=True),
    "eval.interval": POSITIVE_INT,
    "eval.episodes": POSITIVE_INT,
    "eval.max_steps": POSITIVE_INT,
    "checkpoint.interval": Num(int, 1, INT32_MAX, nullable=True),
    "checkpoint.every_minutes": Num(float, 0, open_low=True, nullable=True),
    "checkpoint.keep": POSITIVE_INT,
}

# Constructor arguments of rlmem.agents.dqn.DQN and rlmem.agents.ppo.PPO (algo.<key>) and
# the fields of their settings blocks (algo.optim.<key>, algo.network.<key>).
ALGO_RANGES: dict[str, Num] = {
    "buffer_capacity": POSITIVE_INT,  # transitions; the store's times are int32
    "batch_size": POSITIVE_INT,  # also <= buffer_capacity (rlmem.config)
    "gamma": UNIT,
    "gae_lambda": UNIT,
    "q_lambda": UNIT,
    "eps_decay": COUNT,  # PQN: rollouts of epsilon decay
    "target_delay": Num(float, 1),  # tau = 1 / target_delay
    "learning_rate": POSITIVE,
    "warmup_updates": COUNT,
    "max_grad_norm": POSITIVE,
    "adam_eps": POSITIVE,
    "weight_decay": NON_NEGATIVE,
    "updates_per_learn": POSITIVE_INT,
    "random_epochs": COUNT,
    "train_epochs": COUNT,
    "eps_start": UNIT,
    "eps_end": UNIT,
    "huber_delta": POSITIVE,
    "hidden_size": WIDTH,
    "num_blocks": Num(int, 0, MAX_DEPTH),
    "clip_eps": Num(float, 0, 1, open_low=True),
    "vf_coef": NON_NEGATIVE,
    "ent_coef": NON_NEGATIVE,
    "update_epochs": POSITIVE_INT,
    "num_minibatches": POSITIVE_INT,
    "normalize_advantage": FLAG,
    "value_rescaling": FLAG,
    "n_step": POSITIVE_INT,
    "priority_eta": UNIT,
    "priority_alpha": UNIT,
    "priority_beta": UNIT,
    "priority_beta_end": UNIT,
}

# Fields of the memory models (rlmem.memory.MEMORY_MODELS; memory.<key>).
MEMORY_RANGES: dict[str, Num] = {
    "trace_size": WIDTH,
    "context_size": WIDTH,
    "output_size": WIDTH,
    "key_size": WIDTH,
    "value_size": WIDTH,
    "num_heads": WIDTH,
    "d_model": WIDTH,
    "d_hidden": WIDTH,
    "d_state": WIDTH,
    "dt_rank": Num(int, 1, MAX_WIDTH, nullable=True),
    "num_layers": DEPTH,
    "gate_temperature": Num(float, 1),  # GLA: alpha = sigmoid(.)^(1/tau), tau >= 1
    "r_min": UNIT,  # LRU ring init, with r_min < r_max
    "r_max": UNIT,
    "max_phase": POSITIVE,
    "dt_min": POSITIVE,  # S5/S6 step sizes, with dt_min <= dt_max
    "dt_max": POSITIVE,
    "gated": FLAG,  # DeltaNet: alpha_t = 1 (false) or a learned decay per head (true)
}


def first_error(prefix: str, values: dict, table: dict[str, Num]) -> str | None:
    """The message for the first key of `values` (in table order) outside its range."""
    for key, rule in table.items():
        if key in values:
            message = rule.error(f"{prefix}{key}", values[key])
            if message:
                return message
    return None


# (low, high, strict): memory fields that must be ordered (LRU's ring, S5/S6 step sizes)
MEMORY_ORDER = (("r_min", "r_max", True), ("dt_min", "dt_max", False))


def memory_model_error(name: str, args: dict) -> str | None:
    """What a memory model's `setup` would refuse at init, from its full settings `args`
    (defaults and `memory.*`, each already within `MEMORY_RANGES`)."""
    for low, high, strict in MEMORY_ORDER:
        if low in args and high in args:
            a, b = args[low], args[high]
            if not (a < b if strict else a <= b):
                return (f"memory.{low}={a!r} must be {'<' if strict else '<='} "
                        f"memory.{high}={b!r} for memory.name={name!r}")
    if name == "s5" and args["d_state"] % 2:
        return (f"memory.d_state={args['d_state']!r} must be even for memory.name='s5' "
                "(conjugate eigenvalue pairs)")
    return None


# ---------------------------------------------------------------------------------------
# sizes that can never fit in memory
# ---------------------------------------------------------------------------------------
def replay_bytes_per_transition(obs_size: int) -> int:
    """A lower bound on one stored transition of `rlmem.data.tape`: float32 `obs` and
    `next_obs`, int32 `action`, float32 `reward`, four bool flags, int32 `ep_id` and
    `ep_start` (a stored recurrent carry comes on top)."""
    return 4 * 2 * obs_size + 4 + 4 + 4 + 4 * 2


def fit_error(args: dict, seeds: int, streams: int, batching: dict, obs_size: int) -> str | None:
    """Why a replay algorithm's store, or one batch drawn from it, can never fit in memory
    (None if it may). `seeds`: the runs side by side (seeds x vectorised-sweep members).
    `args` are its full constructor arguments (`buffer_capacity`,
    `batch_size`, `hidden_size`); the bound is a lower one, so a refusal is always right."""
    capacity, batch_size = args["buffer_capacity"], args.get("batch_size", 1)
    row = replay_bytes_per_transition(obs_size)
    replay = seeds * (capacity // streams) * streams * row
    available, where = available_memory()
    if replay > available:
        return (f"algo.buffer_capacity={capacity} needs at least {human_bytes(replay)} of "
                f"replay ({seeds} run(s) x {capacity} transitions x {row} B), more than the "
                f"{human_bytes(available)} of {where}; allowed: algo.buffer_capacity <= "
                f"{available // (seeds * row)}")
    # the sampled batch and at least one float32 hidden activation per step
    per_step = row + 4 * args.get("hidden_size", 1)
    if batching["mode"] == "segment":
        length = batching["segment_length"]
        rows = batch_size // length * (length + batching["burn_in"])
    else:
        rows = batch_size
    if replay + seeds * rows * per_step > available:
        most = (available - replay) // (seeds * per_step) * batch_size // max(rows, 1)
        return (f"algo.batch_size={batch_size} needs at least "
                f"{human_bytes(seeds * rows * per_step)} per update next to the "
                f"{human_bytes(replay)} replay, more than the {human_bytes(available)} of "
                f"{where}; allowed: algo.batch_size <= {most}")
    return None


def available_memory() -> tuple[int, str]:
    """`(bytes, where)`: the accelerators' total memory, or the host's RAM on CPU."""
    import jax

    devices = jax.local_devices()
    if devices[0].platform != "cpu":
        limits = [(d.memory_stats() or {}).get("bytes_limit") for d in devices]
        if all(limits):
            kind = devices[0].device_kind
            return int(sum(limits)), f"{len(devices)} x {kind}"
    pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return int(pages), "the host"


def human_bytes(n: float) -> str:
    """`123 B`, `1.5 GiB`, ..."""
    units = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
    power = 0 if n < 1024 else min(int(math.log(n, 1024)), len(units) - 1)
    return f"{int(n)} B" if power == 0 else f"{n / 1024**power:.1f} {units[power]}"
