"""Evaluate a run's checkpoint: greedy episodes on fresh env seeds, per run of the directory.

    python -m rlmem.evaluate outputs/2026-12-02/10-00-00                # latest checkpoint
    python -m rlmem.evaluate RUN_DIR --step 5000 --episodes 200 --save episodes.npz
    python -m rlmem.evaluate RUN_DIR eval.max_steps=500                 # config overrides

The run's own config (`.hydra/config.yaml`, keys added to rlmem since then at their
defaults, plus any `key=value` overrides) is rebuilt and the checkpoint restored into it
(a config or code whose training state differs in any leaf's path, shape or dtype is
refused with the differences listed), and every run of the directory (each seed, or
sweep member x seed) plays `--episodes` greedy episodes from env seeds no training or
evaluation used (`--seed`). Prints per run the mean, standard deviation, min and max
return; `--save` writes `returns`/`lengths` `[R, E]` and, per step, `obs [R, E, T, F]`,
`actions`, `rewards` and `mask [R, E, T]` (T = `eval.max_steps`) to an `.npz`.

The run directory is locked while this reads it: a run still training is refused.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import yaml

PyTree = Any
EVAL_SEED = 1_000_003  # base of the evaluation env seeds (training keys come from the seed)


@dataclass(frozen=True)
class Restored:
    """A run directory's experiment and one of its checkpoints."""

    exp: Any  # rlmem.config.Experiment
    state: Any  # the vmapped LoopState, leaves `[R, ...]`
    step: int


def restore_run(run_dir: str | Path, overrides: tuple[str, ...] = (),
                step: int | None = None) -> Restored:
    """Rebuild `run_dir`'s experiment (its recorded config + `overrides`) and restore its
    checkpoint at `step` (None: the latest valid one)."""
    from rlmem.checkpoint import Checkpointer
    from rlmem.config import ConfigError, build
    from rlmem.configs import compose_run_config
    from rlmem.data.tape import is_replay_store
    from rlmem.rundir import HYDRA_SUBDIR, lock_run_dir

    run_dir = Path(run_dir)
    config_file = run_dir / HYDRA_SUBDIR / "config.yaml"
    if not config_file.exists():
        raise ConfigError(f"{run_dir} is not a run directory (no {HYDRA_SUBDIR}/config.yaml)")
    recorded = yaml.safe_load(config_file.read_text())
    overrides_file = run_dir / HYDRA_SUBDIR / "overrides.yaml"
    choices = yaml.safe_load(overrides_file.read_text()) if overrides_file.exists() else []
    cfg = compose_run_config(recorded, choices or [])
    try:
        cfg.merge_with_dotlist(list(overrides))
    except Exception as err:  # noqa: BLE001  (OmegaConf's parse errors)
        raise ConfigError(f"overrides {list(overrides)}: {err}") from err
    exp = build(cfg)
    like = exp.init_state()
    lock = lock_run_dir(run_dir)
    try:
        checkpointer = Checkpointer(
            # Only the state's leaves must match (paths, shapes, dtypes): a run written by
            # an older rlmem, whose config lacks today's keys, still evaluates.
            run_dir / "checkpoints", interval=1, keep=1_000_000, fingerprint=None,
            exclude=is_replay_store if exp.checkpoint.exclude_replay else None,
            async_save=False)
        try:
            state, meta = checkpointer.restore(like, step, partial=True)
            found = checkpointer.latest_step() if step is None else step
        finally:
            checkpointer.close()
    finally:
        lock.release()
    missing = [p for p in meta["not_restored"] if p.startswith(".algo")]
    if missing:
        raise ConfigError(
            f"the checkpoint in {run_dir} lacks the algorithm's state at "
            f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''} (a different "
            "algorithm or network); the evaluated config must be the run's")
    return Restored(exp=exp, state=jax.tree.map(jnp.asarray, state), step=int(found))


