"""The unrolled threefry (`rlmem.envs.threefry`) returns exactly jax's keys."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlmem.envs import threefry


@pytest.mark.parametrize("seed", [0, 7, 2 ** 31 - 1])
def test_same_keys_as_jax_random(seed):
    key = jax.random.PRNGKey(seed)
    ids = jnp.arange(300)
    np.testing.assert_array_equal(threefry.fold_in(key, ids),
                                  jax.vmap(jax.random.fold_in, (None, 0))(key, ids))
    np.testing.assert_array_equal(threefry.fold_in(key, ids.reshape(3, 100)),
                                  threefry.fold_in(key, ids).reshape(3, 100, 2))
    for num in (1, 2, 5, 1024):
        np.testing.assert_array_equal(threefry.split(key, num), jax.random.split(key, num))
        np.testing.assert_array_equal(threefry.split_part(key, num - 1, num),
                                      jax.random.split(key, num)[num - 1])
    # Under jit and vmap too.
    keys = jax.random.split(key, 4)
    np.testing.assert_array_equal(
        jax.jit(jax.vmap(lambda k: threefry.split(k, 3)))(keys),
        jax.vmap(lambda k: jax.random.split(k, 3))(keys))


def test_other_key_types_go_through_jax_random():
    for key in (jax.random.key(3), jax.random.key(3, impl="rbg")):
        np.testing.assert_array_equal(
            jax.random.key_data(threefry.fold_in(key, jnp.arange(4))),
            jax.random.key_data(jax.vmap(jax.random.fold_in, (None, 0))(key, jnp.arange(4))))
        np.testing.assert_array_equal(jax.random.key_data(threefry.split_part(key, 1)),
                                      jax.random.key_data(jax.random.split(key)[1]))
