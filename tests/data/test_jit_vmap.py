"""Both samplers compile once per shape and work under vmap over seeds."""

import jax
import jax.numpy as jnp
import numpy as np

from rlmem.data import sample_segments, sample_tape
from tests.data.reference import add_jit, make_chunk, small_store
from tests.data.test_segment_sampler import NUM_SEGMENTS, SETTINGS, sample_all
from tests.data.test_tape_sampler import BATCH, TRACES, sample_both


def test_jit_once_and_vmap_over_seeds():
    store, flags = small_store()
    store2 = add_jit(store, *make_chunk(*flags, 8, 12))
    sample_both(store, jax.random.key(0))
    before = len(TRACES)
    sample_both(store2, jax.random.key(1))
    assert len(TRACES) == before  # a new store and key reuse the compiled sampler
    # vmap over seeds: a stacked store and one key per seed give the unbatched results.
    stores = jax.tree.map(lambda a, b: jnp.stack([a, b]), store, store2)
    keys = jnp.stack([jax.random.key(0), jax.random.key(1)])

    def both_samplers(s, k):  # as sample_both's first and sample_all's second output
        return sample_tape(s, k, BATCH, "episode"), sample_segments(s, k, NUM_SEGMENTS, 3, 2)

    assert SETTINGS[1] == (3, 2, None)
    batched = jax.jit(jax.vmap(both_samplers))(stores, keys)
    for i, (s, k) in enumerate([(store, keys[0]), (store2, keys[1])]):
        one = (sample_both(s, k)[0], sample_all(s, k)[1])
        jax.tree.map(np.testing.assert_array_equal, jax.tree.map(lambda x: x[i], batched), one)
