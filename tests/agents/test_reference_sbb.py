"""The paper's reference SBB rules (`algo.td_loss=mean_abs`, `algo.next_state=segment_restart`)
against independent computations of the reference code's formulas.

* `mean_abs`: `huber(sum(|td| * mask) / sum(mask))` in numpy, on random Q-values and masks.
* `segment_restart`: each row's next-state Q-values recomputed row by row, by running the
  network once over the row's whole `next_obs` sequence (burn-in steps included) from the
  row's initial carry with the row's `start` flags, as the reference code did; the loss is
  then formed in numpy.

Real memory model, store and sampler; the defaults' own references are in test_batching.py.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlmem.agents.batching import TAPE, SegmentBatching
from rlmem.agents.dqn import DQN, td_loss
from rlmem.agents.networks import NetworkSettings
from rlmem.data.segment_sampler import sample_segments
from rlmem.memory import make_memory
from rlmem.types import Transition
from tests.agents import reference as ref

F, A, E, T = 4, 3, 2, 30
GAMMA = 0.9


def reference_mean_abs_loss(q, q_next_online, q_next_target, action, reward, terminated,
                            mask, gamma, delta=1.0):
    """numpy: the reference code's `huber(masked_mean(|error|, mask))`."""
    best = q_next_online.argmax(-1)
    target = reward + gamma * (1.0 - terminated) * q_next_target[np.arange(len(best)), best]
    error = q[np.arange(len(action)), action] - target
    mean_abs = (np.abs(error) * mask).sum() / mask.sum()
    return float(ref.huber(np.asarray(mean_abs), delta))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), size=st.integers(1, 40),
       delta=st.sampled_from([0.05, 1.0, 10.0]), scale=st.sampled_from([0.01, 1.0, 30.0]))
def test_mean_abs_is_huber_of_masked_mean_abs_error(seed, size, delta, scale):
    rng = np.random.default_rng(seed)
    q, q_on, q_tg = (scale * rng.normal(size=(size, A)).astype(np.float32) for _ in range(3))
    action = rng.integers(0, A, size).astype(np.int32)
    reward = rng.normal(size=size).astype(np.float32)
    terminated = rng.random(size) < 0.3
    mask = rng.random(size) < 0.7
    mask[0] = True
    tr = Transition(obs=np.zeros((size, 1)), action=action, reward=reward,
                    next_obs=np.zeros((size, 1)), terminated=terminated,
                    truncated=np.zeros(size, bool), start=np.zeros(size, bool), mask=mask)
    args = (jnp.asarray(q), jnp.asarray(q_on), jnp.asarray(q_tg), jax.tree.map(jnp.asarray, tr))
    loss, metrics = td_loss(*args, GAMMA, delta, reduction="mean_abs")
    expected = reference_mean_abs_loss(q, q_on, q_tg, action, reward, terminated, mask, GAMMA,
                                       delta)
    np.testing.assert_allclose(float(loss), expected, rtol=2e-5, atol=1e-6)
    # The default reduction is a different number: the mean of per-transition Hubers.
    per_step, _ = td_loss(*args, GAMMA, 1.0)
    np.testing.assert_allclose(
        float(per_step),
        ref.double_dqn_loss(q, q_on, q_tg, action, reward, terminated, mask, GAMMA),
        rtol=2e-5, atol=1e-6)
    # Both report the same |TD error|, the quantity mean_abs takes the Huber of.
    assert float(metrics["td_abs"]) == pytest.approx(
        float(td_loss(*args, GAMMA, delta)[1]["td_abs"]))


def build(batching, **kw) -> DQN:
    memory = make_memory("ffm", trace_size=4, context_size=2, output_size=16)
    return DQN(memory, F, A, num_envs=E, buffer_capacity=2 * T, gamma=GAMMA, batch_size=20,
               network=NetworkSettings(hidden_size=16), batching=batching, **kw)


# The reference code's SBB (zero state, no burn-in) and the rule under R2D2's settings.
CASES = [(0, "zeros"), (3, "stored")]


