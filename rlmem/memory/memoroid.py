"""Memoroids: a monoid over recurrent states, a lift from inputs and a readout.

A memoroid is `(H, combine, identity)` with an associative `combine`, plus
`lift: x -> H` and `readout: (h, x) -> y`. Over a sequence, the state after step `t` is
`h_t = carry • lift(x_0) • ... • lift(x_t)`; associativity lets that prefix product be a
parallel `associative_scan` (O(log T) depth) or a sequential fold (O(T) depth, least work).

The **resettable transform** makes any memoroid restart at episode starts inside one tape:

    (h, b) ∘ (h', b') = (h' if b' else h • h',  b or b')      identity (e, False)

so `h_t` only ever combines the elements of its own episode. Nothing here substitutes the
identity for the state at a reset: the reset keeps the new element itself, so a model whose
`identity` were wrong would still scan correctly (and the property tests check `identity`).

`affine_combine` is the monoid of a diagonal linear recurrence `h -> a ⊙ h + b`, shared by
every such model (`AffineMemoroid`: LRU, S5, S6, gated linear attention) and by the reverse
scans of `rlmem.memory.returns`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import jax
import jax.numpy as jnp
from flax import linen as nn

State = Any  # a pytree; one element has no time axis, a sequence has leading [T]
ScanStrategy = Literal["auto", "associative", "sequential"]
SCAN_STRATEGIES = ("auto", "associative", "sequential")


def resettable(combine: Callable[[State, State], State]) -> Callable:
    """Lift a monoid `combine(a, b)` over single elements to the resettable monoid.

    The returned function combines `(state, start)` pairs of single elements:
    `(h, b) ∘ (h', b') = (where(b', h', h • h'), b | b')`.
    """

    def combine_with_reset(left: tuple[State, jax.Array], right: tuple[State, jax.Array]):
        h, b = left
        h2, b2 = right
        merged = combine(h, h2)
        out = jax.tree.map(lambda keep, m: jnp.where(b2, keep, m), h2, merged)
        return out, jnp.logical_or(b, b2)

    return combine_with_reset


def resolve_strategy(strategy: str) -> Literal["associative", "sequential"]:
    """`auto` picks the parallel scan on accelerators and the sequential fold on CPU.

    On a 2-core CPU the fold does less work and wins; on a GPU the O(log T) depth wins.
    """
    if strategy not in SCAN_STRATEGIES:
        raise ValueError(f"scan strategy must be one of {SCAN_STRATEGIES}, got {strategy!r}")
    if strategy == "auto":
        return "sequential" if jax.default_backend() == "cpu" else "associative"
    return strategy  # type: ignore[return-value]


def scan_states(
    combine: Callable[[State, State], State],
    elements: State,
    start: jax.Array,
    carry: State,
    strategy: str = "auto",
    step: Callable[[State, State], State] | None = None,
) -> State:
    """All prefix states of a resettable memoroid over a tape.

    Args:
      combine: associative combine of two single elements (no time axis).
      elements: lifted inputs, every leaf `[T, ...]`.
      start: `[T]` bool, True where an episode starts (cuts everything before).
      carry: the state before `elements[0]`, leaves without time axis.
      strategy: "auto", "associative" or "sequential"; all give the same states.
      step: optional `combine` specialised to a right operand that is one element of
        `elements` (`Memoroid.combine_step`); the sequential fold, whose right operand
        always is one, uses it. None: `combine`.

    Returns:
      states: every leaf `[T, ...]`; `states[t]` is the state after element `t`.
    """
    start = jnp.asarray(start, dtype=bool)
    reset_combine = resettable(combine)
    if resolve_strategy(strategy) == "sequential":
        reset_step = resettable(step or combine)

        def fold(h, elem_and_start):
            h_next, _ = reset_step((h, False), elem_and_start)
            return h_next, h_next

        _, states = jax.lax.scan(fold, carry, (elements, start))
        return states

    prefix, _ = jax.lax.associative_scan(jax.vmap(reset_combine), (elements, start))
    # Put the incoming carry in front; a prefix that contains a start ignores it.
    seen_start = jax.lax.cummax(start.astype(jnp.int32), axis=0).astype(bool)
    with_carry = jax.vmap(combine, in_axes=(None, 0))(carry, prefix)
    return jax.tree.map(
        lambda p, c: jnp.where(_expand(seen_start, p), p, c), prefix, with_carry
    )


def fold_with_resets(
    step: Callable[[State, Any], State],
    inputs: Any,
    start: jax.Array,
    carry: State,
    initial: State,
) -> State:
    """All carries of a plain recurrent cell over a tape, restarting at episode starts.

    The sequential counterpart of `scan_states` for models that are not memoroids
    (GRU, LSTM): before step `t` the carry is replaced by `initial` where `start[t]`.

    Args:
      step: `step(carry, input_t) -> carry`, single elements (no time axis).
      inputs: every leaf `[T, ...]`.
      start: `[T]` bool.
      carry: the carry before `inputs[0]`.
      initial: the carry an episode starts from.

    Returns:
      carries: every leaf `[T, ...]`; `carries[t]` is the carry after input `t`.
    """

    def body(h, input_and_start):
        u, s = input_and_start
        h = jax.tree.map(lambda init, old: jnp.where(s, init, old), initial, h)
        h = step(h, u)
        return h, h

    _, carries = jax.lax.scan(body, carry, (inputs, jnp.asarray(start, dtype=bool)))
    return carries


def _expand(flags: jax.Array, like: jax.Array) -> jax.Array:
    return flags.reshape(flags.shape + (1,) * (like.ndim - flags.ndim))


def affine_combine(left: State, right: State) -> State:
    """Compose two runs of a diagonal linear recurrence `h -> a ⊙ h + b`.

    `left = (a1, b1)` happened first, `right = (a2, b2)` after it, so applying both is
    `h -> a2 ⊙ (a1 ⊙ h + b1) + b2`: the earlier `b1` is decayed by the *later* `a2`.
    (Multiplying `b2` by `a1` instead is the classic bug.) `a` may be smaller than `b` and
    broadcast against it (e.g. `a: [K, 1]` decays the rows of `b: [K, V]`).
    Identity: `(ones_like(a), zeros_like(b))`.
    """
    a1, b1 = left
    a2, b2 = right
    return a1 * a2, a2 * b1 + b2


def affine_identity(a_shape: tuple, b_shape: tuple, dtype=jnp.float32) -> State:
    """The identity `(1, 0)` of `affine_combine` for elements of the given shapes."""
    return jnp.ones(a_shape, dtype), jnp.zeros(b_shape, dtype)


def check_sizes(owner: str, **sizes: int) -> None:
    """Raise a clear error unless every size is a positive int (called from `setup`)."""
    for name, value in sizes.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{owner}: {name} must be a positive int, got {value!r}")


def check_scan(owner: str, scan: str) -> None:
    """Raise a clear error unless `scan` names an evaluation strategy."""
    if scan not in SCAN_STRATEGIES:
        raise ValueError(f"{owner}: scan must be one of {SCAN_STRATEGIES}, got {scan!r}")


def check_tape(owner: str, x: jax.Array, start: jax.Array) -> None:
    """Raise a clear error unless x is [T, F] and start is [T] (shapes are static under jit)."""
    if jnp.ndim(x) != 2:
        raise ValueError(
            f"{owner}: x must be [T, F] (no batch axis; vmap over envs), got shape "
            f"{jnp.shape(x)}"
        )
    if jnp.shape(start) != jnp.shape(x)[:1]:
        raise ValueError(
            f"{owner}: start must be [T] = {jnp.shape(x)[:1]} to match x, got shape "
            f"{jnp.shape(start)}"
        )


def last_state(states: State) -> State:
    """The state after the last step of a `[T, ...]` state sequence."""
    return jax.tree.map(lambda s: s[-1], states)


class Memoroid(nn.Module):
    """Base class of memoroid memory models.

    Subclasses define (in `setup` or as pure functions, so that every method shares the
    same parameters):

      * `identity() -> State`               the monoid identity (no time axis);
      * `lift(x: [T, F]) -> State [T]`       inputs to monoid elements;
      * `combine(a: State, b: State) -> State` associative, over single elements, pure;
      * `readout(h: State [T], x: [T, F]) -> y [T, H]`.

    The call contract (docs/architecture.md) then comes for free:
    `y, carry = model(x, start, carry)`, `model.with_next(...)`, `initialize_carry()`.
    """

    scan: str = "auto"

    def __post_init__(self):
        check_scan(type(self).__name__, self.scan)
        super().__post_init__()

    def identity(self) -> State:
        raise NotImplementedError

    def lift(self, x: jax.Array) -> State:
        raise NotImplementedError

    def combine(self, a: State, b: State) -> State:
        raise NotImplementedError

    def readout(self, h: State, x: jax.Array) -> jax.Array:
        raise NotImplementedError

    def combine_step(self) -> Callable[[State, State], State]:
        """`combine(a, b)` for a right operand `b` that is one lifted input (one step).

        The sequential fold and `with_next`'s next-state combine only ever have such an
        element on the right, so a model may return an equivalent that does the work
        depending only on the parameters once per call instead of once per step (FFM:
        its decay `γ¹`). Defaults to `combine`.
        """
        return self.combine

    @nn.nowrap
    def initialize_carry(self) -> State:
        """The state before any input: the monoid identity (no batch or time axis)."""
        return self.identity()

    def __call__(
        self, x: jax.Array, start: jax.Array, carry: State
    ) -> tuple[jax.Array, State]:
        """Run over a tape. x: [T, F], start: [T] bool -> y: [T, H], carry after x[T-1]."""
        y, states = self.with_states(x, start, carry)
        return y, last_state(states)

    def with_states(
        self, x: jax.Array, start: jax.Array, carry: State
    ) -> tuple[jax.Array, State]:
        """Like `__call__`, but returns the state after every step: (y [T, H], states [T])."""
        check_tape(type(self).__name__, x, start)
        states = scan_states(
            self.combine, self.lift(x), start, carry, self.scan, self.combine_step()
        )
        return self.readout(states, x), states

    def next_from_states(self, states: State, next_x: jax.Array) -> jax.Array:
        """The output for `next_x[k]` fed right after the state `states[k]`.

        states: leaves `[K, ...]` (e.g. rows of `with_states`), next_x: [K, F] -> [K, H].
        """
        next_states = jax.vmap(self.combine_step())(states, self.lift(next_x))
        return self.readout(next_states, next_x)

    def with_next(
        self, x: jax.Array, start: jax.Array, carry: State, next_x: jax.Array
    ) -> tuple[jax.Array, jax.Array, State]:
        """Like `__call__`, plus `y_next[t]`: the output for `next_x[t]` fed after x[0..t].

        One extra combine per step: `h_t • lift(next_x[t])`, never crossing into the next
        episode of the tape. next_x: [T, F] -> (y [T, H], y_next [T, H], carry).
        """
        check_tape(type(self).__name__, x, start)
        if jnp.shape(next_x) != jnp.shape(x):
            raise ValueError(
                f"{type(self).__name__}: next_x must have the shape of x {jnp.shape(x)}, "
                f"got {jnp.shape(next_x)}"
            )
        y, states = self.with_states(x, start, carry)
        return y, self.next_from_states(states, next_x), last_state(states)


class AffineMemoroid(Memoroid):
    """A memoroid whose monoid is `affine_combine`: elements `(a, b)` of `h -> a ⊙ h + b`.

    Subclasses define `identity` (usually `affine_identity(...)`), `lift` and `readout`.
    """

    def combine(self, left: State, right: State) -> State:
        return affine_combine(left, right)