def greedy_episodes(loop: Any, algo_state: PyTree, hparams: dict[str, jax.Array],
                    key: jax.Array, episodes: int, max_steps: int) -> dict[str, jax.Array]:
    """One run's greedy episodes: each of `episodes` envs plays its first episode.

    Returns `return`, `length` `[E]` and the recorded steps `obs [E, T, F]`, `action`,
    `reward`, `mask [E, T]` (`T = max_steps`; steps after an episode's end are masked).
    An episode cut by `max_steps` counts as far as it got."""
    algo = loop.bound(hparams)
    vec = loop._vec(episodes, None)
    reset_key, key = jax.random.split(key)
    obs, env_state = vec.reset(reset_key)

    def step(c, t):
        obs, start, env_state, carry, live = c
        action, carry = algo.act_greedy(algo_state, obs, start, carry)
        new_obs, env_state, reward, terminated, truncated, info = vec.step(
            jax.random.fold_in(key, t), env_state, action)
        record = (obs, action, reward, live)
        live = live & ~(terminated | truncated)
        return (new_obs, info["start"], env_state, carry, live), record

    init = (obs, jnp.ones((episodes,), bool), env_state, loop.algo.initial_carry(episodes),
            jnp.ones((episodes,), bool))
    _, (obs, action, reward, mask) = jax.lax.scan(step, init, jnp.arange(max_steps))
    swap = lambda x: jnp.swapaxes(x, 0, 1)  # [T, E, ...] -> [E, T, ...]
    obs, action, reward, mask = swap(obs), swap(action), swap(reward), swap(mask)
    return {"return": jnp.sum(reward * mask, axis=1), "length": jnp.sum(mask, axis=1),
            "obs": obs, "action": action, "reward": reward, "mask": mask}


def evaluate(restored: Restored, episodes: int = 100, seed: int = EVAL_SEED,
             max_steps: int | None = None) -> dict[str, np.ndarray]:
    """Every run's greedy episodes (`greedy_episodes`, leaves `[R, E, ...]`)."""
    exp, state = restored.exp, restored.state
    max_steps = max_steps or exp.loop.settings.eval_max_steps
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(seed), i))(
        jnp.arange(len(exp.runs)))
    run = jax.jit(jax.vmap(
        lambda a, h, k: greedy_episodes(exp.loop, a, h, k, episodes, max_steps)))
    return {k: np.asarray(v) for k, v in run(state.algo, state.hparams, keys).items()}


def report(restored: Restored, out: dict[str, np.ndarray]) -> str:
    """One line per run: mean, std, min and max return over its episodes."""
    lines = []
    for i, one in enumerate(restored.exp.runs):
        r = out["return"][i]
        lines.append(f"rlmem: {one.label}: return {r.mean():.4f} +- {r.std():.4f} over "
                     f"{len(r)} episodes (min {r.min():.4f}, max {r.max():.4f}; mean length "
                     f"{out['length'][i].mean():.1f})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from rlmem.config import ConfigError
    from rlmem.errors import RunError

    parser = argparse.ArgumentParser(prog="python -m rlmem.evaluate",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("overrides", nargs="*", help="config overrides, key=value")
    parser.add_argument("--step", type=int, default=None, help="checkpoint step (latest)")
    parser.add_argument("--episodes", type=int, default=100, help="episodes per run")
    parser.add_argument("--seed", type=int, default=EVAL_SEED, help="evaluation env seed")
    parser.add_argument("--save", type=Path, default=None, help="write the episodes (.npz)")
    args = parser.parse_args(argv)
    if args.episodes < 1:
        parser.error(f"--episodes={args.episodes} must be >= 1")
    try:
        restored = restore_run(args.run_dir, tuple(args.overrides), args.step)
    except (ConfigError, RunError, FileNotFoundError) as err:
        print(f"rlmem: error: {err}", file=sys.stderr)
        return 2
    out = evaluate(restored, args.episodes, args.seed)
    print(f"rlmem: {args.run_dir} at {restored.exp.loop.settings.step_unit[:-1]} "
          f"{restored.step}, {args.episodes} greedy episodes per run (env seed {args.seed})")
    print(report(restored, out))
    if args.save:
        args.save.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(args.save, returns=out["return"], lengths=out["length"],
                            obs=out["obs"], actions=out["action"], rewards=out["reward"],
                            mask=out["mask"])
        print(f"rlmem: wrote {args.save}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