@pytest.fixture(scope="module", params=CASES, ids=lambda c: f"burn{c[0]}-{c[1]}")
def setup(request):
    burn_in, initial_state = request.param
    algo = build(SegmentBatching(5, burn_in, initial_state), td_loss="mean_abs",
                 next_state="segment_restart")
    init = jax.jit(algo.init)
    state = init(jax.random.key(0))
    target = init(jax.random.key(1)).params
    streams = ref.random_streams(np.random.default_rng(11), E, T, F, A, p_end=0.15)
    carries = None
    if algo.stores_carry:
        carries = jax.jit(ref.acted_carries, static_argnums=0)(algo, state, streams)
    store = jax.jit(ref.filled_store, static_argnums=1)(streams, 2 * T, carries)

    @jax.jit
    def sample(key):
        kind = algo.batching
        raw = sample_segments(store, key, kind.num_segments(algo.batch_size),
                              kind.segment_length, kind.burn_in)
        return algo.sample(store, key), raw

    @jax.jit
    def row_q(params, seq, start, carry):  # one whole row: [W, F] -> [W, A]
        return algo.network.apply(params, seq, start, carry)[0]

    return algo, state.params, target, sample, jax.jit(algo.loss), row_q


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_segment_restart_loss_equals_row_by_row_reference(setup, seed):
    algo, params, target, sample, loss_fn, row_q = setup
    (batch, carry), raw = sample(jax.random.key(seed))
    loss, _ = loss_fn(params, target, batch, carry)

    b = jax.tree.map(np.asarray, raw.transition)
    learn = np.asarray(raw.learn_mask)
    burn = algo.batching.burn_in
    q, q_on, q_tg, picked = [], [], [], []
    for n in range(b.obs.shape[0]):
        if algo.stores_carry:
            h = jax.tree.map(lambda c, n=n: c[n], raw.initial_extras["carry"])
        else:
            h = algo.network.initialize_carry()
        q.append(np.asarray(row_q(params, b.obs[n], b.start[n], h))[burn:])
        q_on.append(np.asarray(row_q(params, b.next_obs[n], b.start[n], h))[burn:])
        q_tg.append(np.asarray(row_q(target, b.next_obs[n], b.start[n], h))[burn:])
        picked.append(learn[n, burn:])
    q, q_on, q_tg = (np.concatenate(x) for x in (q, q_on, q_tg))
    mask = np.concatenate(picked)
    rows = lambda x: x[:, burn:].reshape(-1)  # noqa: E731
    expected = reference_mean_abs_loss(q, q_on, q_tg, rows(b.action), rows(b.reward),
                                       rows(b.terminated), mask, GAMMA)
    np.testing.assert_allclose(float(loss), expected, rtol=2e-5, atol=1e-6)


def test_segment_restart_changes_next_state_values_only(setup):
    """Same Q-values of `obs`, other next-state values (the restart drops each segment's
    first observation from every next state of its row)."""
    algo, params, target, sample, _, _ = setup
    (batch, carry), _ = sample(jax.random.key(5))
    prefix = DQN.__new__(DQN)
    prefix.__dict__.update(algo.__dict__, next_state="prefix")
    restart = algo.unroll(params, batch, carry).out_next
    kept = prefix.unroll(params, batch, carry).out_next
    valid = np.asarray(algo.unroll(params, batch, carry).transition.mask)
    assert not np.allclose(np.asarray(restart)[valid], np.asarray(kept)[valid], atol=1e-4)
    np.testing.assert_allclose(algo.unroll(params, batch, carry).out,
                               prefix.unroll(params, batch, carry).out, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(batching=TAPE, next_state="segment_restart"),
     "algo.next_state='segment_restart' needs segment batching"),
    (dict(batching=SegmentBatching(5), next_state="restart"),
     "algo.next_state='restart' is not allowed; allowed: prefix, segment_restart"),
    (dict(batching=TAPE, td_loss="mean"),
     "algo.td_loss='mean' is not allowed; allowed: per_transition, mean_abs"),
])
def test_bad_rules_are_refused_naming_the_key(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        build(**kwargs)
