"""The registry knows popgym's 48 ids with popgym's exact difficulty presets."""

import inspect

import gymnax
import popgym.envs as pe
import pytest

from rlmem.envs import FAMILIES, POPGYM_IDS, make, registry
from rlmem.registry import Registry


def test_popgym_ids_are_popgyms():
    assert len(POPGYM_IDS) == 48
    assert set(POPGYM_IDS) == {cls.__name__ for cls in pe.ALL}


def _family_class(pop_cls):
    return next(c for c in pop_cls.__mro__ if c.__name__ in FAMILIES)


@pytest.mark.parametrize("name", POPGYM_IDS)
def test_presets_equal_popgym_subclasses(name, monkeypatch):
    """Record the arguments popgym's subclass passes to its family class's `__init__`
    and compare them (with defaults filled in) to the registry's preset."""
    pop_cls = getattr(pe, name)
    family = _family_class(pop_cls)
    signature = inspect.signature(family.__init__)
    seen = {}

    def record(self, *args, **kwargs):
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        seen.update(bound.arguments)
        seen.pop("self")

    monkeypatch.setattr(family, "__init__", record)
    pop_cls()
    _, cls_name, preset = registry.popgym_spec(name)
    assert cls_name == family.__name__
    expected = signature.bind(None, **preset)
    expected.apply_defaults()
    expected = dict(expected.arguments)
    expected.pop("self")
    normalise = lambda d: {k: list(v) if isinstance(v, tuple | list) else v for k, v in d.items()}
    assert normalise(expected) == normalise(seen)


def test_unknown_name_lists_close_matches():
    with pytest.raises(ValueError, match="did you mean CountRecallEasy"):
        make("CountRecalEasy")
    with pytest.raises(ValueError, match="unknown environment name 'zzz'"):
        make("zzz")


def test_family_name_with_overrides_is_the_paper_setting():
    env, params = make("RepeatPrevious", num_decks=2, k=10)
    assert (env.unwrapped.num_decks, env.unwrapped.k) == (2, 10)
    with pytest.raises(ValueError, match="bad keyword arguments"):
        make("RepeatFirstEasy", decks=3)


def test_wrapping_options_change_the_observation_size():
    sizes = {(pa, aa): make("CountRecallEasy", previous_action=pa, antialias=aa)[0]
             .observation_space(None).shape[0] for pa in (False, True) for aa in (False, True)}
    # [value, query] one-hots (2 + 2), previous action (27), flag (2)
    assert sizes == {(False, False): 4, (False, True): 6, (True, False): 31, (True, True): 33}


# MNISTBandit downloads MNIST when built: no network in tests.
@pytest.mark.parametrize("name", [n for n in gymnax.registered_envs if n != "MNISTBandit-bsuite"])
def test_every_gymnax_id_makes(name):
    env, params = make(name)
    assert len(env.observation_space(params).shape) == 1


def test_missing_family_only_breaks_its_own_ids(monkeypatch):
    broken = {**registry.FAMILIES, "Battleship": "no_such_module:Battleship"}
    monkeypatch.setattr(registry, "FAMILIES", Registry("POPGym family", broken))
    with pytest.raises(ImportError):
        make("BattleshipEasy")
    make("RepeatFirstEasy")
