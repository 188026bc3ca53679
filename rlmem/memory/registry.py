"""Memory models by name: `make_memory("ffm", trace_size=32)`.

Models are imported lazily (`rlmem.registry.Registry`), so that building one never imports
(or compiles) the others.
"""

from __future__ import annotations

import dataclasses

from flax import linen as nn

from rlmem.registry import Registry, did_you_mean

# name -> "module:Class"; every class follows the call contract of docs/architecture.md.
MEMORY_MODELS = Registry("memory model", {
    "linear_attention": "rlmem.memory.linear_attention:LinearAttention",
    "ffm": "rlmem.memory.ffm:FFM",
    "sffm": "rlmem.memory.sffm:SFFM",
    "lru": "rlmem.memory.lru:LRU",
    "s5": "rlmem.memory.s5:S5",
    "s6": "rlmem.memory.s6:S6",
    "gla": "rlmem.memory.gla:GatedLinearAttention",
    "mingru": "rlmem.memory.mingru:MinGRU",
    "mamba2": "rlmem.memory.mamba2:Mamba2",
    "deltanet": "rlmem.memory.deltanet:DeltaNet",
    "gated_deltanet": "rlmem.memory.deltanet:GatedDeltaNet",
    "mlstm": "rlmem.memory.mlstm:MLSTM",
    "gru": "rlmem.memory.gru:GRU",
    "lstm": "rlmem.memory.lstm:LSTM",
    "mlp": "rlmem.memory.mlp:MLP",
})

# Module machinery, not model settings.
_LINEN_FIELDS = ("parent", "name")


def memory_class(name: str) -> type[nn.Module]:
    """The class registered under `name` (imports its module).

    Raises:
      ValueError: an unknown name (listing the valid ones and close matches).
    """
    return MEMORY_MODELS.load(name)


def model_fields(cls: type[nn.Module]) -> tuple[str, ...]:
    """The settings a model class takes as keyword arguments."""
    return tuple(
        f.name for f in dataclasses.fields(cls) if f.init and f.name not in _LINEN_FIELDS
    )


def make_memory(name: str, **kwargs) -> nn.Module:
    """Build the (unbound) memory model `name` with settings `kwargs`.

    Raises:
      ValueError: for an unknown name (listing the valid ones and close matches) or an
        unknown setting (naming it and listing the model's settings).
    """
    cls = memory_class(name)
    valid = model_fields(cls)
    for key in kwargs:
        if key not in valid:
            raise ValueError(
                f"memory model {name!r} has no setting {key!r}; valid settings: "
                f"{', '.join(valid)}.{did_you_mean(key, valid, n=2)}"
            )
    return cls(**kwargs)
