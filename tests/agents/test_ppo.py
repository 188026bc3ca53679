"""Recurrent PPO: act-time values, GAE through the memoroid, units that keep time intact,
a behaviour replay that makes the first ratio 1 in every mode, and a contextual bandit it
must solve. ppo_loss itself is checked against numpy in test_ppo_loss_reference.py."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlmem.agents.base import Rollout
from rlmem.agents.batching import TAPE, SegmentBatching
from rlmem.agents.networks import NetworkSettings
from rlmem.agents.optim import OptimSettings
from rlmem.agents.ppo import PPO
from rlmem.memory import make_memory
from tests.agents import reference as ref

F, A, E, T, L = 4, 3, 2, 12, 4
GAMMA, LAM = 0.9, 0.8
FFM = dict(trace_size=4, context_size=2, output_size=16)


def build(**kw) -> PPO:
    kw = dict(update_epochs=2, num_minibatches=2) | kw
    batching, initial_state = kw.pop("batching", "tape"), kw.pop("initial_state", "zeros")
    kind = SegmentBatching(L, initial_state=initial_state) if batching == "segment" else TAPE
    return PPO(make_memory("ffm", **FFM), F, A, gamma=GAMMA, gae_lambda=LAM,
               network=NetworkSettings(hidden_size=16), batching=kind, **kw)


def acted_rollout(algo: PPO, state, streams) -> Rollout:
    """Act step by step along `streams`' observations; actions come from the policy."""

    def step(carry, xs):
        obs, start, key = xs
        action, carry, extras = algo.act(state, obs, start, carry, key)
        return carry, (action, extras)

    keys = jax.random.split(jax.random.key(9), T)
    xs = (jnp.swapaxes(streams.obs, 0, 1), jnp.swapaxes(streams.start, 0, 1), keys)
    _, (action, extras) = jax.lax.scan(step, algo.initial_carry(E), xs)
    env_major = lambda x: jnp.swapaxes(x, 0, 1)  # noqa: E731
    tr = jax.tree.map(jnp.asarray, streams).replace(action=env_major(action))
    return Rollout(transition=tr, extras=jax.tree.map(env_major, extras))


@pytest.fixture(scope="module")
def setup():
    algo = build()
    state = jax.jit(algo.init)(jax.random.key(0))
    streams = ref.random_streams(np.random.default_rng(3), E, T, F, A, p_end=0.2)
    rollout = jax.jit(acted_rollout, static_argnums=0)(algo, state, streams)
    return algo, state, rollout


def numpy_gae(reward, value, next_value, terminated, truncated):
    adv = np.zeros_like(reward)
    following = 0.0
    for t in reversed(range(len(reward))):
        delta = reward[t] + GAMMA * (1 - terminated[t]) * next_value[t] - value[t]
        last = terminated[t] or truncated[t] or t == len(reward) - 1
        following = delta + (0.0 if last else GAMMA * LAM * following)
        adv[t] = following
    return adv


