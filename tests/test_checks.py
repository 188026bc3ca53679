"""`rlmem.checks.positive_int`: one wording for every "must be a positive int", used across
rlmem (checkpoints, metrics, the replay store and its samplers, the algorithms)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlmem.checks import check_positive_ints, positive_int


@pytest.mark.parametrize("good", [1, 7, 2**40, np.int32(3), np.int64(5)])
def test_accepts_integers_from_one_up(good):
    out = positive_int("n", good)
    assert out == good and type(out) is int


@pytest.mark.parametrize("bad", [0, -1, 2.0, 1.5, True, False, None, "3", np.float32(2),
                                 np.bool_(True), [1]])
def test_rejects_everything_else_with_one_message(bad):
    with pytest.raises(ValueError) as info:
        positive_int("batch_size", bad)
    assert str(info.value) == f"batch_size must be a positive int, got {bad!r}"


def test_check_positive_ints_names_the_keyword():
    check_positive_ints(a=1, b=2)
    with pytest.raises(ValueError, match=r"^b must be a positive int, got 0$"):
        check_positive_ints(a=1, b=0)


def _transition():
    from rlmem.types import Transition

    z = jnp.zeros(())
    return Transition(obs=jnp.zeros(2), action=jnp.int32(0), reward=z, next_obs=jnp.zeros(2),
                      terminated=jnp.bool_(False), truncated=jnp.bool_(False),
                      start=jnp.bool_(False), mask=jnp.bool_(False))


def test_every_user_says_it_the_same_way(tmp_path):
    """The checks that were hand-written per module now all read the same."""
    from rlmem.checkpoint import Checkpointer
    from rlmem.data import init_store, sample_segments, sample_tape
    from rlmem.metrics import MetricsLogger

    store = init_store(8, 2, _transition())
    key = jax.random.key(0)
    cases = [
        (lambda: Checkpointer(tmp_path, interval=0), "checkpoint interval", 0),
        (lambda: Checkpointer(tmp_path, interval=1, keep=True), "checkpoint keep", True),
        (lambda: MetricsLogger(tmp_path, num_seeds=0, config={}, mode="disabled"),
         "num_seeds", 0),
        (lambda: init_store(8, 0, _transition()), "num_envs", 0),
        (lambda: sample_tape(store, key, batch_size=2.0), "batch_size", 2.0),
        (lambda: sample_segments(store, key, num_segments=0, segment_length=2),
         "num_segments", 0),
        (lambda: sample_segments(store, key, num_segments=2, segment_length=-3),
         "segment_length", -3),
    ]
    for call, name, value in cases:
        with pytest.raises(ValueError) as info:
            call()
        assert str(info.value) == f"{name} must be a positive int, got {value!r}"
