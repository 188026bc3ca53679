"""The card games' shuffle (`deck.permutation`): a bitonic sort of random keys, redrawn on
ties, must give exactly uniform permutations, batched or not."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from rlmem.envs.popgym import deck

# Sizes on both sides of the packed/unpacked switch (129 cards: 24 random bits, unpacked),
# powers of two and not, and the deck sizes of the popgym presets.
SIZES = [1, 2, 3, 5, 8, 52, 104, 129, 416, 832]
P_FLOOR = 1e-6  # a correct shuffle fails a test below about once in a million runs


def _draws(n, num, seed=0):
    keys = jax.random.split(jax.random.PRNGKey(seed), num)
    return np.asarray(jax.jit(jax.vmap(lambda k: deck.permutation(k, n)))(keys))


def _chi_square_p(counts):
    counts = np.asarray(counts, float).ravel()
    return stats.chisquare(counts).pvalue


@pytest.mark.parametrize("m", [2, 4, 64, 256])
@pytest.mark.parametrize("with_values", [False, True])
def test_bitonic_sort_matches_numpy(m, with_values):
    rng = np.random.default_rng(m)
    # Few distinct keys, so that equal keys are common.
    keys = rng.integers(0, 2 ** 32 if with_values else 7, (m, 5), dtype=np.uint32)
    vals = np.broadcast_to(np.arange(m, dtype=np.int32)[:, None], keys.shape)
    out, out_vals = jax.jit(deck._bitonic_sort)(keys, vals if with_values else None)
    np.testing.assert_array_equal(np.asarray(out), np.sort(keys, axis=0))
    if with_values:  # distinct keys here: the values follow them exactly
        np.testing.assert_array_equal(np.asarray(out_vals),
                                      np.argsort(keys, axis=0, kind="stable"))


@pytest.mark.parametrize("n", SIZES)
def test_permutation_is_a_permutation_whatever_the_batching(n):
    keys = jax.random.split(jax.random.PRNGKey(n), 24)
    flat = np.asarray(jax.jit(jax.vmap(lambda k: deck.permutation(k, n)))(keys))
    assert flat.dtype == np.int32 and flat.shape == (24, n)
    np.testing.assert_array_equal(np.sort(flat, axis=1), np.tile(np.arange(n), (24, 1)))
    if n >= 52:  # (smaller n repeat orders by chance)
        assert len({tuple(p) for p in flat}) == 24
    # A deck depends on its own key only: in nested batches, alone, unbatched next to
    # batched arguments, under a batched `cond` (a vmapped training loop's control flow:
    # both branches run). Each is a compile of the whole network, so the large decks
    # (seconds each) check the nested batch only; the tests below mix more at 5 and 52.
    nested = jax.vmap(jax.vmap(lambda k: deck.permutation(k, n)))(keys.reshape(4, 6, 2))
    np.testing.assert_array_equal(np.asarray(nested).reshape(24, n), flat)
    if n > 104:
        return
    np.testing.assert_array_equal(np.asarray(deck.permutation(keys[7], n)), flat[7])
    shared = jax.vmap(lambda x: deck.permutation(keys[7], n) + x)(jnp.arange(3))
    np.testing.assert_array_equal(np.asarray(shared) - np.arange(3)[:, None], flat[[7] * 3])
    some = jax.vmap(lambda k, take: jax.lax.cond(
        take, lambda: deck.permutation(k, n), lambda: jnp.full(n, -1, jnp.int32)))(
        keys[:4], jnp.array([True, False, True, False]))
    np.testing.assert_array_equal(np.asarray(some)[[0, 2]], flat[[0, 2]])
    assert (np.asarray(some)[[1, 3]] == -1).all()


@pytest.mark.parametrize("n", [5, 52])
def test_nested_vmaps_with_any_mix_of_batched_arguments(n):
    """Two nested vmaps (a vector env inside the training loop's vmap over seeds), with
    the key batched at both levels, at one, or at none, next to a second argument
    batched at both levels or where the key is not: every element is exactly the
    unbatched permutation of its key. The rule folds all batch axes into one network,
    so this is where a wrong axis or an unbatched key would show."""
    keys = jax.random.split(jax.random.PRNGKey(n), 6).reshape(2, 3, 2)
    one = jax.jit(lambda k: deck.permutation(k, n))
    alone = np.asarray([[one(keys[i, j]) for j in range(3)] for i in range(2)])
    offsets = np.arange(6, dtype=np.int32).reshape(2, 3)

    def f(key, offset):
        return deck.permutation(key, n) + offset

    def pick(x, axes):  # the argument as vmap sees it: level l kept where axes[l] == 0
        return x[tuple(slice(None) if a == 0 else 0 for a in axes)]

    def spread(axes):  # index arrays that broadcast an unbatched level's element 0
        return (np.arange(2)[:, None] if axes[0] == 0 else np.zeros((2, 1), int),
                np.arange(3)[None, :] if axes[1] == 0 else np.zeros((1, 3), int))

    for key_axes in itertools.product([0, None], repeat=2):
        complement = tuple(0 if a is None else None for a in key_axes)
        for offset_axes in {(0, 0), complement}:
            where = f"key in_axes {key_axes}, offset in_axes {offset_axes}"
            inner = jax.vmap(f, in_axes=(key_axes[1], offset_axes[1]), axis_size=3)
            outer = jax.jit(jax.vmap(inner, in_axes=(key_axes[0], offset_axes[0]),
                                     axis_size=2))
            out = np.asarray(outer(pick(keys, key_axes), pick(offsets, offset_axes)))
            expected = alone[spread(key_axes)] + offsets[spread(offset_axes)][..., None]
            np.testing.assert_array_equal(out, expected, err_msg=where)


def test_batched_control_flow_around_permutation():
    """vmapped `cond`/`while_loop` around it (a VecEnv's reset loop under the seeds vmap):
    jax turns a batched `cond` into a select and batches every operand of the branches,
    and a batched `while_loop` runs every member as long as the longest; each element
    must still be its key's permutation."""
    n = 52
    keys = jax.random.split(jax.random.PRNGKey(3), 4)
    alone = np.asarray([deck.permutation(k, n) for k in keys])

    def some_passes(key, passes):  # passes of fold_in(key, t) draws, summed
        def body(carry):
            t, acc = carry
            return t + 1, acc + deck.permutation(jax.random.fold_in(key, t), n)
        return jax.lax.while_loop(lambda c: c[0] < passes, body,
                                  (0, jnp.zeros(n, jnp.int32)))[1]

    passes = jnp.array([0, 1, 2, 3])
    out = np.asarray(jax.jit(jax.vmap(some_passes))(keys, passes))
    for s in range(4):
        expected = sum((np.asarray(deck.permutation(jax.random.fold_in(keys[s], t), n))
                        for t in range(s)), np.zeros(n, np.int32))
        np.testing.assert_array_equal(out[s], expected)
    # The key unbatched, the branch predicate batched.
    out = np.asarray(jax.vmap(lambda take: jax.lax.cond(
        take, lambda: deck.permutation(keys[1], n), lambda: jnp.zeros(n, jnp.int32)))(
        jnp.array([True, False])))
    np.testing.assert_array_equal(out[0], alone[1])
    assert (out[1] == 0).all()


def test_falls_back_to_plain_vmap_when_the_network_has_constants(monkeypatch):
    """jax's custom_vmap cannot batch a function with array constants under a batched
    `cond` (it asserts). `_shuffler` checks its traced network and, if some change made
    one appear, uses the plain function (vmapped the ordinary way): same results."""
    n = 5
    keys = jax.random.split(jax.random.PRNGKey(9), 4)
    before = np.asarray(jax.vmap(lambda k: deck.permutation(k, n))(keys))

    def uses_custom_vmap():
        return "custom_vmap" in str(jax.make_jaxpr(lambda k: deck.permutation(k, n))(keys[0]))

    assert uses_custom_vmap()
    words = deck._lane_words
    zeros = np.zeros((1, 1), np.uint32)  # an array constant (adds nothing)
    monkeypatch.setattr(deck, "_lane_words", lambda *args: words(*args) + zeros)
    deck._shuffler.cache_clear()
    try:
        assert not uses_custom_vmap()
        some = jax.vmap(lambda k, take: jax.lax.cond(
            take, lambda: deck.permutation(k, n), lambda: jnp.zeros(n, jnp.int32)))(
            keys, jnp.array([True, False, True, True]))
    finally:
        monkeypatch.undo()
        deck._shuffler.cache_clear()
    np.testing.assert_array_equal(np.asarray(some)[[0, 2, 3]], before[[0, 2, 3]])
    assert uses_custom_vmap()


def test_permutation_accepts_typed_keys_and_rejects_bad_sizes():
    for key in (jax.random.key(0), jax.random.key(0, impl="rbg")):
        assert sorted(np.asarray(deck.permutation(key, 52)).tolist()) == list(range(52))
    for bad in (0, -1, 2.0):
        with pytest.raises(ValueError, match="positive int"):
            deck.permutation(jax.random.PRNGKey(0), bad)


def _order_counts(draws):
    """How often each of the `n!` orders occurs in `draws: [D, n]`."""
    n = draws.shape[1]
    index = {p: i for i, p in enumerate(itertools.permutations(range(n)))}
    return np.bincount([index[tuple(p)] for p in draws], minlength=len(index))


def _position_counts(draws):
    """`[n, n]` counts of card x (column) at position t (row) in `draws: [D, n]`."""
    n = draws.shape[1]
    counts = np.zeros((n, n), int)
    np.add.at(counts, (np.arange(n)[None, :], draws), 1)
    return counts


ORDER_DRAWS, POSITION_DRAWS = 30_000, 12_000  # the sample sizes of the two tests below


@pytest.mark.parametrize("n", [3, 4])
def test_small_permutations_are_uniform(n):
    """Every one of the n! orders is equally likely (chi-square over all of them)."""
    counts = _order_counts(_draws(n, ORDER_DRAWS))
    assert _chi_square_p(counts) > P_FLOOR, counts


@pytest.mark.parametrize("n", [52, 129])
def test_every_card_is_equally_likely_at_every_position(n):
    """Card x position counts over many decks (packed keys at 52, unpacked at 129), and
    the order of the first two cards."""
    draws = _draws(n, POSITION_DRAWS, seed=n)
    assert _chi_square_p(_position_counts(draws)) > P_FLOOR
    before = (np.argmax(draws == 0, axis=1) < np.argmax(draws == 1, axis=1)).mean()
    assert abs(before - 0.5) < 5 * 0.5 / np.sqrt(len(draws))


def test_the_uniformity_tests_reject_biased_shuffles():
    """The two chi-square tests above, at their sample sizes and threshold, on shuffles
    that are slightly or badly wrong: each must fail them."""
    rng = np.random.default_rng(0)

    def one_swap(n, num):  # the identity with two random positions exchanged
        out = np.tile(np.arange(n), (num, 1))
        i, j = rng.integers(0, n, (2, num))
        rows = np.arange(num)
        out[rows, i], out[rows, j] = out[rows, j], out[rows, i]
        return out

    def ties_by_index(n, num, bits):  # sort `bits`-bit random keys, ties in index order
        return np.argsort(rng.integers(0, 2 ** bits, (num, n)), axis=1, kind="stable")

    def sattolo(n, num):  # a classic slip: Fisher-Yates that never leaves a card in place
        out = np.tile(np.arange(n), (num, 1))
        for i in range(n - 1, 0, -1):
            j = rng.integers(0, i, num)
            rows = np.arange(num)
            out[rows, i], out[rows, j] = out[rows, j], out[rows, i]
        return out

    for n in (3, 4):
        for biased in (np.tile(np.arange(n), (ORDER_DRAWS, 1)), one_swap(n, ORDER_DRAWS),
                       ties_by_index(n, ORDER_DRAWS, 3), sattolo(n, ORDER_DRAWS)):
            assert _chi_square_p(_order_counts(biased)) < P_FLOOR
    for biased in (one_swap(52, POSITION_DRAWS), sattolo(52, POSITION_DRAWS)):
        assert _chi_square_p(_position_counts(biased)) < P_FLOOR


@pytest.mark.parametrize("packed", [True, False])
def test_tied_keys_are_redrawn_so_orders_stay_uniform(monkeypatch, packed):
    """With only 4 possible random parts, 5 in 8 draws of 3 keys tie. Sorting tied keys
    by index would favour the identity order heavily; redrawing them keeps every order
    at 1/6. Unpacked, one of the 4 values equals the padding key, whose tie must be
    redrawn too (else a padding index would end up in the permutation)."""
    coarse = deck._lane_words

    def few_values(key_data, attempt, m):
        return (coarse(key_data, attempt, m) & np.uint32(0xC0000000)) | np.uint32(0x3FFFFFFF)

    monkeypatch.setattr(deck, "_lane_words", few_values)
    if not packed:
        monkeypatch.setattr(deck, "_MIN_PACKED_RANDOM_BITS", 33)
    deck._shuffler.cache_clear()
    try:
        assert deck._layout(3)[2] is packed
        draws = _draws(3, 6_000, seed=5)
    finally:
        deck._shuffler.cache_clear()
    np.testing.assert_array_equal(np.sort(draws, axis=1), np.tile(np.arange(3), (6_000, 1)))
    counts = _order_counts(draws)
    assert _chi_square_p(counts) > P_FLOOR, counts


def test_deals_use_the_narrowest_card_type():
    assert deck.card_dtype(1) == jnp.uint8 and deck.card_dtype(4) == jnp.uint8
    assert deck.card_dtype(5) == jnp.int16 and deck.card_dtype(16) == jnp.int16
