"""A fixed-shape sum-tree: the priority index of prioritised replay, usable inside `jit`.

Prioritised experience replay (Schaul et al. 2016, "Prioritized Experience Replay") draws
item `j` with probability `p_j / sum(p)`. A sum-tree makes both changing a priority and
drawing an item O(log P): the `P` priorities are the leaves of a complete binary tree in
which every internal node holds the sum of its two children, so the root is the total.
A draw picks `u ~ U[0, total)` and walks down from the root, going left when `u` falls in
the left child's mass and otherwise going right with `u - left`.

Layout (heap order, one flat array): `nodes: [2P]` with `P` the smallest power of two
`>= num_leaves`; `nodes[1]` is the root, node `i`'s children are `2i` and `2i + 1`, leaf
`j` is `nodes[P + j]`, and `nodes[0]` is unused (always 0). Leaves `num_leaves..P-1` are
padding and stay 0, so they are never drawn. The tree is a pytree with one array, so it
can be donated, checkpointed, and `vmap`ped over a leading seed axis like any other state.

Precision. Priorities are float32. `update` never adjusts a parent by the change of a leaf
(`parent += new - old`), which would leave each parent off by one rounding error per update
and let the error grow without bound over millions of updates; it recomputes every touched
parent as `left + right` from its children, read after the level below was written. Each
node is therefore always the float32 sum of its two children, exactly as `build` computes
it from the leaves, whatever the history: an internal node differs from the exact sum of
its leaves by at most about `log2(P)` float32 roundings (relative `log2(P) * 2**-24`), and
that error does not accumulate. `sample` adds a guard so that those roundings can never
route a draw into a zero-priority leaf (see `sample`). One caveat of float32 draws: `u`
has 24 significant bits, so a leaf whose share of the total is below about `2**-24` is drawn
with an inexact (possibly zero) probability.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from rlmem.checks import positive_int


@struct.dataclass
class SumTree:
    """Priorities in a complete binary tree in heap order.

    Attributes:
      nodes: `[2P]` float32. `nodes[1]` is the root (the total), node `i`'s children are
        `2i` and `2i + 1`, leaf `j` is `nodes[P + j]`, `nodes[0]` is unused (0). Leaves
        `>= num_leaves` (the padding up to a power of two) stay 0.
    """

    nodes: jax.Array


def _capacity_for(num_leaves: int) -> int:
    """P: the smallest power of two `>= num_leaves` (num_leaves >= 1)."""
    return 1 << (num_leaves - 1).bit_length()


def init_sum_tree(num_leaves: int) -> SumTree:
    """An all-zero tree with room for `num_leaves` priorities (static, >= 1).

    Raises:
      ValueError: if `num_leaves` is not a positive int.
    """
    num_leaves = positive_int("num_leaves", num_leaves)
    return SumTree(nodes=jnp.zeros((2 * _capacity_for(num_leaves),), jnp.float32))


def build(leaves: jax.Array, num_leaves: int | None = None) -> SumTree:
    """A tree holding `leaves` (the rest of the leaves 0), computed bottom-up in O(P).

    Every parent is the float32 `left + right` of its children, the same operation `update`
    applies, so a tree built here equals bit for bit one reached by updates to the same
    leaves. Handy to restore priorities and as a test reference.

    Args:
      leaves: `[m]` priorities, `>= 0`.
      num_leaves: the tree's number of leaves (static, `>= m`); None means `m`.

    Returns:
      The `SumTree`.
    """
    leaves = jnp.asarray(leaves, jnp.float32)
    if leaves.ndim != 1:
        raise ValueError(f"leaves must have shape [m], got {tuple(leaves.shape)}")
    m = leaves.shape[0]
    num_leaves = positive_int("num_leaves", m if num_leaves is None else num_leaves)
    if num_leaves < m:
        raise ValueError(f"num_leaves ({num_leaves}) must be >= len(leaves) ({m})")
    level = jnp.zeros((_capacity_for(num_leaves),), jnp.float32).at[:m].set(leaves)
    levels = [level]
    while level.shape[0] > 1:
        level = level[0::2] + level[1::2]
        levels.append(level)
    # Heap order is the levels from the root down: [unused, root, 2 nodes, 4 nodes, ...].
    return SumTree(nodes=jnp.concatenate([jnp.zeros((1,), jnp.float32)] + levels[::-1]))


def num_leaves_capacity(tree: SumTree) -> int:
    """P, the number of leaves including the padding (static, from the shape)."""
    return tree.nodes.shape[-1] // 2


def _depth(tree: SumTree) -> int:
    """log2(P): the number of levels below the root."""
    return num_leaves_capacity(tree).bit_length() - 1


def total(tree: SumTree) -> jax.Array:
    """`[]` the sum of all priorities (the root). `[S]` for trees stacked on a seed axis."""
    return tree.nodes[..., 1]


def leaf_values(tree: SumTree, index: jax.Array) -> jax.Array:
    """Priorities of leaves `index: [k]` -> `[k]` (indices clipped into `[0, P)`)."""
    p = num_leaves_capacity(tree)
    return tree.nodes[p + jnp.clip(jnp.asarray(index, jnp.int32), 0, p - 1)]


def update(
    tree: SumTree,
    index: jax.Array,
    value: jax.Array,
    valid: jax.Array | None = None,
) -> SumTree:
    """Set leaves `index[i]` to `value[i]` where `valid[i]`, then fix their ancestors.

    Cost O(k log P), never O(P): only the ancestors of the touched leaves are recomputed,
    one level at a time from the leaves up, each as the sum of its two children read after
    the level below was written. So duplicates in `index` leave the tree consistent (every
    node the sum of its children); which duplicate's value lands is unspecified.

    Args:
      tree: the tree.
      index: `[k]` int leaf indices in `[0, num_leaves)`; indices outside `[0, P)` are
        ignored like invalid entries.
      value: `[k]` new priorities, `>= 0` (not checked: a negative or NaN priority breaks
        the sums that `sample` relies on).
      valid: `[k]` bool, which entries to apply; None applies all. Invalid entries touch
        nothing, so a fixed-size batch can carry padding.

    Returns:
      The updated `SumTree`. (XLA updates `nodes` in place when the tree is a loop carry
      or a donated argument of the jitted step; otherwise it first copies the `[2P]` array.)
    """
    p = num_leaves_capacity(tree)
    index = jnp.asarray(index, jnp.int32)
    value = jnp.asarray(value, jnp.float32)
    ok = (index >= 0) & (index < p)
    if valid is not None:
        ok = ok & jnp.asarray(valid, bool)
    # Invalid entries scatter to node 2P, out of bounds, and mode="drop" discards them; the
    # position is recomputed per level (halving 2P would land back inside the tree).
    leaf = p + jnp.where(ok, index, 0)
    nodes = tree.nodes.at[jnp.where(ok, leaf, 2 * p)].set(value, mode="drop")

    # Unrolled over the (static, <= 31) levels: a `fori_loop` carrying `nodes` made XLA on
    # CPU copy the whole [2P] array (O(P) per update; scripts/bench_replay.py --prioritised).
    for level in range(_depth(tree)):
        parent = leaf >> (level + 1)  # in [1, P) for every entry
        # Duplicate parents all write the same sum of the same children: no conflict.
        sums = nodes[2 * parent] + nodes[2 * parent + 1]
        nodes = nodes.at[jnp.where(ok, parent, 2 * p)].set(sums, mode="drop")
    return tree.replace(nodes=nodes)


def _descend(tree: SumTree, u: jax.Array) -> jax.Array:
    """Leaf indices `[n]` for targets `u: [n]` in `[0, total]`, walking down from the root.

    Go right iff `(u >= left and right > 0) or left <= 0`, subtracting `left` when going
    right. Every node is the float32 sum of its children, so from a positive node the walk
    only enters positive children: right only if `right > 0` or `left == 0` (then
    `right == node > 0`), left only if `left > 0`. Hence a positive total never yields a
    zero leaf, even when rounding lets `u` reach or pass a node's value (where a plain
    `u >= left` test would fall into a zero right subtree).
    """
    nodes = tree.nodes

    def step(_: int, carry: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        node, u = carry
        left = nodes[2 * node]
        right = nodes[2 * node + 1]
        go_right = ((u >= left) & (right > 0)) | (left <= 0)
        return 2 * node + go_right.astype(jnp.int32), jnp.where(go_right, u - left, u)

    root = jnp.ones(u.shape, jnp.int32)
    node, _ = jax.lax.fori_loop(0, _depth(tree), step, (root, u))
    return node - num_leaves_capacity(tree)


def sample(tree: SumTree, key: jax.Array, n: int) -> jax.Array:
    """`n` i.i.d. leaf indices, leaf `j` drawn with probability `leaf_j / total`.

    One uniform target per draw, then a descent of log2(P) levels vectorised over the `n`
    draws (a `fori_loop`): O(n log P). A leaf with priority 0 is never drawn while
    `total > 0`, whatever the float rounding (see `_descend`). When `total == 0` the
    indices are arbitrary (each in `[0, P)`): callers check `total(tree) > 0`.

    Args:
      tree: the tree.
      key: a PRNG key.
      n: number of draws (static, >= 1).

    Returns:
      `[n]` int32 leaf indices in `[0, P)`.
    """
    n = positive_int("n", n)
    return _sample_at(tree, jax.random.uniform(key, (n,), jnp.float32))


def _sample_at(tree: SumTree, unit: jax.Array) -> jax.Array:
    """Leaf indices `[n]` for unit draws `unit: [n]` in `[0, 1]` (the body of `sample`)."""
    t = total(tree)
    # `unit * t` can round up to `t` (and unit = 1 would reach it): keep u in [0, t), which
    # is u = 0 when t = 0.
    u = jnp.clip(unit * t, 0.0, jnp.nextafter(t, jnp.zeros_like(t)))
    return _descend(tree, u)
