"""`rlmem.registry`: lazy name -> "module:attr" tables and the one unknown-name error shared by
the memory models, the POPGym families and the algorithms."""

from __future__ import annotations

import json
import sys

import pytest

from rlmem.registry import Registry, close_matches, did_you_mean, import_target

THINGS = Registry("thing", {"dumps": "json:dumps", "loads": "json:loads",
                            "missing": "rlmem_no_such_module:x"})


def test_is_a_read_only_mapping_in_registration_order():
    assert THINGS.names() == ("dumps", "loads", "missing") == tuple(THINGS)
    assert len(THINGS) == 3 and "loads" in THINGS and "load" not in THINGS
    assert THINGS["dumps"] == "json:dumps" and dict(THINGS)["loads"] == "json:loads"
    with pytest.raises(TypeError):
        THINGS["new"] = "json:dump"  # type: ignore[index]


def test_load_imports_only_the_named_module():
    assert THINGS.load("dumps") is json.dumps
    assert "rlmem_no_such_module" not in sys.modules  # registering imported nothing
    with pytest.raises(ModuleNotFoundError, match="rlmem_no_such_module"):
        THINGS.load("missing")  # an import failure breaks its own name only
    assert THINGS.load("loads") is json.loads


@pytest.mark.parametrize("bad", ["dump", "DUMPS", "", None, 3, ["dumps"]])
def test_unknown_name_says_kind_value_names_and_close_matches(bad):
    with pytest.raises(ValueError) as info:
        THINGS.load(bad)
    message = str(info.value)
    assert message.startswith(f"unknown thing {bad!r}; valid names: dumps, loads, missing.")
    if bad == "dump":
        assert message.endswith(" Did you mean 'dumps'?")
    assert str(THINGS.unknown(bad)) == message


def test_targets_must_name_module_and_attribute():
    with pytest.raises(ValueError, match=r"thing 'x': target must be 'module:attr', got 'json'"):
        Registry("thing", {"x": "json"})


def test_helpers():
    assert import_target("rlmem.registry:Registry") is Registry
    assert close_matches("ffn", ["ffm", "lru", "fff"]) == ["ffm", "fff"]
    assert close_matches("ffn", ["ffm", "lru", "fff"], n=1) == ["ffm"]
    assert did_you_mean("lruu", ["ffm", "lru"]) == " Did you mean 'lru'?"
    assert did_you_mean("zzz", ["ffm", "lru"]) == ""


def test_the_registries_are_registries():
    from rlmem.envs.registry import FAMILIES
    from rlmem.memory import MEMORY_MODELS

    assert isinstance(MEMORY_MODELS, Registry) and isinstance(FAMILIES, Registry)
    assert FAMILIES.load("RepeatFirst").__name__ == "RepeatFirst"
    with pytest.raises(ValueError, match=r"unknown POPGym family 'RepeatFist'.*"
                                         r"Did you mean 'RepeatFirst'"):
        FAMILIES.load("RepeatFist")
