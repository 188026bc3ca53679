"""Benchmark: discounted return as one memoroid scan over a tape vs per-episode loops.

Paper Fig. 5 (left): tapes of `E` episodes with lengths uniform in [1, L]. Compared, in one
run and on the same data:

  * `python loop`    per episode, backwards over its steps in plain Python;
  * `numpy/episode`  per episode, one vectorised `scipy.signal.lfilter` call;
  * `memoroid seq`   `discounted_returns(..., strategy="sequential")` (jitted, one tape);
  * `memoroid assoc` `discounted_returns(..., strategy="associative")`.

Usage:
  python scripts/bench_returns.py            # --quick subset (default)
  python scripts/bench_returns.py --full     # E in 10..10,000, L in 10..1,000 (long)
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np
from scipy.signal import lfilter

from rlmem.memory.returns import discounted_returns

GAMMA = 0.99


def make_tape(rng: np.random.Generator, episodes: int, max_length: int):
    lengths = rng.integers(1, max_length + 1, size=episodes)
    total = int(lengths.sum())
    reward = rng.normal(size=total).astype(np.float32)
    terminated = np.zeros(total, bool)
    terminated[np.cumsum(lengths) - 1] = True
    return reward, terminated, lengths


def python_loop(reward, lengths):
    out, first = np.empty_like(reward), 0
    for length in lengths:
        g = 0.0
        for t in range(first + length - 1, first - 1, -1):
            g = reward[t] + GAMMA * g
            out[t] = g
        first += length
    return out


def numpy_per_episode(reward, lengths):
    out, first = np.empty_like(reward), 0
    for length in lengths:
        segment = reward[first : first + length]
        out[first : first + length] = lfilter([1.0], [1.0, -GAMMA], segment[::-1])[::-1]
        first += length
    return out


def timed(fn, repeats: int) -> float:
    """Median seconds of `repeats` calls (after one warm-up call, which compiles)."""
    fn()
    times = []
    for _ in range(repeats):
        begin = time.perf_counter()
        fn()
        times.append(time.perf_counter() - begin)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="the paper's whole grid")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--python-max-steps", type=int, default=2_000_000,
                        help="skip the plain-Python loop above this many steps")
    args = parser.parse_args()
    if args.full:
        grid = [(e, m) for e in (10, 100, 1_000, 10_000) for m in (10, 100, 1_000)]
    else:
        grid = [(10, 10), (100, 100), (1_000, 100), (1_000, 1_000), (10_000, 10)]

    rng = np.random.default_rng(0)
    memoroid = {
        s: jax.jit(lambda r, d, s=s: discounted_returns(r, d, d & False, GAMMA, strategy=s))
        for s in ("sequential", "associative")
    }
    print(f"backend: {jax.default_backend()}, jax {jax.__version__}, gamma {GAMMA}")
    print("| episodes | max len | steps | python loop (ms) | numpy/episode (ms) "
          "| memoroid seq (ms) | memoroid assoc (ms) | loop / seq | numpy / seq | assoc / seq |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for episodes, max_length in grid:
        reward, terminated, lengths = make_tape(rng, episodes, max_length)
        expected = numpy_per_episode(reward, lengths)
        for fn in memoroid.values():  # the benchmark only counts correct answers
            np.testing.assert_allclose(fn(reward, terminated), expected, rtol=1e-3, atol=1e-3)
        t_np = timed(lambda: numpy_per_episode(reward, lengths), args.repeats)
        slow = len(reward) > args.python_max_steps
        t_py = np.nan if slow else timed(lambda: python_loop(reward, lengths), 1)
        t = {
            s: timed(lambda fn=fn: fn(reward, terminated).block_until_ready(), args.repeats)
            for s, fn in memoroid.items()
        }
        seq, assoc = t["sequential"], t["associative"]
        print(f"| {episodes:,} | {max_length:,} | {len(reward):,} | {t_py * 1e3:.3f} "
              f"| {t_np * 1e3:.3f} | {seq * 1e3:.3f} | {assoc * 1e3:.3f} "
              f"| {t_py / seq:.1f} | {t_np / seq:.1f} | {assoc / seq:.2f} |")


if __name__ == "__main__":
    main()
