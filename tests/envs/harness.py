"""Lock-step equivalence of a JAX environment against its popgym (numpy) oracle.

Each family's test supplies how to read popgym's internal state into the JAX state
(`state_from_popgym`); the harness then drives both with the same random actions and
compares observations, rewards, `terminated` and `truncated` at every step, for many
episodes. Popgym resets first (its numpy RNG draws the deck/board/maze); the JAX env is
put into exactly that state, so every subsequent step must agree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from rlmem.envs.popgym import deck


def _default_obs_to_array(obs: Any) -> Any:
    if isinstance(obs, tuple):
        return tuple(np.asarray(o) for o in obs)
    return np.asarray(obs)


def _assert_obs_close(pop_obs: Any, jax_obs: Any, atol: float, where: str) -> None:
    pop_leaves = jax.tree.leaves(pop_obs)
    jax_leaves = jax.tree.leaves(jax_obs)
    assert len(pop_leaves) == len(jax_leaves), f"{where}: obs structure {pop_obs} vs {jax_obs}"
    for p, j in zip(pop_leaves, jax_leaves, strict=True):
        np.testing.assert_allclose(
            np.asarray(j, dtype=np.float64),
            np.asarray(p, dtype=np.float64),
            atol=atol,
            err_msg=f"{where}: observation differs",
        )


@dataclass
class Lockstep:
    """What a family's equivalence test plugs into :func:`run_lockstep`.

    Attributes:
      jax_env: the rlmem gymnax environment (unwrapped).
      params: its `EnvParams`.
      pop_env: the popgym environment (unwrapped), e.g. `popgym.envs.RepeatFirstEasy()`.
      state_from_popgym: `(pop_env, params) -> jax EnvState` after `pop_env.reset()`.
      obs_to_array: converts a popgym observation into arrays comparable to the JAX one.
      action_to_jax: converts a sampled popgym action into the JAX action.
      before_pop_step: `(pop_env, key, jax_state, action) -> None`, called before both
        step with the JAX step key; lets a stochastic family make popgym draw the same
        random numbers as JAX (e.g. by patching `pop_env.np_random`).
      compare_obs: set False for families whose observations are noisy by design (then
        compare the underlying state in `after_step`).
      after_step: `(pop_env, jax_state) -> None` extra per-step assertions.
      atol: tolerance for observations and rewards.
    """

    jax_env: Any
    params: Any
    pop_env: Any
    state_from_popgym: Callable[[Any, Any], Any]
    obs_to_array: Callable[[Any], Any] = _default_obs_to_array
    action_to_jax: Callable[[Any], Any] = lambda a: jnp.asarray(a)
    before_pop_step: Callable[[Any, jax.Array, Any, Any], None] | None = None
    compare_obs: bool = True
    after_step: Callable[[Any, Any], None] | None = None
    atol: float = 1e-5
    _jit_cache: dict = field(default_factory=dict)


def run_lockstep(case: Lockstep, *, num_episodes: int, seed: int, max_steps: int = 100_000) -> int:
    """Drive popgym and the JAX env in lock-step; returns the number of steps compared.

    Raises AssertionError at the first step where the two disagree.
    """
    env, params = case.jax_env, case.params
    step_env = jax.jit(env.step_env)
    is_truncated = jax.jit(env.is_truncated)
    get_obs = jax.jit(lambda s, k: env.get_obs(s, params, k))
    rng = np.random.default_rng(seed)
    key = jax.random.PRNGKey(seed)
    case.pop_env.action_space.seed(seed)
    steps = 0
    for episode in range(num_episodes):
        pop_obs, _ = case.pop_env.reset(seed=int(rng.integers(2**31)))
        state = case.state_from_popgym(case.pop_env, params)
        key, obs_key = jax.random.split(key)
        if case.compare_obs:
            _assert_obs_close(
                case.obs_to_array(pop_obs), get_obs(state, obs_key), case.atol,
                f"episode {episode} reset",
            )
        for t in range(max_steps):
            action = case.pop_env.action_space.sample()
            key, step_key = jax.random.split(key)
            if case.before_pop_step is not None:
                case.before_pop_step(case.pop_env, step_key, state, action)
            pop_obs, pop_r, pop_term, pop_trunc, _ = case.pop_env.step(action)
            jax_obs, state, jax_r, jax_term, _ = step_env(
                step_key, state, case.action_to_jax(action), params
            )
            jax_trunc = is_truncated(state, params)
            where = f"episode {episode} step {t} action {action}"
            if case.compare_obs:
                _assert_obs_close(case.obs_to_array(pop_obs), jax_obs, case.atol, where)
            np.testing.assert_allclose(float(jax_r), float(pop_r), atol=case.atol,
                                       err_msg=f"{where}: reward differs")
            assert bool(jax_term) == bool(pop_term), f"{where}: terminated {jax_term} vs {pop_term}"
            # A terminal step is never also a truncation in rlmem (types.py convention).
            pop_trunc_only = bool(pop_trunc) and not bool(pop_term)
            jax_trunc_only = bool(jax_trunc) and not bool(jax_term)
            assert jax_trunc_only == pop_trunc_only, (
                f"{where}: truncated {jax_trunc} vs {pop_trunc}")
            if case.after_step is not None:
                case.after_step(case.pop_env, state)
            steps += 1
            if pop_term or pop_trunc:
                break
        else:
            raise AssertionError(f"episode {episode} did not end within {max_steps} steps")
    return steps


def scan_rollout(env: Any, params: Any, key: jax.Array, policy: Callable[[Any], jax.Array],
                 num_steps: int) -> dict[str, jax.Array]:
    """One episode from `reset_env`, `num_steps` steps of `step_env` (no auto-reset).

    `policy(state) -> action` sees the JAX state (oracle policies read the hidden deck).
    Returns `[num_steps]` arrays `reward`, `terminated`, `truncated` and the observations
    `obs` (leaves `[num_steps, ...]`, the observation after each step) plus `reset_obs`
    and `reset_state`.
    """

    def body(state, step_key):
        obs, state, reward, terminated, _ = env.step_env(step_key, state, policy(state), params)
        truncated = env.is_truncated(state, params)
        return state, {"obs": obs, "reward": reward, "terminated": terminated,
                       "truncated": truncated}

    @jax.jit
    def run(key):
        reset_key, key = jax.random.split(key)
        reset_obs, state = env.reset_env(reset_key, params)
        _, out = jax.lax.scan(body, state, jax.random.split(key, num_steps))
        return {"reset_obs": reset_obs, "reset_state": state, **out}

    return run(key)


def guide_sampler(pop_env: Any, p_smart: float, smart: Callable[[np.random.Generator], Any]):
    """Make `pop_env.action_space.sample()` return `smart(rng)` with probability `p_smart`
    and a uniform action otherwise, drawing from the space's own `np_random` (so a seeded
    episode stays reproducible). Used to steer random play into wins."""
    space = pop_env.action_space
    uniform = space.sample

    def sample():
        rng = space.np_random
        if rng.random() >= p_smart:
            return uniform()
        return smart(rng)

    space.sample = sample


RESET_BATCH = 64  # one batch size everywhere, so each env's batched reset compiles once


def batched_resets(envs: dict[str, Any]) -> Callable[..., tuple[Any, Any]]:
    """Batched `reset_env` for distribution tests, compiled once per env.

    Returns `resets(name, seed, num_batches=1) -> (obs, state)`: `num_batches *
    RESET_BATCH` resets of `envs[name]` under its default params, numpy leaves with a
    leading batch axis; batch `i` uses the keys split from `PRNGKey(seed + i)`.
    """
    reset = {name: jax.jit(jax.vmap(env.reset_env, in_axes=(0, None)))
             for name, env in envs.items()}

    def resets(name: str, seed: int, num_batches: int = 1) -> tuple[Any, Any]:
        env = envs[name]
        # Same key shapes for every call, so the eager key ops compile once too.
        keys = [jax.random.split(jax.random.PRNGKey(seed + i), RESET_BATCH)
                for i in range(num_batches)]
        outs = [reset[name](k, env.default_params) for k in keys]
        return jax.tree.map(lambda *x: np.concatenate(x), *outs)

    return resets


def episode_length(terminated: Any, truncated: Any) -> int:
    """Steps up to and including the first `terminated | truncated`; raises if none."""
    done = np.asarray(terminated) | np.asarray(truncated)
    if not done.any():
        raise AssertionError("episode never ended")
    return int(np.argmax(done)) + 1


def deal_state_from_popgym(pop_env: Any, params: Any) -> deck.DealState:
    """`Lockstep.state_from_popgym` of the single-deal card games (`deck.CardGame`)."""
    return deck.DealState(time=jnp.int32(0),
                          cards=jnp.asarray(deck.deal_order_from_popgym(pop_env.deck.idx)))


# -- the control tasks (CartPole, Pendulum): popgym integrates in float64, JAX in float32 --


class RecordResetObs:
    """Mixin for a popgym env: remembers the last reset observation (popgym keeps no
    record of the reset noise, which the JAX state carries)."""

    def reset(self, *, seed=None, options=None):
        obs, info = super().reset(seed=seed, options=options)
        self.reset_obs = obs
        return obs, info


class FixedNormals:
    """Stands in for `np_random` for one step: `normal(loc, scale)` returns
    `loc + scale * z` with `z` the standard normals JAX drew."""

    def __init__(self, z):
        self.z = np.asarray(z, np.float64)

    def normal(self, loc, scale):
        return loc + np.asarray(scale) * self.z


def copy_physics_before_step(noisy: bool) -> Callable[..., None]:
    """A `Lockstep.before_pop_step` for the control tasks.

    Copies the JAX physics (float32, exact in float64) into popgym's `state`, so both take
    one step from the same state and rounding drift cannot accumulate; for a noisy variant
    it also makes popgym draw the Gaussian noise JAX draws from the step key.
    """

    def before_pop_step(pop, key, state, action):
        pop.state = np.asarray(state.physics, np.float64)
        if noisy:
            pop.np_random = FixedNormals(jax.random.normal(key, (2,)))

    return before_pop_step
