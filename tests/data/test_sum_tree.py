"""The sum-tree against a plain-numpy reference: sums, updates, sampling frequencies."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import stats

from rlmem.data.sum_tree import (
    SumTree,
    _sample_at,
    build,
    init_sum_tree,
    leaf_values,
    num_leaves_capacity,
    sample,
    total,
    update,
)

K = 8  # entries per update batch: one shape, so `update` compiles once per tree size

# Module-level jitted wrappers: every test shares their compiled versions.
update_jit = jax.jit(update)
leaf_values_jit = jax.jit(leaf_values)
sample_jit = jax.jit(sample, static_argnames="n")
sample_at_jit = jax.jit(_sample_at)
build_jit = jax.jit(build, static_argnames="num_leaves")


def reference_nodes(leaves: np.ndarray) -> np.ndarray:
    """Heap-ordered float32 nodes `[2P]` of leaves `[P]` (P a power of two), in numpy."""
    levels = [np.asarray(leaves, np.float32)]
    while levels[-1].shape[0] > 1:
        x = levels[-1]
        levels.append(x[0::2] + x[1::2])
    return np.concatenate([np.zeros(1, np.float32)] + levels[::-1])


def assert_consistent(tree: SumTree) -> None:
    """Every internal node is exactly the float32 sum of its children; node 0 is 0."""
    nodes = np.asarray(tree.nodes)
    p = nodes.shape[0] // 2
    assert nodes.dtype == np.float32 and nodes[0] == 0
    parents = np.arange(1, p)
    np.testing.assert_array_equal(nodes[parents], nodes[2 * parents] + nodes[2 * parents + 1])


# Priorities: exact zeros often, otherwise normal float32 over many orders of magnitude
# (subnormals excluded: XLA on CPU flushes them to zero, numpy does not).
PRIORITIES = st.one_of(
    st.just(0.0),
    st.floats(0.0, 1e6, width=32, allow_subnormal=False),
    st.floats(2.0**-20, 2.0**-7, width=32),
)


@given(num_leaves=st.integers(1, 70), data=st.data())
def test_updates_match_reference(num_leaves, data):
    tree = init_sum_tree(num_leaves)
    p = num_leaves_capacity(tree)
    assert p >= num_leaves and p & (p - 1) == 0 and (p == 1 or p < 2 * num_leaves)
    ref = np.zeros(p, np.float32)  # the reference model: the leaves, padding included
    # A few favourite indices make duplicates within a batch common even for large trees.
    pool = data.draw(st.lists(st.integers(0, num_leaves - 1), min_size=1, max_size=3))
    indices = st.one_of(st.sampled_from(pool), st.integers(0, num_leaves - 1))
    for _ in range(data.draw(st.integers(1, 5))):
        index = data.draw(hnp.arrays(np.int32, K, elements=indices))
        value = data.draw(hnp.arrays(np.float32, K, elements=PRIORITIES))
        valid = data.draw(hnp.arrays(bool, K))
        tree = update_jit(tree, index, value, valid)
        got = np.asarray(leaf_values_jit(tree, np.arange(p)))
        for j in np.unique(index[valid]):
            # Duplicates: one of the values written to that leaf wins (which is unspecified).
            assert got[j] in value[valid & (index == j)]
            ref[j] = got[j]
        # Leaves not validly written (padding included) are unchanged.
        np.testing.assert_array_equal(got, ref)
        assert_consistent(tree)
        assert float(total(tree)) == pytest.approx(float(ref.sum(dtype=np.float64)), rel=1e-5)
    # Recomputing the ancestors only gives the very tree built from scratch from the leaves.
    np.testing.assert_array_equal(np.asarray(tree.nodes), reference_nodes(ref))
    np.testing.assert_array_equal(np.asarray(tree.nodes), np.asarray(build_jit(ref).nodes))


def test_update_recomputes_only_the_ancestors():
    p = 16
    leaves = np.arange(p, dtype=np.float32)
    nodes = reference_nodes(leaves)
    # Mark every internal node with a value no sum produces; only ancestors may change.
    nodes[1:p] = -7.0
    touched = np.array([3, 10, 10, 12, 0, 0, 0, 0], np.int32)
    valid = np.array([1, 1, 1, 0, 0, 0, 0, 0], bool)  # leaf 12 and the padding: invalid
    value = np.array([5.0, 1.0, 2.0, 9.0, 0.0, 0.0, 0.0, 0.0], np.float32)
    out = np.asarray(update_jit(SumTree(nodes=jnp.asarray(nodes)), touched, value, valid).nodes)
    ancestors = {(p + j) >> s for j in (3, 10) for s in range(1, 5)}
    for i in range(1, p):
        if i in ancestors:
            assert out[i] == out[2 * i] + out[2 * i + 1], i
        else:
            assert out[i] == -7.0, i
    changed = np.flatnonzero(out[p:] != leaves)
    np.testing.assert_array_equal(changed, [3, 10])
    assert out[p + 3] == 5.0 and out[p + 10] in (1.0, 2.0)


def test_invalid_and_out_of_range_entries_touch_nothing():
    tree = build_jit(np.array([1.0, 2.0, 3.0, 4.0, 5.0]))  # P = 8
    index = np.array([-1, 8, 9, 2, -8, 2**30, 0, 7], np.int32)
    valid = np.array([1, 1, 1, 0, 1, 1, 0, 1], bool)  # leaf 7 is padding but in range
    out = update_jit(tree, index, np.full(K, 100.0, np.float32), valid)
    expected = reference_nodes(np.array([1, 2, 3, 4, 5, 0, 0, 100], np.float32))
    np.testing.assert_array_equal(np.asarray(out.nodes), expected)
    # Without a mask every in-range entry is applied.
    out = update_jit(tree, np.array([4, 9]), np.array([0.5, 6.0]))
    np.testing.assert_array_equal(np.asarray(leaf_values_jit(out, np.arange(8))),
                                  [1, 2, 3, 4, 0.5, 0, 0, 0])


@pytest.mark.parametrize("num_leaves, p", [(1, 1), (2, 2), (3, 4), (5, 8), (64, 64), (65, 128)])
def test_init_and_build_shapes(num_leaves, p):
    tree = init_sum_tree(num_leaves)
    assert tree.nodes.shape == (2 * p,) and tree.nodes.dtype == jnp.float32
    assert num_leaves_capacity(tree) == p and float(total(tree)) == 0.0
    leaves = np.linspace(0.0, 3.0, num_leaves, dtype=np.float32)
    built = build_jit(leaves)
    padded = np.zeros(p, np.float32)
    padded[:num_leaves] = leaves
    np.testing.assert_array_equal(np.asarray(built.nodes), reference_nodes(padded))
    np.testing.assert_array_equal(np.asarray(leaf_values_jit(built, np.arange(num_leaves))), leaves)


def test_build_pads_to_num_leaves():
    tree = build_jit(np.array([1.0, 2.0]), num_leaves=5)
    assert num_leaves_capacity(tree) == 8 and float(total(tree)) == 3.0
    assert_consistent(tree)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, None])
def test_init_rejects_bad_sizes(bad):
    with pytest.raises(ValueError, match=rf"num_leaves must be a positive int, got {bad!r}"):
        init_sum_tree(bad)


def test_bad_build_and_sample_arguments_raise():
    with pytest.raises(ValueError, match="num_leaves \\(2\\) must be >= len\\(leaves\\) \\(3\\)"):
        build(np.ones(3), num_leaves=2)
    with pytest.raises(ValueError, match="leaves must have shape"):
        build(np.ones((2, 2)))
    with pytest.raises(ValueError, match="n must be a positive int, got 0"):
        sample(init_sum_tree(4), jax.random.key(0), 0)


def priorities_tree(leaves: np.ndarray) -> SumTree:
    """A tree holding `leaves`, written through `update` in batches of `K`."""
    tree = init_sum_tree(len(leaves))
    for lo in range(0, len(leaves), K):
        index = np.arange(lo, lo + K, dtype=np.int32)
        value = np.zeros(K, np.float32)
        value[: len(leaves) - lo] = leaves[lo : lo + K]
        tree = update_jit(tree, index, value, index < len(leaves))
    return tree


def test_sampling_frequencies_match_priorities():
    leaves = np.array([0, 1, 2, 0, 5, 0.5, 3, 0, 10, 1, 0.25, 4, 0, 7, 2, 1.5, 0, 6, 0.75, 3],
                      np.float32)
    tree = priorities_tree(leaves)
    n = 200_000
    draws = np.asarray(sample_jit(tree, jax.random.key(0), n=n))
    assert draws.dtype == np.int32 and draws.shape == (n,)
    counts = np.bincount(draws, minlength=num_leaves_capacity(tree))
    positive = leaves > 0
    assert counts[: len(leaves)][~positive].sum() == 0 and counts[len(leaves) :].sum() == 0
    expected = n * leaves[positive].astype(np.float64) / leaves.sum(dtype=np.float64)
    result = stats.chisquare(counts[: len(leaves)][positive], expected)
    assert result.pvalue > 1e-3, result
    # A wrong sampler (here: uniform over the positive leaves) fails the same check.
    uniform = np.full(positive.sum(), n / positive.sum())
    assert stats.chisquare(uniform, expected).pvalue < 1e-9


@pytest.mark.parametrize(
    "num_leaves, positive",
    [
        (64, {37: 1e-30}),  # many zeros and one tiny positive leaf
        (50, {49: 1e-3}),  # the only positive leaf is the last one (right-most path)
        (50, {0: 1e8, 49: 1e-3}),  # the small leaf is absorbed by the total's rounding
        (7, {2: 0.1, 5: 2.0, 6: 10.0}),
    ],
)
def test_zero_leaves_are_never_drawn(num_leaves, positive):
    leaves = np.zeros(num_leaves, np.float32)
    leaves[list(positive)] = list(positive.values())
    tree = priorities_tree(leaves)
    draws = np.asarray(sample_jit(tree, jax.random.key(1), n=20_000))
    assert np.all(leaves[draws] > 0)
    # Also at the extreme targets: the largest uniform draws and 1 itself (clamped).
    edge = np.array([0.0, 0.5, 1 - 2**-24, 1 - 2**-23, 1 - 2**-22, 1.0], np.float32)
    assert np.all(leaves[np.asarray(sample_at_jit(tree, edge))] > 0)


def test_rounding_guard_keeps_draws_off_zero_leaves():
    # With leaves [0.1, 2, 10, 0] the largest target, the float32 just below the total,
    # minus 2.1 then minus 10 is >= 10 after rounding: "go right iff u >= left" would end
    # in the zero leaf 3.
    tree = build_jit(np.array([0.1, 2.0, 10.0, 0.0]))
    edge = np.array([1.0, 1 - 2**-24, 1 - 2**-23], np.float32)
    np.testing.assert_array_equal(np.asarray(sample_at_jit(tree, edge)), [2, 2, 2])
    # Random trees with zeros over 16 orders of magnitude; targets at and around every
    # prefix-sum boundary, where rounding decides the branch.
    rng = np.random.default_rng(0)
    p, num_trees = 8, 300
    magnitudes = 10 ** rng.uniform(-8, 8, (num_trees, p))
    leaves = np.where(rng.random((num_trees, p)) < 0.4, 0.0, magnitudes).astype(np.float32)
    leaves[:, -1] = 0.0  # a zero right-most leaf: the case a missing guard falls into
    leaves[leaves.sum(axis=1) == 0, 0] = 1.0
    trees = jax.vmap(build)(jnp.asarray(leaves))
    fractions = np.cumsum(leaves, axis=1, dtype=np.float64) / leaves.sum(axis=1, keepdims=True)
    units = np.concatenate([fractions, np.ones((num_trees, 1))], axis=1).astype(np.float32)
    units = np.concatenate([units + k * np.float32(2**-24) for k in range(-3, 4)], axis=1)
    draws = np.asarray(jax.jit(jax.vmap(_sample_at))(trees, np.clip(units, 0, 1)))
    assert np.all(np.take_along_axis(leaves, draws, axis=1) > 0)


def test_empty_tree_samples_are_in_range():
    draws = np.asarray(sample_jit(init_sum_tree(5), jax.random.key(0), n=100))
    assert draws.shape == (100,) and np.all((draws >= 0) & (draws < 8))


def test_jit_and_vmap_over_trees_equal_per_tree_results():
    rng = np.random.default_rng(3)
    trees = [build_jit(rng.uniform(0, 2, 12).astype(np.float32) * (rng.random(12) < 0.7))
             for _ in range(3)]
    stacked = jax.tree.map(lambda *x: jnp.stack(x), *trees)
    index = rng.integers(0, 12, (3, K)).astype(np.int32)
    value = rng.uniform(0, 5, (3, K)).astype(np.float32)
    valid = rng.random((3, K)) < 0.7
    keys = jax.random.split(jax.random.key(4), 3)

    @jax.jit
    def step(tree, index, value, valid, key):
        tree = update(tree, index, value, valid)
        return tree, sample(tree, key, 64), leaf_values(tree, index)

    batched = jax.vmap(step)(stacked, index, value, valid, keys)
    assert batched[0].nodes.shape == (3, 32) and num_leaves_capacity(batched[0]) == 16
    assert total(batched[0]).shape == (3,)
    for i, tree in enumerate(trees):
        one = step(tree, index[i], value[i], valid[i], keys[i])
        jax.tree.map(np.testing.assert_array_equal, jax.tree.map(lambda x: x[i], batched), one)
        assert_consistent(one[0])
