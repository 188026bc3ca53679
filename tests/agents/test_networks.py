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


def test_conv_encoder_shapes_and_where_it_reads_the_image():
    """`ConvEncoder`: [T, H*W*C + extra] -> [T, hidden]; the leading H*W*C features are the
    image (`rlmem.envs.image_shape`), the rest reach the output too; the networks use it
    when given an `image_shape` and keep the paper's encoder otherwise."""
    from rlmem.agents.networks import CONV_LAYERS, ConvEncoder

    shape, extra = (16, 12, 3), 2
    size = int(np.prod(shape))
    enc = ConvEncoder(8, shape)
    x = jax.random.uniform(jax.random.key(0), (T, size + extra))
    params = enc.init(jax.random.key(1), x)
    y = enc.apply(params, x)
    assert y.shape == (T, 8)
    kernels = [params["params"][f"Conv_{i}"]["kernel"].shape for i in range(len(CONV_LAYERS))]
    assert kernels == [(8, 8, 3, 16), (4, 4, 16, 32), (3, 3, 32, 32)]
    # 16 x 12 -> 4 x 3 -> 2 x 2 -> 1 x 1 ("SAME" padding), x 32 channels, + the extra
    assert params["params"]["Block_0"]["Dense_0"]["kernel"].shape == (32 + extra, 8)
    assert not np.allclose(enc.apply(params, x.at[:, size:].add(1.0)), y)  # extras count
    assert not np.allclose(enc.apply(params, x.at[:, :size].multiply(0.5)), y)
    with pytest.raises(ValueError, match="fewer than the image_shape"):
        enc.init(jax.random.key(1), x[:, : size - 1])

    net = q_network(make_memory("mlp", output_size=8), A, hidden_size=8, image_shape=shape)
    net_params = jax.jit(init_params, static_argnums=(0, 2))(net, jax.random.key(0),
                                                            size + extra)
    assert set(net_params["params"]["encoder"]) == {"Block_0", "Conv_0", "Conv_1", "Conv_2"}
    q, _ = net.apply(net_params, x, jnp.ones(T, bool), net.initialize_carry())
    assert q.shape == (T, A)
    mlp = q_network(make_memory("mlp", output_size=8), A, hidden_size=8)
    mlp_params = jax.eval_shape(lambda k: init_params(mlp, k, F), jax.random.key(0))
    assert set(mlp_params["params"]["encoder"]) == {"Dense_0"}  # the default is unchanged


@pytest.mark.parametrize("kwargs,message", [
    (dict(encoder="cnn"), "encoder must be one of mlp, conv"),
    (dict(encoder="conv"), r"needs image_shape=\(H, W, C\)"),
    (dict(encoder="conv", image_shape=(8, 8)), "three ints"),
    (dict(encoder="conv", image_shape=(8, 0, 3)), "three ints"),
    (dict(image_shape=(8, 8, 3)), "only read by encoder='conv'"),
])
def test_network_settings_refuse_bad_encoders(kwargs, message):
    from rlmem.agents.networks import NetworkSettings

    with pytest.raises(ValueError, match=message):
        NetworkSettings(**kwargs)
    assert NetworkSettings(encoder="conv", image_shape=[8, 8, 3]).image_shape == (8, 8, 3)
