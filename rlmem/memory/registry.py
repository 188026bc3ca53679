"""Memory models by name: `make_memory("ffm", trace_size=32)`.

Models are imported lazily, so that building one never imports (or compiles) the others.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib

from flax import linen as nn

# name -> "module:Class"; every class follows the call contract of docs/architecture.md.
MEMORY_MODELS: dict[str, str] = {
    "linear_attention": "rlmem.memory.linear_attention:LinearAttention",
    "ffm": "rlmem.memory.ffm:FFM",
    "sffm": "rlmem.memory.sffm:SFFM",
    "lru": "rlmem.memory.lru:LRU",
    "s5": "rlmem.memory.s5:S5",
    "s6": "rlmem.memory.s6:S6",
    "gla": "rlmem.memory.gla:GatedLinearAttention",
    "gru": "rlmem.memory.gru:GRU",
    "lstm": "rlmem.memory.lstm:LSTM",
    "mlp": "rlmem.memory.mlp:MLP",
}

# Module machinery, not model settings.
_LINEN_FIELDS = ("parent", "name")


def memory_class(name: str) -> type[nn.Module]:
    """The class registered under `name` (imports its module)."""
    if name not in MEMORY_MODELS:
        close = difflib.get_close_matches(str(name), MEMORY_MODELS, n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(
            f"unknown memory model {name!r}; valid names: {', '.join(MEMORY_MODELS)}.{hint}"
        )
    module_name, class_name = MEMORY_MODELS[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)


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
            close = difflib.get_close_matches(key, valid, n=2)
            hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
            raise ValueError(
                f"memory model {name!r} has no setting {key!r}; valid settings: "
                f"{', '.join(valid)}.{hint}"
            )
    return cls(**kwargs)
