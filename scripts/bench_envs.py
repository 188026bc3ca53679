"""Env steps per second: popgym (numpy, one env) vs rlmem JAX envs, vmapped.

For each env id, measured side by side in one run:

* `popgym`: the numpy env with popgym's wrappers (Flatten, Antialias, DiscreteAction),
  random actions, reset when done, one env in a Python loop.
* `VecEnv N`: rlmem's optimistic-reset vector env (`resets_per_step = max(1, N // 8)`),
  `T` steps inside one jitted `lax.scan`, random actions.
* `gymnax N`: the same wrapped env under gymnax's auto-reset `step` (a full reset
  computed for every env at every step), vmapped, same scan.

Usage:
    python scripts/bench_envs.py --quick
    python scripts/bench_envs.py --envs RepeatFirstEasy CountRecallEasy --sizes 1 64 1024 4096
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import popgym.envs as pe
from popgym.wrappers import Antialias, DiscreteAction, Flatten

from rlmem.compile_cache import enable_compilation_cache
from rlmem.envs import VecEnv, make
from rlmem.envs.wrappers import EpisodeStatistics

DEFAULT_ENVS = ("RepeatFirstEasy", "RepeatPreviousEasy", "AutoencodeEasy", "CountRecallEasy",
                "HigherLowerEasy")


def popgym_steps_per_second(name: str, steps: int) -> float:
    env = Flatten(Antialias(getattr(pe, name)()))
    if not isinstance(env.action_space, gym.spaces.Box):
        env = DiscreteAction(env)
    env.reset(seed=0)
    env.action_space.seed(0)
    start = time.perf_counter()
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()
    return steps / (time.perf_counter() - start)


def _timed(run, key, repeats: int) -> float:
    jax.block_until_ready(run(key))  # compile
    best = np.inf
    for i in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(run(jax.random.fold_in(key, i)))
        best = min(best, time.perf_counter() - start)
    return best


def jax_steps_per_second(name: str, num_envs: int, num_steps: int, mode: str,
                         repeats: int) -> float:
    env, params = make(name)
    space = env.action_space(params)
    sample = jax.vmap(space.sample)
    if mode == "vecenv":
        venv = VecEnv(env, params, num_envs)
        reset, step = venv.reset, venv.step
    else:
        stats = EpisodeStatistics(env)
        v_reset = jax.vmap(stats.reset, in_axes=(0, None))
        v_step = jax.vmap(stats.step, in_axes=(0, 0, 0, None))
        reset = lambda key: v_reset(jax.random.split(key, num_envs), params)
        step = lambda key, s, a: v_step(jax.random.split(key, num_envs), s, a, params)

    def body(state, key):
        act_key, step_key = jax.random.split(key)
        obs, state, reward, *_ = step(step_key, state, sample(jax.random.split(act_key, num_envs)))
        # Sink the observations too: CartPole's reward is a constant, and with only the
        # reward kept live XLA would drop the whole physics from the program.
        return state, reward.sum() + obs.sum()

    @jax.jit
    def run(key):
        _, state = reset(key)
        _, rewards = jax.lax.scan(body, state, jax.random.split(key, num_steps))
        return rewards.sum()

    # The reset inside `run` is timed too; it is one of `num_steps` steps' worth of work.
    return num_envs * num_steps / _timed(run, jax.random.PRNGKey(0), repeats)


def _fmt(x: float) -> str:
    return f"{x / 1e6:.2f}M" if x >= 1e6 else f"{x / 1e3:.1f}k"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 envs, sizes 1 and 1024")
    parser.add_argument("--envs", nargs="+", default=list(DEFAULT_ENVS))
    parser.add_argument("--sizes", nargs="+", type=int, default=[1, 64, 1024, 4096])
    parser.add_argument("--steps", type=int, default=2 ** 16,
                        help="env steps per timed JAX run (split over the N envs)")
    parser.add_argument("--popgym-steps", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    if args.quick:
        args.envs, args.sizes = args.envs[:2], [1, 1024]
        args.steps, args.popgym_steps, args.repeats = 2 ** 15, 2000, 2
    enable_compilation_cache()

    header = ["env", "popgym (1 env)"]
    for n in args.sizes:
        header += [f"VecEnv {n}", f"gymnax {n}"]
    print(f"jax {jax.__version__}, backend {jax.default_backend()}; env steps per second "
          f"(x: ratio to popgym; VecEnv/gymnax ratio in brackets)\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for name in args.envs:
        base = popgym_steps_per_second(name, args.popgym_steps)
        row = [name, _fmt(base)]
        for n in args.sizes:
            t = max(8, min(4096, args.steps // n))
            ours = jax_steps_per_second(name, n, t, "vecenv", args.repeats)
            theirs = jax_steps_per_second(name, n, t, "gymnax", args.repeats)
            row += [f"{_fmt(ours)} ({ours / base:.0f}x) [{ours / theirs:.1f}]",
                    f"{_fmt(theirs)} ({theirs / base:.0f}x)"]
        print("| " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    jnp.zeros(())  # initialise the backend before timing
    main()
