"""The generic memory-model properties (tests/memory/properties.py) for every registered name.

Small settings per model keep compile times low; checks that cannot apply to a model (a
monoid or a second evaluation order for GRU/LSTM/MLP) are skipped with the reason. The
residual stacks (LRU, S5, S6) are no monoids as a whole, but each of their layers is: their
monoid laws are checked per layer, on the parameters the stack was initialised with.
"""

from __future__ import annotations

import functools

import pytest

from rlmem.memory import MEMORY_MODELS, memory_class
from rlmem.memory.registry import model_fields
from rlmem.memory.stack import ResidualStack
from tests.memory.properties import MemoryModelChecks

# Sequential folds, not memoroids: no monoid, and `scan` is accepted but ignored.
SEQUENTIAL_ONLY = {"gru", "lstm", "mlp"}
ONE_ORDER = (
    "one evaluation order only: `scan` is ignored, so both strategies run the same fold "
    "and comparing them compares the code with itself (the fold is checked against a "
    "per-step Python loop in test_python_loop and against flax's cells / numpy in "
    "test_gru.py, test_lstm.py, test_mlp.py)"
)
# Residual stacks whose layer's test file already compares the strategies on long tapes.
LONG_PER_LAYER = {"lru", "s5", "s6"}
LONG = 512  # long-tape agreement of the two strategies (benchmarks go to 10^5)

# Small sizes for every setting a model may have; only the ones a model takes are used.
SMALL = {
    "output_size": 8,
    "key_size": 4,
    "value_size": 4,
    "trace_size": 4,
    "context_size": 2,
    "d_model": 8,
    "d_hidden": 4,
    "d_state": 4,
    "state_size": 4,
    "num_layers": 2,
    "num_heads": 2,
}


def load(name: str):
    return memory_class(name)


@pytest.fixture(scope="module", params=sorted(MEMORY_MODELS))
def checks(request) -> MemoryModelChecks:
    cls = load(request.param)
    fields = model_fields(cls)
    settings = {k: v for k, v in SMALL.items() if k in fields}
    checks = MemoryModelChecks(functools.partial(cls, **settings), input_size=3, length=16)
    checks.name = request.param
    return checks


def test_interface(checks):
    checks.check_interface()


def stack_layer_checks(checks: MemoryModelChecks) -> list[MemoryModelChecks]:
    """One `MemoryModelChecks` per layer of a residual stack, each holding the parameters
    that layer got when the whole stack was initialised (`blocks_<i>/layer`)."""
    stack = checks.model
    assert isinstance(stack, ResidualStack), type(stack)
    blocks = checks.params["params"]
    layers = []
    for i in range(stack.num_layers):
        layers.append(
            MemoryModelChecks(
                # The stack's own make_layer, for the stack built with each strategy.
                lambda scan, i=i: checks.models[scan].make_layer(i, parent=None),
                input_size=stack.d_model,  # a layer maps [T, d_model] -> [T, d_model]
                length=checks.length,
                params={"params": blocks[f"blocks_{i}"]["layer"]},
            )
        )
    return layers


def test_monoid(checks):
    if checks.is_memoroid:
        checks.check_monoid(seed=1)
    elif isinstance(checks.model, ResidualStack):
        # LayerNorm and the GLU between the layers make the stack no monoid; what its
        # scans rely on is that each layer is one.
        layers = stack_layer_checks(checks)
        assert len(layers) == SMALL["num_layers"] and all(c.is_memoroid for c in layers)
        for layer in layers:
            layer.check_monoid(seed=1)
    else:
        assert checks.name in SEQUENTIAL_ONLY, f"{checks.name}: neither memoroid nor stack"
        pytest.skip("a sequential fold (no combine, no identity): there is no monoid to check")


def test_strategies(checks):
    if checks.name in SEQUENTIAL_ONLY:
        pytest.skip(ONE_ORDER)
    checks.check_strategies(seed=2)


def test_strategies_long_tape(checks):
    if checks.name in SEQUENTIAL_ONLY:
        pytest.skip(ONE_ORDER)
    if checks.name in LONG_PER_LAYER:
        pytest.skip("long tapes are checked per layer in its own test file (stack: -m slow)")
    checks.check_strategies(seed=3, length=LONG, scale=5.0)


def test_python_loop(checks):
    checks.check_python_loop(seed=4)


def test_no_leakage(checks):
    # The parallel scan is where a reset could leak; the fold is checked in the slow run.
    checks.check_no_leakage(seed=5, strategies=("associative",))


@pytest.mark.slow
def test_no_leakage_sequential(checks):
    checks.check_no_leakage(seed=5, strategies=("sequential",))


def test_split(checks):
    # The sequential fold's carry hand-over is covered by test_strategies + test_python_loop.
    checks.check_split(seed=6, strategies=("associative",))


def test_with_next(checks):
    checks.check_with_next(seed=7, strategies=("associative",))


def test_acting(checks):
    checks.check_acting(seed=8)


@pytest.mark.slow
def test_strategies_very_long_tape(checks):
    if checks.name in SEQUENTIAL_ONLY:
        pytest.skip(ONE_ORDER)
    checks.check_strategies(seed=9, length=10_000, scale=10.0)
