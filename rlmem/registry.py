"""Things built by name: a `name -> "module:attr"` table imported lazily, one error wording.

    MODELS = Registry("memory model", {"ffm": "rlmem.memory.ffm:FFM", ...})
    MODELS.load("ffm")   # imports rlmem.memory.ffm only now, returns FFM
    MODELS.load("fmm")   # ValueError: unknown memory model 'fmm'; valid names: ffm, ...
                         #   Did you mean 'ffm'?

Lazy imports keep a failing or slow module (an env family, a model) from breaking or
slowing down the others. The memory models (`rlmem.memory.registry`), the POPGym families
(`rlmem.envs.registry`) and the algorithms (`rlmem.config`) are registries; `close_matches`
and `did_you_mean` give every misspelt name (a setting, a config key) the same hint.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any


def close_matches(value: object, names: Iterable[object], n: int = 3,
                  cutoff: float = 0.6) -> list[str]:
    """Up to `n` of `names` that look like `value` (difflib's ratio >= `cutoff`), best first."""
    return difflib.get_close_matches(str(value), [str(name) for name in names], n=n,
                                     cutoff=cutoff)


def did_you_mean(value: object, names: Iterable[object], n: int = 3) -> str:
    """`" Did you mean 'a', 'b'?"` for the names close to `value`, or `""` if none is."""
    matches = close_matches(value, names, n=n)
    return f" Did you mean {', '.join(map(repr, matches))}?" if matches else ""


def import_target(target: str) -> Any:
    """The object a `"package.module:attr"` string names (importing the module)."""
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


class Registry(Mapping[str, str]):
    """A read-only mapping `name -> "module:attr"` for one `kind` of thing, in the order given.

    Args:
      kind: what a name stands for, as errors say it (`"memory model"`, `"algorithm"`).
      targets: `name -> "package.module:attr"`; nothing is imported until `load`.
    """

    def __init__(self, kind: str, targets: Mapping[str, str]):
        for name, target in targets.items():
            if target.count(":") != 1:
                raise ValueError(f"{kind} {name!r}: target must be 'module:attr', got {target!r}")
        self.kind = kind
        self._targets = dict(targets)

    def __getitem__(self, name: str) -> str:
        return self._targets[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._targets)

    def __len__(self) -> int:
        return len(self._targets)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self._targets!r})"

    def names(self) -> tuple[str, ...]:
        """The registered names, in registration order."""
        return tuple(self._targets)

    def unknown(self, name: object) -> ValueError:
        """The error for a name that is not registered: the kind, the value, every valid
        name and the close ones."""
        return ValueError(f"unknown {self.kind} {name!r}; valid names: "
                          f"{', '.join(self._targets)}.{did_you_mean(name, self._targets)}")

    def load(self, name: str) -> Any:
        """The object registered under `name`, importing its module now.

        Raises:
          ValueError: `name` is not registered (`unknown`). An import failure of the
            module propagates as it is (it only breaks this name).
        """
        if not isinstance(name, str) or name not in self._targets:
            raise self.unknown(name)
        return import_target(self._targets[name])
