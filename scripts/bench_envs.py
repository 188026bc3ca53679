r"""Env steps per second: popgym (numpy, one env) vs rlmem JAX envs, vmapped.

For each env id, measured side by side in one run (same wrappers everywhere: popgym's
Flatten, Antialias, DiscreteAction; rlmem's equivalents from `rlmem.envs.make`):

* `popgym`: the numpy env, one env in a Python loop, reset when done.
* `bare N`: `jax.vmap(env.step_env)` over `N` envs and nothing else: no resets (an
  episode that ends just keeps stepping), no episode statistics, step keys split the way
  `VecEnv` splits them. The ceiling.
* `VecEnv N`: rlmem's vector env (`rlmem.envs.VecEnv`, its default `resets_per_step`):
  step, episode statistics, and a fresh state for every env that finished.
* `baseline N` (with `--baseline MODULE`): another version's `make` and `VecEnv` (its
  envs and its defaults), e.g. the last commit's, to check a change side by side.
* `gymnax N`: the same wrapped env under gymnax's auto-reset `step` (a full reset
  computed for every env at every step), vmapped.

The JAX columns run `T` steps inside one jitted `lax.scan`; only the scan is timed (the
initial reset is not). `T = steps // N`, clipped to [512, 4096], and for games of a fixed
length `L` (the card games) rounded up to a whole number of episodes, so that the
envs' episode ends (all `N` at once, every `L` steps) are counted at their true rate.
Each cell is the best of `--repeats` calls; the columns of one `N` are compiled first,
then called in turns, so a load that comes and goes hits them alike. Actions are
uniform random, drawn before the timer starts, for popgym as well, so no column pays
for sampling actions.

`--profile NAME` instead times where one `VecEnv.step` goes for a fixed-length game at
`N = --sizes[0]`: a step in which no env finishes, the extra cost of the step in which all
`N` finish together, the average over 4 episodes (each a difference of two scans, so the
fixed cost of a call cancels), and one batch of 128 `reset_env` calls, each for the
`--resets-per-step` values given (default: VecEnv's).

Usage:
    python scripts/bench_envs.py --quick
    python scripts/bench_envs.py --envs RepeatFirstEasy CountRecallEasy --sizes 1 64 1024 4096
    python scripts/bench_envs.py --profile RepeatFirstEasy --sizes 1024
    # against the last commit: its package under another name, importable
    mkdir -p /tmp/base && git archive HEAD rlmem | tar -x -C /tmp/base
    mv /tmp/base/rlmem /tmp/base/rlmem_base
    grep -rl rlmem /tmp/base/rlmem_base | xargs sed -i -E \
        's/\brlmem\./rlmem_base./g; s/(from|import) rlmem\b/\1 rlmem_base/g'
    PYTHONPATH=/tmp/base python scripts/bench_envs.py --sizes 1024 --baseline rlmem_base.envs
"""

from __future__ import annotations

import argparse
import importlib
import math
import time

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import popgym.envs as pe
from popgym.wrappers import Antialias, DiscreteAction, Flatten

from rlmem.compile_cache import enable_compilation_cache
from rlmem.envs import VecEnv, make, threefry
from rlmem.envs.wrappers import EpisodeStatistics

DEFAULT_ENVS = ("RepeatFirstEasy", "RepeatPreviousEasy", "AutoencodeEasy", "CountRecallEasy",
                "HigherLowerEasy")
MODES = ("bare", "vecenv", "gymnax")


def popgym_steps_per_second(name: str, steps: int) -> float:
    env = Flatten(Antialias(getattr(pe, name)()))
    if not isinstance(env.action_space, gym.spaces.Box):
        env = DiscreteAction(env)
    env.reset(seed=0)
    env.action_space.seed(0)
    actions = [env.action_space.sample() for _ in range(steps)]
    start = time.perf_counter()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    return steps / (time.perf_counter() - start)


