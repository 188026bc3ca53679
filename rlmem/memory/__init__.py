"""Memory models (memoroids and sequential baselines), the resettable scan, returns/GAE.

Every model follows one call contract (docs/architecture.md):
`y, carry = model.apply(params, x[T, F], start[T], carry)`. Build models by name with
`make_memory(name, **settings)`; `MEMORY_MODELS` lists the names.
"""

from rlmem.memory.memoroid import (
    SCAN_STRATEGIES,
    Memoroid,
    fold_with_resets,
    resettable,
    resolve_strategy,
    scan_states,
)
from rlmem.memory.registry import MEMORY_MODELS, make_memory, memory_class
from rlmem.memory.returns import discounted_returns, gae

__all__ = [
    "MEMORY_MODELS",
    "SCAN_STRATEGIES",
    "Memoroid",
    "discounted_returns",
    "fold_with_resets",
    "gae",
    "make_memory",
    "memory_class",
    "resettable",
    "resolve_strategy",
    "scan_states",
]
