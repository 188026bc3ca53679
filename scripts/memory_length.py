"""Value memory length (the paper's Figure 3): how far back a trained Q-network looks.

    python scripts/memory_length.py RUN_DIR [RUN_DIR ...] --episodes 20 --out age.pdf

For each run directory (each of its seeds): greedy episodes from its latest checkpoint
(`rlmem.evaluate`), then for every step `n` of an episode the sensitivity of the chosen
action's value to every earlier observation, `s(n, i) = sum_f |dQ(s_n, a_n) / d o_i,f|`
(the network run over the whole episode from its start; `i <= n`). Summed over steps by
observation age `k = n - i`, normalised to 1, this is the share of the value's
sensitivity that comes from observations `k` steps old. Prints, per run directory (mean
over seeds, and each seed), the share from observations at least `--ages` steps old
(e.g. older than a segment of L = 10 or 20), and plots the cumulative share over age.
Only for Q-networks (`algo.name=dqn`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np

from rlmem.evaluate import EVAL_SEED, evaluate, restore_run

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)


def sensitivity_by_age(network, params, obs: jax.Array, action: jax.Array,
                       mask: jax.Array) -> jax.Array:
    """One episode: `obs [T, F]`, `action [T]`, `mask [T]` (its real steps, a prefix) ->
    `[T]` the summed `|dQ(s_n, a_n)/do_i|` over the real steps `n`, by age `n - i`."""
    steps = obs.shape[0]
    start = jnp.zeros((steps,), bool).at[0].set(True)
    carry = network.initialize_carry()

    def chosen_q(o):
        q, _ = network.apply(params, o, start, carry)
        return q[jnp.arange(steps), action]

    jac = jnp.abs(jax.jacrev(chosen_q)(obs)).sum(-1)  # [n, i]
    jac = jac * mask[:, None]
    n, i = jnp.meshgrid(jnp.arange(steps), jnp.arange(steps), indexing="ij")
    age = jnp.where(i <= n, n - i, steps)  # the future (exactly 0 anyway) goes nowhere
    return jnp.zeros((steps + 1,)).at[age.ravel()].add(jac.ravel())[:steps]


def age_profile(run_dir: Path, episodes: int, seed: int = EVAL_SEED) -> np.ndarray:
    """`[R, T]`: per run of `run_dir`, the normalised sensitivity mass by age."""
    restored = restore_run(run_dir)
    if restored.exp.config["algo"]["name"] != "dqn":
        raise ValueError(f"{run_dir}: memory length needs a Q-network (algo.name=dqn), got "
                         f"{restored.exp.config['algo']['name']!r}")
    out = evaluate(restored, episodes, seed)
    network = restored.exp.algo.network
    per_episode = jax.jit(jax.vmap(jax.vmap(
        lambda p, o, a, m: sensitivity_by_age(network, p, o, a, m),
        in_axes=(None, 0, 0, 0)), in_axes=(0, 0, 0, 0)))
    mass = np.asarray(per_episode(restored.state.algo.params, out["obs"], out["action"],
                                  out["mask"])).sum(axis=1)  # [R, T]
    return mass / mass.sum(axis=1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dirs", nargs="+", type=Path)
    parser.add_argument("--labels", default=None,
                        help="comma-separated names for the run dirs (default: their paths)")
    parser.add_argument("--episodes", type=int, default=20, help="greedy episodes per run")
    parser.add_argument("--ages", default="10,20,50",
                        help="report the share from observations at least this old")
    parser.add_argument("--out", type=Path, default=None, help="figure (.png, .pdf, .svg)")
    args = parser.parse_args()
    labels = (args.labels.split(",") if args.labels else [str(p) for p in args.run_dirs])
    ages = [int(a) for a in args.ages.split(",")]
    print("| run | seeds | " + " | ".join(f"share from age >= {a}" for a in ages)
          + " | per seed (first age) |")
    print("|---|---|" + "---|" * (len(ages) + 1))
    fig, ax = plt.subplots(figsize=(5, 3.4), dpi=110, layout="constrained")
    for label, run_dir in zip(labels, args.run_dirs, strict=True):
        profile = age_profile(run_dir, args.episodes)  # [R, T]
        older = [profile[:, a:].sum(axis=1) for a in ages]
        per_seed = ", ".join(f"{x:.3f}" for x in older[0])
        print(f"| {label} | {len(profile)} | "
              + " | ".join(f"{x.mean():.3f}" for x in older) + f" | {per_seed} |")
        ax.plot(np.arange(profile.shape[1]), np.cumsum(profile.mean(axis=0)), label=label)
    if args.out:
        ax.set_xlabel("observation age n - i (steps)")
        ax.set_ylabel("cumulative share of |dQ/do|")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.out)
        print(f"\nwrote {args.out}")
    plt.close(fig)


if __name__ == "__main__":
    main()