def num_steps(env, num_envs: int, steps: int) -> int:
    """Scan length `T` for `num_envs` envs (see the module docstring)."""
    t = max(512, min(4096, steps // num_envs))
    length = getattr(env, "episode_length", None)  # fixed-length games (CardGame)
    if isinstance(length, int) and length > 0:
        t = length * math.ceil(t / length)
    return t


def jax_run(name: str, num_envs: int, steps: int, mode: str, envs=None):
    """`(run, env_steps)`: a compiled call that steps `num_envs` envs `T` times in one
    scan (fresh keys and actions per call, drawn before it), and how many env steps that
    is. `envs`: the module to take `make` and `VecEnv` from (a baseline's, for
    `mode="baseline"`; else `rlmem.envs`)."""
    env, params = make(name)
    t = num_steps(env, num_envs, steps)
    if mode in ("vecenv", "baseline"):
        if mode == "baseline":
            env, params = envs.make(name)
        venv = (envs.VecEnv if mode == "baseline" else VecEnv)(env, params, num_envs)
        reset, step = venv.reset, venv.step
    elif mode == "gymnax":
        stats = EpisodeStatistics(env)
        v_reset = jax.vmap(stats.reset, in_axes=(0, None))
        v_step = jax.vmap(stats.step, in_axes=(0, 0, 0, None))
        reset = lambda key: v_reset(jax.random.split(key, num_envs), params)
        step = lambda key, s, a: v_step(jax.random.split(key, num_envs), s, a, params)
    else:  # bare; keys split as VecEnv splits them (jax's threefry, unrolled)
        v_reset = jax.vmap(env.reset_env, in_axes=(0, None))
        v_step = jax.vmap(env.step_env, in_axes=(0, 0, 0, None))
        reset = lambda key: v_reset(threefry.split(key, num_envs), params)

        def step(key, s, a):
            obs, s, reward, terminated, info = v_step(threefry.split(key, num_envs), s, a,
                                                      params)
            return obs, s, reward, terminated, info

    def body(state, xs):
        key, action = xs
        obs, state, reward, *_ = step(key, state, action)
        # Sink the observations too: CartPole's reward is a constant, and with only the
        # reward kept live XLA would drop the whole physics from the program.
        return state, reward.sum() + obs.sum()

    @jax.jit
    def scan(state, key, actions):
        _, rewards = jax.lax.scan(body, state, (jax.random.split(key, t), actions))
        return rewards.sum()

    num_actions = env.action_space(params).n
    draw = jax.jit(lambda key: jax.random.randint(key, (t, num_envs), 0, num_actions))
    key = jax.random.PRNGKey(0)
    state = jax.block_until_ready(jax.jit(reset)(key)[1])
    jax.block_until_ready(scan(state, key, draw(key)))  # compile
    calls = iter(range(1, 1 << 30))

    def run() -> float:
        """Seconds for one call."""
        key = jax.random.PRNGKey(next(calls))
        actions = jax.block_until_ready(draw(key))
        start = time.perf_counter()
        jax.block_until_ready(scan(state, key, actions))
        return time.perf_counter() - start

    return run, num_envs * t


def interleaved_rates(runs: dict, repeats: int) -> dict:
    """Env steps per second of each `jax_run`, best of `repeats` calls, taken in turns
    (one call of each per round), so that a load that comes and goes hits all alike."""
    best = dict.fromkeys(runs, np.inf)
    for _ in range(repeats):
        for mode, (run, _) in runs.items():
            best[mode] = min(best[mode], run())
    return {mode: runs[mode][1] / best[mode] for mode in runs}


def _best_us(run, *args, repeats: int = 20) -> float:
    jax.block_until_ready(run(*args))  # compile
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(run(*args))
        best = min(best, time.perf_counter() - start)
    return best * 1e6


def profile(name: str, num_envs: int, resets: list[int | None]) -> None:
    """Prints where one `VecEnv.step` goes (microseconds; see the module docstring)."""
    env, params = make(name)
    length = getattr(env, "episode_length", None)
    if not isinstance(length, int):
        raise SystemExit(f"--profile needs a fixed-length game (a card game), not {name}")
    num_actions = env.action_space(params).n

    def scan_us(step, state, t):
        keys = jax.random.split(jax.random.PRNGKey(1), t)
        actions = jax.random.randint(jax.random.PRNGKey(0), (t, num_envs), 0, num_actions)

        def body(state, xs):
            obs, state, reward, *_ = step(xs[0], state, xs[1])
            return state, reward.sum() + obs.sum()

        run = jax.jit(lambda s, k, a: jax.lax.scan(body, s, (k, a))[1].sum())
        return _best_us(run, state, keys, actions)

    def per_step_us(step, state, first, last):
        """Microseconds per step over steps `first..last-1` (the difference of two scans,
        so that the fixed cost of a call cancels)."""
        return (scan_us(step, state, last) - scan_us(step, state, first)) / (last - first)

    v_step = jax.vmap(env.step_env, in_axes=(0, 0, 0, None))
    bare_state = jax.vmap(env.reset_env, in_axes=(0, None))(
        threefry.split(jax.random.PRNGKey(0), num_envs), params)[1]
    bare = lambda key, s, a: v_step(threefry.split(key, num_envs), s, a, params)
    rows = {"bare step_env (no resets)": per_step_us(bare, bare_state, length, 5 * length)}
    for k in resets:
        venv = VecEnv(env, params, num_envs, resets_per_step=k)
        state = venv.reset(jax.random.PRNGKey(0))[1]
        label = f"VecEnv k={venv.resets_per_step}"
        rows[f"{label}: a step where no env finishes"] = per_step_us(
            venv.step, state, 1, length - 1)
        rows[f"{label}: extra cost of the step where all {num_envs} finish"] = (
            scan_us(venv.step, state, length) - scan_us(venv.step, state, length - 1))
        rows[f"{label}: average over 4 episodes"] = per_step_us(
            venv.step, state, length, 5 * length)
    resets_alone = jax.jit(lambda key: jax.vmap(venv.env.reset_env, in_axes=(0, None))(
        jax.random.split(key, 128), params))
    rows["one batch of 128 reset_env calls"] = _best_us(resets_alone, jax.random.PRNGKey(0))
    print(f"jax {jax.__version__}, backend {jax.default_backend()}; {name}, N = {num_envs}, "
          f"microseconds (best of 20)\n")
    print("| measurement | us |\n|---|---|")
    for label, us in rows.items():
        print(f"| {label} | {us:.1f} |")


def _fmt(x: float) -> str:
    return f"{x / 1e6:.2f}M" if x >= 1e6 else f"{x / 1e3:.1f}k"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 envs, sizes 1 and 1024")
    parser.add_argument("--envs", nargs="+", default=list(DEFAULT_ENVS))
    parser.add_argument("--sizes", nargs="+", type=int, default=[1, 64, 1024, 4096])
    parser.add_argument("--steps", type=int, default=2 ** 18,
                        help="env steps per timed JAX run (split over the N envs)")
    parser.add_argument("--popgym-steps", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-gymnax", action="store_true", help="skip the gymnax columns")
    parser.add_argument("--profile", metavar="NAME",
                        help="where one VecEnv.step goes, for one fixed-length game")
    parser.add_argument("--resets-per-step", nargs="+", type=int, default=[None],
                        help="VecEnv resets_per_step values for --profile")
    parser.add_argument("--baseline", metavar="MODULE",
                        help="also time another VecEnv, with its own envs: a package "
                             "with `make` and `VecEnv` (e.g. an older rlmem's `envs`)")
    args = parser.parse_args()
    if args.profile:
        enable_compilation_cache()
        profile(args.profile, args.sizes[0] if args.sizes else 1024, args.resets_per_step)
        return
    if args.quick:
        args.envs, args.sizes = args.envs[:2], [1, 1024]
        args.popgym_steps, args.repeats = 2000, 2
    enable_compilation_cache()
    baseline = importlib.import_module(args.baseline) if args.baseline else None
    modes = [m for m in MODES if not (args.no_gymnax and m == "gymnax")]
    if baseline is not None:
        modes.insert(modes.index("vecenv") + 1, "baseline")
    label = {"bare": "bare", "vecenv": "VecEnv", "baseline": "baseline", "gymnax": "gymnax"}

    header = ["env", "popgym (1 env)"]
    for n in args.sizes:
        header += [f"{label[m]} {n}" for m in modes]
    print(f"jax {jax.__version__}, backend {jax.default_backend()}; env steps per second "
          f"(x: ratio to popgym; [%]: VecEnv's share of the bare rate"
          + (f"; {{r}}: VecEnv / baseline ({args.baseline})" if baseline else "") + ")\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for name in args.envs:
        base = popgym_steps_per_second(name, args.popgym_steps)
        row = [name, _fmt(base)]
        for n in args.sizes:
            runs = {m: jax_run(name, n, args.steps, m, baseline) for m in modes}
            rate = interleaved_rates(runs, args.repeats)
            for m in modes:
                cell = f"{_fmt(rate[m])} ({rate[m] / base:.0f}x)"
                if m == "vecenv":
                    cell += f" [{100 * rate[m] / rate['bare']:.0f}%]"
                    if baseline is not None:
                        cell += f" {{{rate[m] / rate['baseline']:.1f}}}"
                row.append(cell)
        print("| " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    jnp.zeros(())  # initialise the backend before timing
    main()
