"""Wall-clock of one DQN gradient update: tape batching vs segment batching, side by side.

One update = sample a batch from the replay store, run the online and target networks
over it (`with_next`), Double DQN Huber loss, gradient, optimiser step, Polyak update.
Tape batching runs each memory model over one tape of `B` transitions; segment batching
over `B // L` zero-padded segments of length `L`. Same store, same sizes, same process;
the table reports medians and the ratio to tape batching.

    python scripts/bench_dqn_update.py --quick                 # small, under a minute
    python scripts/bench_dqn_update.py                         # the paper's sizes (256 wide)
    python scripts/bench_dqn_update.py --models ffm lru s5 gru --lengths 10 20 50 100  # long
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from rlmem.agents.batching import SegmentBatching
from rlmem.agents.dqn import DQN
from rlmem.agents.networks import NetworkSettings
from rlmem.compile_cache import enable_compilation_cache
from rlmem.data.tape import add, init_store
from rlmem.memory import make_memory
from rlmem.types import Transition

MODEL_SETTINGS = {  # the paper's sizes at width 256; scaled by --width
    "ffm": lambda w: dict(trace_size=w // 4, context_size=4, output_size=w),
    "lru": lambda w: dict(d_model=w, d_hidden=w // 2, num_layers=2),
    "s5": lambda w: dict(d_model=w, d_state=w, num_layers=2),
    "linear_attention": lambda w: dict(key_size=16, value_size=16, output_size=w),
    "gru": lambda w: dict(output_size=w),
    "mlp": lambda w: dict(output_size=w),
}


def synthetic_store(num_envs: int, steps: int, obs_size: int, num_actions: int):
    """A full store of random transitions, episodes ending with probability 1/50 per step
    (mean length ~50, like Repeat First)."""
    rng = np.random.default_rng(0)
    ends = rng.random((num_envs, steps)) < 1 / 50
    start = np.concatenate([np.ones((num_envs, 1), bool), ends[:, :-1]], axis=1)
    obs = rng.normal(size=(num_envs, steps, obs_size)).astype(np.float32)
    chunk = Transition(
        obs=obs,
        action=rng.integers(0, num_actions, (num_envs, steps)).astype(np.int32),
        reward=rng.normal(size=(num_envs, steps)).astype(np.float32),
        next_obs=np.roll(obs, -1, axis=1),
        terminated=ends,
        truncated=np.zeros_like(ends),
        start=start,
        mask=np.ones_like(ends),
    )
    example = jax.tree.map(lambda x: x[0, 0], chunk)
    return jax.jit(lambda c: add(init_store(num_envs * steps, num_envs, example), c))(chunk)


def compiled_update(algo: DQN, store) -> tuple[Callable, Any, float]:
    """(jitted update, a state holding `store`, compile seconds)."""
    state = jax.jit(algo.init)(jax.random.key(0)).replace(store=store)
    update = jax.jit(algo.update)
    t0 = time.perf_counter()
    state, _ = jax.block_until_ready(update(state, jax.random.key(1)))
    return update, state, time.perf_counter() - t0


def interleaved_medians(runs: list[tuple[Callable, Any]], rounds: int, per_round: int):
    """Median seconds per update of each run, timed round-robin so that load changes on a
    shared machine hit every setting alike."""
    samples = [[] for _ in runs]
    states = [state for _, state in runs]
    for r in range(rounds):
        for i, (update, _) in enumerate(runs):
            t0 = time.perf_counter()
            for k in range(per_round):
                states[i], _ = update(states[i], jax.random.key(1000 * r + k))
            jax.block_until_ready(states[i])
            samples[i].append((time.perf_counter() - t0) / per_round)
    return [float(np.median(x)) for x in samples]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="width 64, batch 250, L in 10, 50")
    parser.add_argument("--models", nargs="+", default=None, choices=sorted(MODEL_SETTINGS))
    parser.add_argument("--lengths", nargs="+", type=int, default=None, help="segment L")
    parser.add_argument("--width", type=int, default=None, help="encoder/memory width")
    parser.add_argument("--batch", type=int, default=None, help="transitions per update")
    parser.add_argument("--rounds", type=int, default=None,
                        help="round-robin timing rounds (3 updates per setting each)")
    parser.add_argument("--cache", action="store_true", help="use the compilation cache")
    args = parser.parse_args()
    if args.cache:
        enable_compilation_cache()
    quick = args.quick
    models = args.models or ["ffm", "gru"]
    lengths = args.lengths or ([10, 50] if quick else [10, 20, 50])
    width = args.width or (64 if quick else 256)
    batch = args.batch or (250 if quick else 1000)
    rounds = args.rounds or 10

    obs_size, num_actions, num_envs, steps = 8, 4, 4, 2000
    store = synthetic_store(num_envs, steps, obs_size, num_actions)

    print(f"device: {jax.devices()[0].device_kind} ({platform.machine()}), jax {jax.__version__}")
    print(f"width {width}, batch {batch} transitions, median over {rounds} interleaved rounds\n")
    print("| model | batching | ms / update | vs tape | compile s |")
    print("|---|---|---|---|---|")
    for name in models:
        memory = make_memory(name, **MODEL_SETTINGS[name](width))
        common = dict(num_envs=num_envs, buffer_capacity=num_envs * steps, batch_size=batch,
                      network=NetworkSettings(hidden_size=width))
        labels = [f"tape B={batch}"]
        algos = [DQN(memory, obs_size, num_actions, **common)]
        for length in lengths:
            labels.append(f"segment L={length} (N={batch // length})")
            algos.append(DQN(memory, obs_size, num_actions,
                             batching=SegmentBatching(length), **common))
        built = [compiled_update(algo, store) for algo in algos]
        secs = interleaved_medians([(u, st) for u, st, _ in built], rounds, per_round=3)
        for label, sec, (_, _, comp) in zip(labels, secs, built, strict=True):
            print(f"| {name} | {label} | {1e3 * sec:.1f} | {sec / secs[0]:.2f} | {comp:.1f} |",
                  flush=True)

if __name__ == "__main__":
    main()
