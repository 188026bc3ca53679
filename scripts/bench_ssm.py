"""Benchmark the diagonal-recurrence memoroids (LRU, S5, S6, gated linear attention).

For each model at its default (paper) sizes, times one jitted pass over a tape of `T`
transitions (a tape-based batch), forward only and forward + gradient, with the parallel
associative scan and with the sequential fold, side by side in one run.

    python scripts/bench_ssm.py --quick          # T = 250, 3 repeats
    python scripts/bench_ssm.py --length 1000    # the paper's batch of 1,000 transitions

Prints a markdown table (median milliseconds per call; ratio = associative / sequential).
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from rlmem.memory import make_memory

MODELS = ("lru", "s5", "s6", "gla")
STRATEGIES = ("associative", "sequential")


def time_call(fn, *args, repeats: int) -> float:
    """Median wall time of `fn(*args)` in ms, after one compiling call."""
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times))


def bench_model(name: str, length: int, input_size: int, repeats: int) -> dict[str, float]:
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(length, input_size)), jnp.float32)
    start = jnp.asarray(rng.random(length) < 0.02).at[0].set(True)
    out = {}
    params = None
    for strategy in STRATEGIES:
        model = make_memory(name, scan=strategy)
        carry = model.initialize_carry()
        if params is None:
            params = jax.jit(model.init)(jax.random.PRNGKey(0), x, start, carry)

        def loss(p, x, m=model, c=carry):
            return jnp.mean(m.apply(p, x, start, c)[0] ** 2)

        forward = jax.jit(lambda p, x, m=model, c=carry: m.apply(p, x, start, c)[0])
        grad = jax.jit(jax.grad(loss))
        out[f"fwd_{strategy}"] = time_call(forward, params, x, repeats=repeats)
        out[f"grad_{strategy}"] = time_call(grad, params, x, repeats=repeats)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--length", type=int, default=1000, help="tape length T")
    parser.add_argument("--input-size", type=int, default=256, help="input features F")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--quick", action="store_true", help="T = 250, 3 repeats")
    args = parser.parse_args()
    if args.quick:
        args.length, args.repeats = 250, 3

    print(
        f"T = {args.length}, F = {args.input_size}, backend = {jax.default_backend()}, "
        f"jax {jax.__version__}, median of {args.repeats}"
    )
    print()
    print(
        "| model | forward assoc. (ms) | forward seq. (ms) | ratio | "
        "fwd+grad assoc. (ms) | fwd+grad seq. (ms) | ratio |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in args.models:
        r = bench_model(name, args.length, args.input_size, args.repeats)
        print(
            f"| {name} | {r['fwd_associative']:.1f} | {r['fwd_sequential']:.1f} | "
            f"{r['fwd_associative'] / r['fwd_sequential']:.2f} | "
            f"{r['grad_associative']:.1f} | {r['grad_sequential']:.1f} | "
            f"{r['grad_associative'] / r['grad_sequential']:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
