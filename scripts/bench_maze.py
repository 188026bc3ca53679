"""Labyrinth resets per second: popgym (mazelib Hunt-and-Kill, numpy/Python, one env) vs
rlmem's JAX maze generation (`LabyrinthEscape.reset_env`, jitted, vmapped over N envs).

A maze reset is the costliest reset among the POPGym envs, and vector envs hand out
fresh reset states while training, so its throughput bounds how cheaply episodes restart.
Both sides are measured in the same run, for each difficulty's maze size.

Usage:
    python scripts/bench_maze.py --quick
    python scripts/bench_maze.py --sizes 1 64 1024 4096 --repeats 5
"""

from __future__ import annotations

import argparse
import time
import warnings

import jax
import numpy as np

from rlmem.compile_cache import enable_compilation_cache
from rlmem.envs.popgym.labyrinth_escape import LabyrinthEscape

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import popgym.envs.labyrinth_escape as pop_escape

DIFFICULTIES = {
    "Easy": (pop_escape.LabyrinthEscapeEasy, (10, 10)),
    "Medium": (pop_escape.LabyrinthEscapeMedium, (14, 14)),
    "Hard": (pop_escape.LabyrinthEscapeHard, (18, 18)),
}


def popgym_resets_per_second(pop_cls, resets: int) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        env = pop_cls()
    env.reset(seed=0)
    start = time.perf_counter()
    for i in range(resets):
        env.reset(seed=i)
    return resets / (time.perf_counter() - start)


def jax_resets_per_second(maze_dims, num_envs: int, repeats: int) -> float:
    env = LabyrinthEscape(maze_dims=maze_dims)
    params = env.default_params
    reset = jax.jit(jax.vmap(env.reset_env, in_axes=(0, None)))
    keys = jax.random.split(jax.random.PRNGKey(0), num_envs)
    jax.block_until_ready(reset(keys, params))  # compile
    best = np.inf
    for i in range(repeats):
        keys = jax.random.split(jax.random.PRNGKey(i + 1), num_envs)
        start = time.perf_counter()
        jax.block_until_ready(reset(keys, params))
        best = min(best, time.perf_counter() - start)
    return num_envs / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Easy only, sizes 1 and 256")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 256, 1024])
    parser.add_argument("--difficulties", nargs="+", default=list(DIFFICULTIES))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--popgym-resets", type=int, default=200)
    args = parser.parse_args()
    enable_compilation_cache()
    difficulties = ["Easy"] if args.quick else args.difficulties
    sizes = [1, 256] if args.quick else args.sizes
    header = ["maze", "popgym resets/s"] + [f"JAX N={n} resets/s" for n in sizes]
    header += [f"ratio N={sizes[-1]}"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for name in difficulties:
        pop_cls, dims = DIFFICULTIES[name]
        pop_rate = popgym_resets_per_second(pop_cls, args.popgym_resets)
        rates = [jax_resets_per_second(dims, n, args.repeats) for n in sizes]
        cells = [f"{name} {dims[0]}x{dims[1]}", f"{pop_rate:,.0f}"]
        cells += [f"{r:,.0f}" for r in rates] + [f"{rates[-1] / pop_rate:.1f}x"]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
