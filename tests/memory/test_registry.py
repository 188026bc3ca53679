"""make_memory: every name resolves, errors name the bad value and the valid ones."""

from __future__ import annotations

import importlib

import pytest

from rlmem.memory import MEMORY_MODELS, make_memory
from rlmem.memory.ffm import FFM

EXPECTED = {"linear_attention", "ffm", "sffm", "lru", "s5", "s6", "gla", "mingru", "mamba2",
            "deltanet", "gated_deltanet", "mlstm", "gru", "lstm", "mlp"}


def test_names():
    assert set(MEMORY_MODELS) == EXPECTED


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_entry_is_a_class_path(name):
    module_name, class_name = MEMORY_MODELS[name].split(":")
    module = importlib.import_module(module_name)
    cls = getattr(module, class_name)
    model = make_memory(name)
    assert isinstance(model, cls)
    assert isinstance(model.output_size, int)


def test_builds_with_settings():
    model = make_memory("ffm", trace_size=8, context_size=2, output_size=16, scan="sequential")
    assert isinstance(model, FFM)
    assert (model.trace_size, model.context_size, model.output_size) == (8, 2, 16)
    assert model.scan == "sequential"


def test_unknown_name():
    with pytest.raises(ValueError) as info:
        make_memory("fmm")
    message = str(info.value)
    assert "'fmm'" in message and "linear_attention" in message and "mlp" in message
    assert "Did you mean 'ffm'" in message


def test_unknown_setting():
    with pytest.raises(ValueError) as info:
        make_memory("ffm", trace=8)
    message = str(info.value)
    assert "'trace'" in message and "trace_size" in message and "context_size" in message
    assert "parent" not in message


@pytest.mark.parametrize(
    ("name", "settings", "message"),
    [
        ("ffm", {"trace_size": 0}, "FFM: trace_size must be a positive int, got 0"),
        ("sffm", {"context_size": 2.5}, "SFFM: context_size must be a positive int, got 2.5"),
        ("linear_attention", {"key_size": -1}, "key_size must be a positive int, got -1"),
        ("gru", {"output_size": 0}, "GRU: output_size must be a positive int"),
        ("lstm", {"scan": "fast"}, "LSTM: scan must be one of"),
        ("mlp", {"output_size": None}, "MLP: output_size must be a positive int, got None"),
    ],
)
def test_bad_settings(name, settings, message):
    with pytest.raises(ValueError, match=message):
        make_memory(name, **settings)
