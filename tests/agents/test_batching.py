"""The DQN loss through both batching modes against prefix-by-prefix references.

* TBB: the loss on a sampled tape equals the same loss computed episode by episode, each
  Q-value from a fresh run over its episode prefix (and the next-state Q from that prefix
  followed by `next_obs`: the whole episode reaches the target, first observation included).
* SBB: the loss on sampled segments equals a hand-built computation over each padded row
  (zero state, or stored state with burn-in), and no gradient flows through burn-in steps.

Real memory models, the real store and the real samplers throughout.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlmem.agents.batching import SegmentBatching
from rlmem.agents.dqn import DQN
from rlmem.agents.networks import NetworkSettings
from rlmem.data.segment_sampler import sample_segments
from rlmem.data.tape_sampler import sample_tape
from rlmem.memory import make_memory
from tests.agents import reference as ref

F, A, E, T = 4, 3, 2, 30
GAMMA = 0.9
MEMORIES = {
    "ffm": dict(trace_size=4, context_size=2, output_size=16),
    "gru": dict(output_size=16),
}


def build(name: str, **kw) -> DQN:
    return DQN(make_memory(name, **MEMORIES[name]), F, A, num_envs=E, buffer_capacity=2 * T,
               gamma=GAMMA, network=NetworkSettings(hidden_size=16), **kw)


@pytest.fixture(scope="module", params=sorted(MEMORIES))
def tape_setup(request):
    algo = build(request.param, batch_size=24)
    init = jax.jit(algo.init)
    params = init(jax.random.key(0)).params
    target = init(jax.random.key(1)).params  # a different target net: Double DQN

    @jax.jit
    def sample(streams, key):
        return sample_tape(ref.filled_store(streams, 2 * T), key, algo.batch_size).transition

    return algo, params, target, jax.jit(algo.loss), ref.prefix_runner(algo.network), sample


def reference_q(runner, params, network, seqs, start0, carries=None):
    if carries is None:
        carries = jax.tree.map(
            lambda x: jnp.broadcast_to(x, (len(seqs),) + x.shape), network.initialize_carry()
        )
    return np.asarray(runner(params, jnp.asarray(seqs), jnp.asarray(start0), carries))


@settings(max_examples=8)
@given(seed=st.integers(0, 2**16), p_end=st.sampled_from([0.05, 0.2, 0.5]))
def test_tape_loss_equals_episode_by_episode(tape_setup, seed, p_end):
    algo, params, target, loss_fn, runner, sample = tape_setup
    streams = ref.random_streams(np.random.default_rng(seed), E, T, F, A, p_end)
    batch = sample(streams, jax.random.key(seed))
    loss, _ = loss_fn(params, target, batch, None)

    b = jax.tree.map(np.asarray, batch)
    starts = list(np.flatnonzero(b.start)) + [len(b.start)]
    assert starts[0] == 0
    seqs, offsets = [], []
    for first, nxt in zip(starts[:-1], starts[1:], strict=True):
        s, o = ref.prefix_sequences(b.obs, b.next_obs, first, nxt - 1, len(b.start) + 1)
        seqs.append(s)
        offsets.append(o)
    seqs, offsets = np.concatenate(seqs), np.concatenate(offsets)
    rows = np.arange(len(seqs))
    ones = np.ones(len(seqs), bool)
    q_online = reference_q(runner, params, algo.network, seqs, ones)
    q_target = reference_q(runner, target, algo.network, seqs, ones)
    expected = ref.double_dqn_loss(
        q_online[rows, offsets], q_online[rows, offsets + 1], q_target[rows, offsets + 1],
        b.action, b.reward, b.terminated, b.mask, GAMMA,
    )
    np.testing.assert_allclose(float(loss), expected, rtol=2e-5, atol=1e-6)


# The paper's SBB (zero state, no burn-in) and R2D2's (stored state + burn-in).
SEGMENT_CASES = [(0, "zeros"), (3, "stored")]


@pytest.fixture(scope="module", params=SEGMENT_CASES, ids=lambda c: f"burn{c[0]}-{c[1]}")
def segment_setup(request):
    burn_in, initial_state = request.param
    algo = build("ffm", batch_size=20, batching=SegmentBatching(5, burn_in, initial_state))
    init = jax.jit(algo.init)
    state = init(jax.random.key(0))
    target = init(jax.random.key(1)).params
    streams = ref.random_streams(np.random.default_rng(7), E, T, F, A, p_end=0.1)
    carries = None
    if algo.stores_carry:
        carries = jax.jit(ref.acted_carries, static_argnums=0)(algo, state, streams)
    store = jax.jit(ref.filled_store, static_argnums=1)(streams, 2 * T, carries)
    runner = ref.prefix_runner(algo.network)

    @jax.jit
    def sample(key):  # the algorithm's batch and the sampler's raw output, same draw
        kind = algo.batching
        raw = sample_segments(store, key, kind.num_segments(algo.batch_size), kind.segment_length,
                              kind.burn_in)
        return algo.sample(store, key), raw

    return algo, state.params, target, sample, jax.jit(algo.loss), runner


@pytest.mark.parametrize("seed", [0, 1])
def test_segment_loss_equals_hand_built_rows(segment_setup, seed):
    algo, params, target, sample, loss_fn, runner = segment_setup
    (batch, carry), raw = sample(jax.random.key(seed))
    loss, _ = loss_fn(params, target, batch, carry)

    b = jax.tree.map(np.asarray, raw.transition)
    learn = np.asarray(raw.learn_mask)
    np.testing.assert_array_equal(np.asarray(batch.mask), learn)
    width = b.obs.shape[1] + 1
    seqs, offsets, start0, rows_of, picked = [], [], [], [], []
    for n in range(b.obs.shape[0]):
        valid = np.flatnonzero(b.mask[n])
        first = valid[0]
        assert np.all(np.diff(valid) == 1), "valid data is one run per row"
        for j in np.flatnonzero(learn[n]):
            s, o = ref.prefix_sequences(b.obs[n], b.next_obs[n], first, j, width)
            seqs.append(s[-1])
            offsets.append(o[-1])
            start0.append(b.start[n, first])
            rows_of.append(n)
            picked.append((n, j))
    seqs, offsets = np.stack(seqs), np.asarray(offsets)
    rows_of = np.asarray(rows_of)
    if algo.stores_carry:
        carries = jax.tree.map(lambda c: c[rows_of], raw.initial_extras["carry"])
    else:
        carries = None
    idx = np.arange(len(seqs))
    q_online = reference_q(runner, params, algo.network, seqs, np.asarray(start0), carries)
    q_target = reference_q(runner, target, algo.network, seqs, np.asarray(start0), carries)
    n_idx, j_idx = np.asarray(picked).T
    expected = ref.double_dqn_loss(
        q_online[idx, offsets], q_online[idx, offsets + 1], q_target[idx, offsets + 1],
        b.action[n_idx, j_idx], b.reward[n_idx, j_idx], b.terminated[n_idx, j_idx],
        np.ones(len(idx)), GAMMA,
    )
    np.testing.assert_allclose(float(loss), expected, rtol=2e-5, atol=1e-6)


def test_burn_in_steps_get_no_gradient(segment_setup):
    algo, params, target, sample, _, _ = segment_setup
    (batch, carry), _ = sample(jax.random.key(3))

    def loss_of_obs(obs):
        return algo.loss(params, target, batch.replace(obs=obs), carry)[0]

    grad = np.abs(np.asarray(jax.jit(jax.grad(loss_of_obs))(batch.obs))).sum(-1)  # [N, W]
    burn = algo.batching.burn_in
    assert np.all(grad[:, :burn] == 0.0)
    assert np.all(grad[:, burn:].sum(0)[:1] > 0.0)  # the first trained step does learn


def test_segment_batching_period_reaches_the_sampler():
    """`SegmentBatching(period=P)` replays sequences starting every P steps: on
    small_store's 5-step episode (stream 2) a start at offset 2 appears, which aligned
    L = 3 segments never have; the label names the period, aligned ones keep theirs."""
    from tests.data.reference import small_store

    store, _ = small_store()
    overlapping = SegmentBatching(3, period=2)
    assert overlapping.label == "segment_l3_p2" and SegmentBatching(3, period=3).label == (
        "segment_l3")
    assert SegmentBatching(20, burn_in=10, initial_state="stored", period=10).label == (
        "segment_l20_b10_p10_stored")  # batching=r2d2_l20: nothing shared with segment_l20
    firsts = set()
    for key in jax.random.split(jax.random.key(0), 20):
        batch, carry = jax.jit(overlapping.sample, static_argnums=2)(store, key, 30)
        assert carry is None and batch.obs.shape[:2] == (10, 3)
        firsts |= set(np.asarray(batch.obs[:, 0, 0] * 100 + batch.obs[:, 0, 1]).tolist())
    assert 202.0 in firsts and 204.0 in firsts
    with pytest.raises(ValueError, match=r"batching.period=4 .* \[1, batching.segment_length=3\]"):
        SegmentBatching(3, period=4)
