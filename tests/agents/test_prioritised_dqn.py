"""Prioritised replay inside DQN: the weighted loss against numpy, and one update's
priority writes against priorities recomputed from the batch's own TD errors, grouped by
the transitions' origin tags (not by the sampler's bookkeeping)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlmem.agents.base import Rollout
from rlmem.agents.batching import SegmentBatching, TapeBatching
from rlmem.agents.dqn import DQN
from rlmem.agents.networks import NetworkSettings
from rlmem.agents.td_loss import td_loss
from rlmem.data import priority as pr
from rlmem.data import sum_tree as sumtree
from rlmem.memory import make_memory
from rlmem.types import Transition
from tests.data.reference import make_chunk, make_stream

E, T, ALPHA, ETA = 2, 40, 0.8, 0.9


def test_weighted_td_loss_matches_numpy():
    rng = np.random.default_rng(0)
    m, a = 12, 3
    q, q_on, q_tg = (rng.normal(size=(m, a)).astype(np.float32) for _ in range(3))
    tr = Transition(obs=jnp.zeros((m, 1)), action=jnp.asarray(rng.integers(0, a, m)),
                    reward=jnp.asarray(rng.normal(size=m), jnp.float32),
                    next_obs=jnp.zeros((m, 1)), terminated=jnp.asarray(rng.random(m) < 0.2),
                    truncated=jnp.zeros(m, bool), start=jnp.zeros(m, bool),
                    mask=jnp.asarray(rng.random(m) < 0.8))
    w = rng.uniform(0.1, 1, m).astype(np.float32)
    loss, metrics = td_loss(jnp.asarray(q), jnp.asarray(q_on), jnp.asarray(q_tg), tr, 0.9,
                            weights=jnp.asarray(w))
    best = q_on.argmax(1)
    target = np.asarray(tr.reward) + 0.9 * (1 - np.asarray(tr.terminated)) * q_tg[
        np.arange(m), best]
    err = target - q[np.arange(m), np.asarray(tr.action)]
    huber = np.where(np.abs(err) <= 1, 0.5 * err**2, np.abs(err) - 0.5)
    mask = np.asarray(tr.mask)
    np.testing.assert_allclose(float(loss), (w * huber)[mask].sum() / mask.sum(), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(metrics["td_steps"]), np.where(mask, np.abs(err), 0),
                               rtol=1e-5)
    with pytest.raises(ValueError, match="per_transition"):
        td_loss(jnp.asarray(q), jnp.asarray(q_on), jnp.asarray(q_tg), tr, 0.9,
                reduction="mean_abs", weights=jnp.asarray(w))


def filled(algo: DQN, seed: int = 0):
    """A DQN state whose store holds 3 rollouts of tagged random episodes."""
    state = algo.init(jax.random.key(seed))
    flags = make_stream(np.random.default_rng(seed), E, 3 * T, 0.12)
    observe = jax.jit(algo.observe)
    for t0 in range(0, 3 * T, T):
        chunk, _ = make_chunk(*flags, t0, t0 + T)
        chunk = chunk.replace(obs=chunk.obs / 50.0, next_obs=chunk.next_obs / 50.0)
        state = observe(state, Rollout(jax.tree.map(jnp.asarray, chunk), {}))
    return state


# The segment arm is marked slow: its mapping (one row per draw) is also exercised end to
# end by tests/test_resume.py's prioritised run; the tape's episode runs are the subtle one.
@pytest.mark.parametrize("batching", [
    TapeBatching(),
    pytest.param(SegmentBatching(6, burn_in=2, period=3), marks=pytest.mark.slow),
], ids=["tape", "segment"])
def test_update_writes_r2d2_priorities_of_the_drawn_units(batching):
    algo = DQN(make_memory("ffm", trace_size=4, context_size=2, output_size=8), 2, 3,
               batching=batching, num_envs=E, buffer_capacity=4 * E * T, batch_size=36,
               network=NetworkSettings(hidden_size=8), random_epochs=0, priority="td",
               priority_alpha=ALPHA, priority_eta=ETA)
    state = filled(algo)
    key = jax.random.key(7)
    new, _ = jax.jit(algo.update)(state, key)

    # The same batch, its TD errors, grouped by where each transition came from.
    batch, carry, draws = algo.batching.sample_prioritised(state.store, key, algo.batch_size)
    _, metrics = algo.loss(state.params, state.target_params, batch, carry,
                           jnp.ones(draws.unit.shape))
    td = np.asarray(metrics["td_steps"])
    c = state.store.stream_capacity
    if isinstance(batching, TapeBatching):
        tags, mask = np.asarray(batch.obs) * 50, np.asarray(batch.mask)
        group = np.cumsum(np.asarray(batch.start)) - 1  # one run per episode laid down
        first = {g: tags[group == g][0] for g in np.unique(group)}
    else:
        tags = np.asarray(batch.obs[:, 2:]).reshape(-1, 2) * 50
        mask = np.asarray(batch.mask[:, 2:]).reshape(-1)
        group = np.repeat(np.arange(batch.obs.shape[0]), 6)  # one row per sequence
        first = {g: np.asarray(batch.obs[g, 2]) * 50 for g in np.unique(group)}
    want: dict[int, list[float]] = {}
    for g, (s, t) in first.items():
        mine = td[(group == g) & mask]
        if mine.size:
            prio = ETA * mine.max() + (1 - ETA) * mine.mean()
            want.setdefault(int(round(s)) * c + int(round(t)) % c, []).append(
                (prio + pr.PRIORITY_EPS) ** ALPHA)
    assert want, "the batch should hold learning transitions"
    before = np.asarray(sumtree.leaf_values(state.store.priorities.tree, jnp.arange(E * c)))
    after = np.asarray(sumtree.leaf_values(new.store.priorities.tree, jnp.arange(E * c)))
    for leaf, values in want.items():
        assert np.isclose(after[leaf], values, rtol=1e-4).any(), (leaf, after[leaf], values)
    others = np.setdiff1d(np.arange(E * c), list(want))
    np.testing.assert_array_equal(after[others], before[others])


def test_importance_weights_scale_the_gradient():
    """Doubling one transition's weight changes the loss as the weighted mean says."""
    rng = np.random.default_rng(1)
    m, a = 6, 2
    q = jnp.asarray(rng.normal(size=(m, a)), jnp.float32)
    tr = Transition(obs=jnp.zeros((m, 1)), action=jnp.zeros(m, jnp.int32),
                    reward=jnp.ones(m), next_obs=jnp.zeros((m, 1)),
                    terminated=jnp.ones(m, bool), truncated=jnp.zeros(m, bool),
                    start=jnp.zeros(m, bool), mask=jnp.ones(m, bool))
    w = jnp.ones(m).at[0].set(2.0)
    grad = jax.grad(lambda q: td_loss(q, q, q, tr, 0.9, weights=w)[0])(q)
    plain = jax.grad(lambda q: td_loss(q, q, q, tr, 0.9)[0])(q)
    np.testing.assert_allclose(np.asarray(grad[0]), 2 * np.asarray(plain[0]), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(grad[1:]), np.asarray(plain[1:]), rtol=1e-6)
