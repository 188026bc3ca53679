"""Networks: acting one step at a time equals running the whole stream; the dueling head."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlmem.agents.networks import (
    actor_critic,
    broadcast_carry,
    init_params,
    q_network,
    step_network,
)
from rlmem.memory import make_memory
from tests.agents import reference as ref

F, A, E, T = 4, 3, 3, 12
MEMORIES = {
    "ffm": dict(trace_size=4, context_size=2, output_size=16),
    "gru": dict(output_size=16),
    "mlp": dict(output_size=16),
}


@pytest.mark.parametrize("name", sorted(MEMORIES))
def test_acting_step_by_step_equals_the_whole_stream(name):
    net = q_network(make_memory(name, **MEMORIES[name]), A, hidden_size=16)
    params = jax.jit(init_params, static_argnums=(0, 2))(net, jax.random.key(0), F)
    streams = ref.random_streams(np.random.default_rng(0), E, T, F, A, p_end=0.25)

    @jax.jit
    def both(obs, start):
        def step(carry, xs):
            q, carry = step_network(net, params, xs[0], xs[1], carry)
            return carry, q

        _, q_steps = jax.lax.scan(step, broadcast_carry(net, E), (obs.swapaxes(0, 1),
                                                                   start.swapaxes(0, 1)))
        q_full, _ = jax.vmap(lambda o, s: net.apply(params, o, s, net.initialize_carry()))(
            obs, start
        )
        return q_steps.swapaxes(0, 1), q_full

    q_steps, q_full = both(jnp.asarray(streams.obs), jnp.asarray(streams.start))
    assert q_steps.shape == (E, T, A)
    np.testing.assert_allclose(q_steps, q_full, rtol=1e-5, atol=1e-6)


def test_dueling_head_centres_the_advantages():
    net = q_network(make_memory("mlp", output_size=8), A, hidden_size=8)
    params = jax.jit(init_params, static_argnums=(0, 2))(net, jax.random.key(1), F)
    obs = jax.random.normal(jax.random.key(2), (5, F))
    start = jnp.ones(5, bool)
    apply = jax.jit(lambda p: net.apply(p, obs, start, net.initialize_carry())[0])
    q0 = apply(params)
    shift = jnp.array([1.0, -2.0, 4.0])
    bumped = jax.tree_util.tree_map_with_path(
        lambda path, x: x + shift if "advantage" in jax.tree_util.keystr(path)
        and "bias" in jax.tree_util.keystr(path) else x,
        params,
    )
    q1 = apply(bumped)
    np.testing.assert_allclose(q1 - q0, jnp.broadcast_to(shift - shift.mean(), q0.shape),
                               atol=1e-5)
    # Small last layers: the initial Q-values are near zero.
    assert float(jnp.abs(q0).max()) < 0.2


def test_encoder_layer_norm_has_no_affine_and_actor_critic_shapes():
    net = actor_critic(make_memory("gru", output_size=8), A, hidden_size=8)
    params = jax.jit(init_params, static_argnums=(0, 2))(net, jax.random.key(0), F)
    encoder = params["params"]["encoder"]
    assert set(encoder) == {"Dense_0"}, "LayerNorm without scale/bias owns no parameters"
    (logits, value), carry = jax.eval_shape(
        net.apply, params, jnp.ones((T, F)), jnp.ones(T, bool), net.initialize_carry()
    )
    assert logits.shape == (T, A) and value.shape == (T,) and carry.shape == (8,)
