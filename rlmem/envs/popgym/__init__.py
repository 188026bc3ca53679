"""POPGym's 16 families in pure JAX, one gymnax `Environment` per file.

Modules are imported lazily by :mod:`rlmem.envs.registry` (so one family failing to
import breaks only its own ids); import a family directly when you need its class:

    from rlmem.envs.popgym.count_recall import CountRecall
"""