def test_values_and_gae_match_episode_prefix_references(setup):
    algo, state, rollout = setup
    tr = jax.tree.map(np.asarray, rollout.transition)
    runner = ref.prefix_runner(algo.network)
    adv, target = jax.jit(algo.advantages)(state.params, rollout)
    for e in range(E):
        starts = list(np.flatnonzero(tr.start[e])) + [T]
        seqs, offsets = zip(*[
            ref.prefix_sequences(tr.obs[e], tr.next_obs[e], a, b - 1, T + 1)
            for a, b in zip(starts[:-1], starts[1:], strict=True)
        ], strict=True)
        seqs, offsets = np.concatenate(seqs), np.concatenate(offsets)
        carries = jax.tree.map(lambda x: jnp.broadcast_to(x, (T,) + x.shape),
                               algo.network.initialize_carry())
        _, value = runner(state.params, jnp.asarray(seqs), jnp.ones(T, bool), carries)
        value = np.asarray(value)
        v, nv = value[np.arange(T), offsets], value[np.arange(T), offsets + 1]
        np.testing.assert_allclose(rollout.extras["value"][e], v, rtol=1e-5, atol=1e-5)
        expected = numpy_gae(tr.reward[e], v, nv, tr.terminated[e], tr.truncated[e])
        np.testing.assert_allclose(adv[e], expected, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(target[e], expected + v, rtol=1e-4, atol=1e-5)


MODES = [("tape", "zeros"), ("segment", "stored"), ("segment", "zeros")]


def take(tree, index):
    """Rows `index` of every leaf."""
    return jax.tree.map(lambda x: x[index], tree)


@pytest.mark.parametrize("batching, initial_state", MODES)
def test_units_keep_time_order_and_hold_the_replayed_behaviour(setup, batching, initial_state):
    _, state, rollout = setup
    algo = build(batching=batching, initial_state=initial_state)
    units, carry = jax.jit(algo.make_units)(state.params, rollout)
    tr = rollout.transition
    if batching == "tape":
        np.testing.assert_array_equal(units.transition.obs, tr.obs)
    else:  # unit e * (T / L) + k is steps [kL, (k+1)L) of stream e
        for u in range(E * T // L):
            e, k = divmod(u, T // L)
            np.testing.assert_array_equal(units.transition.obs[u], tr.obs[e, k * L:(k + 1) * L])
            if carry is not None:
                stored = rollout.extras["carry"].trace[e, k * L]
                np.testing.assert_array_equal(carry.trace[u], stored)

    # The behaviour log-prob and value are each unit replayed on its own from its carry
    # (plain model calls, one unit at a time).
    apply = jax.jit(algo.network.apply)
    for u in range(units.transition.obs.shape[0]):
        c = algo.network.initialize_carry() if carry is None else take(carry, u)
        (logits, value), _ = apply(state.params, units.transition.obs[u],
                                   units.transition.start[u], c)
        log_p = jax.nn.log_softmax(logits)[np.arange(units.log_prob.shape[1]),
                                           units.transition.action[u]]
        np.testing.assert_allclose(units.log_prob[u], log_p, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(units.value[u], value, rtol=1e-5, atol=1e-6)

    acting = rollout.extras["log_prob"].reshape(units.log_prob.shape)
    if initial_state == "zeros" and batching == "segment":
        # Truncated segments forget what came before them: the replay is not the acting
        # policy, which is why the behaviour must be recomputed rather than taken from act.
        assert not np.allclose(units.log_prob, acting, atol=1e-5)
    else:  # the stored state makes the replay equal acting
        np.testing.assert_allclose(units.log_prob, acting, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(units.value, rollout.extras["value"].reshape(
            units.value.shape), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("batching, initial_state", MODES)
def test_ratio_is_one_and_clips_inactive_before_the_first_step(setup, batching, initial_state):
    # With clip_eps = 1e-6, clip_frac == 0 says |ratio - 1| <= 1e-6 for every transition;
    # the same tiny clip_eps makes the value clip bind on any value change above 1e-6.
    _, state, rollout = setup
    eps = 1e-6
    # One epoch of one minibatch: learn's only step is evaluated at the pre-update
    # parameters, over all units in shuffled order.
    algo = build(batching=batching, initial_state=initial_state, clip_eps=eps,
                 update_epochs=1, num_minibatches=1)
    _, metrics = jax.jit(algo.learn)(state, rollout, jax.random.key(4))
    units, carry = jax.jit(algo.make_units)(state.params, rollout)
    unclipped_value_loss = 0.5 * np.mean((np.asarray(units.value) - units.target) ** 2)
    assert float(metrics["clip_frac"]) == 0.0
    assert float(metrics["approx_kl"]) < 1e-10
    # ratio 1 leaves the surrogate at -mean(normalised advantage) = 0
    assert abs(float(metrics["policy_loss"])) < 1e-5
    np.testing.assert_allclose(metrics["value_loss"], unclipped_value_loss, rtol=1e-5)

    # The same on smaller minibatches (a different vmap width than the behaviour replay).
    loss = jax.jit(algo.loss)
    order = np.random.default_rng(0).permutation(units.log_prob.shape[0])
    for group in np.array_split(order, 2):
        _, m = loss(state.params, take(units, group),
                    None if carry is None else take(carry, group))
        assert float(m["clip_frac"]) == 0.0
        assert float(m["approx_kl"]) < 1e-10


def test_segment_learn_runs_every_minibatch(setup):
    # (tape-mode learn runs in the bandit test below)
    _, state, rollout = setup
    algo = build(batching="segment", initial_state="stored")
    new, metrics = jax.jit(algo.learn)(state, rollout, jax.random.key(1))
    assert int(new.updates) == 2 * 2  # update_epochs x num_minibatches
    assert all(np.isfinite(float(v)) for v in metrics.values())
    assert float(metrics["entropy"]) > 0.5


def test_bad_shapes_and_settings_raise(setup):
    _, state, rollout = setup
    small = NetworkSettings(hidden_size=16)
    with pytest.raises(ValueError, match=r"segment_length=5 must divide the rollout length"):
        PPO(make_memory("ffm", **FFM), F, A, batching=SegmentBatching(5),
            network=small).make_units(state.params, rollout)
    with pytest.raises(ValueError, match=r"num_minibatches=3 must divide"):
        PPO(make_memory("ffm", **FFM), F, A, num_minibatches=3, network=small).learn(
            state, rollout, jax.random.key(0)
        )
    with pytest.raises(ValueError, match="clip_eps must be > 0"):
        build(clip_eps=0.0)


def test_solves_a_contextual_bandit():
    """One-step episodes: observation = one-hot context, reward 1 for action == context."""
    n_envs, steps, iterations = 16, 4, 30
    algo = PPO(make_memory("mlp", output_size=16), A, A, network=NetworkSettings(hidden_size=16),
               optim=OptimSettings(learning_rate=1e-2, warmup_updates=0, max_grad_norm=0.5,
                             adam_eps=1e-5),
               update_epochs=2, num_minibatches=2, ent_coef=0.0)

    def iteration(state, key):
        ctx_key, act_key, learn_key = jax.random.split(key, 3)
        context = jax.random.randint(ctx_key, (steps, n_envs), 0, A)
        obs = jax.nn.one_hot(context, A)
        ones = jnp.ones((steps, n_envs), bool)
        carry0 = algo.initial_carry(n_envs)
        keys = jax.random.split(act_key, steps)
        action, _, extras = jax.vmap(lambda o, s, k: algo.act(state, o, s, carry0, k))(
            obs, ones, keys
        )
        reward = (action == context).astype(jnp.float32)
        tr = ref.Transition(obs=obs, action=action, reward=reward, next_obs=obs,
                            terminated=ones, truncated=~ones, start=ones, mask=ones)
        rollout = Rollout(jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), tr),
                          jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), extras))
        state, _ = algo.learn(state, rollout, learn_key)
        return state, reward.mean()

    @jax.jit
    def train(key):
        state = algo.init(key)
        return jax.lax.scan(iteration, state, jax.random.split(key, iterations))

    state, reward = train(jax.random.key(0))
    eye = jnp.eye(A)
    greedy, _ = algo.act_greedy(state, eye, jnp.ones(A, bool), algo.initial_carry(A))
    np.testing.assert_array_equal(greedy, np.arange(A))
    assert float(reward[-5:].mean()) > float(reward[:3].mean()) + 0.2
