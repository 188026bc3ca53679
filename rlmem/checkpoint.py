"""Save and restore the whole training state with Orbax, refusing anything that does not fit.

    ckpt = Checkpointer(run_dir / CHECKPOINT_SUBDIR, interval=50_000, keep=3, fingerprint=fp)
    if ckpt.latest_step() is not None:
        state, meta = ckpt.restore(like=state)
    ...
    if ckpt.should_save(env_steps):
        ckpt.save(env_steps, state, meta={"env_steps": env_steps})
    ckpt.close()

One checkpoint is one Orbax step directory holding three items:

* ``state``: the pytree's leaves as a flat dict ``{"leaf_00000": array, ...}`` (numbering in
  `jax.tree_util` flattening order; custom pytree nodes such as flax dataclasses never
  reach Orbax, so any pytree the caller can flatten is saved bit for bit);
* ``manifest`` (JSON): per leaf its path, shape, dtype, CRC32 and PRNG-key implementation,
  plus the leaves left out (`exclude`) and the `fingerprint`;
* ``meta`` (JSON): whatever small dict the caller passes (W&B run ids, env steps).

Why it is safe:

* **Atomic saves.** Orbax writes into a temporary directory and renames it when complete;
  a step directory is only listed once renamed, so a kill during a save leaves the previous
  checkpoints untouched and the half-written one invisible (stale temporaries are removed
  when the next `Checkpointer` opens the directory).
* **Corruption is detected.** Every leaf's CRC32 is checked on restore. When the *latest*
  checkpoint is unreadable or fails its checksums and no step was asked for, it is moved
  aside to ``corrupt-<step>`` (never deleted) with a warning, and the next older one is
  restored; if none is valid, `CheckpointCorruptError` is raised. An explicit `step` that
  is corrupt raises. Orbax's and tensorstore's messages are quoted cut short.
* **Mismatches are refused.** A checkpoint whose `fingerprint` (the config minus run-only
  keys) or leaf structure/shapes/dtypes differ from the run's raises
  `CheckpointMismatchError` listing what differs; it never falls back to an older one.
* **Failed saves say why**: `CheckpointSaveError` names the step and the OS's reason (e.g.
  "No space left on device"), at `save`, `wait` or `close` (async saves: the next of them).
* **Nothing is overwritten** by accident: see `rlmem.rundir` (`prepare_run_dir`, the lock).

`exclude` (a predicate on subtrees) leaves every subtree it accepts out of the checkpoint;
the restored state keeps the `like` tree's values there. The runner passes
`rlmem.data.tape.is_replay_store` for `checkpoint.exclude_replay=true`: a resumed run then
refills its (fresh, empty) replay from scratch and is no longer bit-identical to an
uninterrupted one. A checkpoint that holds such a subtree can be restored by a run that
excludes it (the saved one is ignored); one without it is refused by a run that wants it.

(Over 400 lines on purpose: saving, the checked restore and the corruption fallback share
one on-disk format, the manifest; split, its layout would be spelled in two files.)
"""

from __future__ import annotations

import json
import shutil
import warnings
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from rlmem.checks import positive_int
from rlmem.errors import RunError
from rlmem.orbax_compat import quiet_orbax, why
from rlmem.rundir import (  # noqa: F401  (CHECKPOINT_SUBDIR, prepare_run_dir: re-exported)
    CHECKPOINT_SUBDIR,
    CORRUPT_PREFIX,
    corrupt_name,
    prepare_run_dir,
)

PyTree = Any
Exclude = Callable[[Any], bool]  # subtree -> leave it out of the checkpoint
_FORMAT_VERSION = 1
quiet_orbax()


class CheckpointMismatchError(RunError, ValueError):
    """The checkpoint was written by a different config or for differently shaped state."""


class CheckpointCorruptError(RunError, RuntimeError):
    """No valid checkpoint could be read (truncated files, bad checksums, missing items)."""


class CheckpointSaveError(RunError, OSError):
    """A checkpoint could not be written (e.g. the disk is full)."""

    exit_code = 1


def _jsonable(tree: Any) -> Any:
    """Plain-JSON form (tuples -> lists, numpy scalars -> Python) so saved == compared."""
    return json.loads(json.dumps(tree, default=lambda o: np.asarray(o).tolist()))


def _diff(saved: Any, now: Any, path: str = "") -> list[str]:
    """Human-readable differences between two JSON-like trees, one line per leaf."""
    if isinstance(saved, dict) and isinstance(now, dict):
        out = []
        for key in sorted(set(saved) | set(now), key=str):
            sub = f"{path}.{key}" if path else str(key)
            if key not in now:
                out.append(f"{sub}: in the checkpoint ({saved[key]!r}), not in this run")
            elif key not in saved:
                out.append(f"{sub}: in this run ({now[key]!r}), not in the checkpoint")
            else:
                out.extend(_diff(saved[key], now[key], sub))
        return out
    return [] if saved == now else [f"{path or '<root>'}: checkpoint {saved!r}, this run {now!r}"]


def _wanted_but_excluded(manifest: Mapping[str, Any]) -> str:
    """The mismatch line for a checkpoint that left out subtrees this run restores."""
    subtrees = manifest.get("excluded_subtrees")
    if subtrees:
        what = ", ".join(f"state{s['path']} (a {s['type']}, {s['leaves']} leaves)"
                         for s in subtrees)
    else:  # a manifest from before subtrees were recorded
        what = f"{len(manifest['excluded'])} leaves ({manifest['excluded'][0]}, ...)"
    return (f"the checkpoint excludes {what} but this run restores them (its `exclude` "
            "keeps them)")


def _leaves(tree: PyTree, exclude: Exclude | None) -> tuple[list, list[str], list[dict]]:
    """What `tree` saves, in flatten order: `(path, leaf)` of the kept leaves, the paths of
    the excluded leaves, and the excluded subtrees `{"path", "type", "leaves"}`."""
    kept, excluded, subtrees = [], [], []
    for path, x in jax.tree_util.tree_flatten_with_path(tree, is_leaf=exclude)[0]:
        name = jax.tree_util.keystr(path)
        if exclude is not None and exclude(x):
            sub = [name + jax.tree_util.keystr(p) for p, _ in
                   jax.tree_util.tree_flatten_with_path(x)[0]]
            excluded.extend(sub)
            subtrees.append({"path": name, "type": type(x).__name__, "leaves": len(sub)})
        else:
            kept.append((name, x))
    return kept, excluded, subtrees


def _to_host(x: Any) -> tuple[np.ndarray, str | None]:
    """A numpy copy of a leaf; typed PRNG keys become their raw data plus the impl name."""
    if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        return np.asarray(jax.random.key_data(x)), str(jax.random.key_impl(x))
    return np.asarray(x), None


def _crc(x: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(x).view(np.uint8).reshape(-1).data)


def _describe(x: Any) -> dict[str, Any]:
    """Shape, dtype and key impl of a leaf as saved, without copying it to the host."""
    if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        data = jax.eval_shape(jax.random.key_data, x)
        return {"shape": list(data.shape), "dtype": str(np.dtype(data.dtype)),
                "key_impl": str(jax.random.key_impl(x))}
    if not (hasattr(x, "shape") and hasattr(x, "dtype")):
        x = np.asarray(x)  # Python scalars: as `save` would store them
    return {"shape": list(x.shape), "dtype": str(np.dtype(x.dtype)), "key_impl": None}


class Checkpointer:
    """Orbax `CheckpointManager` for one run's whole training state (see module docstring).

    Args:
      directory: where step directories go (usually ``<run_dir>/checkpoints``).
      interval: save every `interval` steps (`should_save`); the caller saves at the end
        with `force=True`.
      keep: how many of the newest checkpoints to keep (>= 1).
      fingerprint: JSON-able description of what the state means (config minus run-only
        keys, shapes); saved, and compared on restore unless it is None (then only the
        leaves' paths, shapes and dtypes are: a reader such as `rlmem.evaluate`).
      exclude: a predicate on subtrees; those it accepts are left out of the checkpoint
        and keep `like`'s values on restore (e.g. `rlmem.data.tape.is_replay_store`:
        smaller checkpoints, resumed runs refill the replay). None keeps everything.
      async_save: write in a background thread (the caller must not mutate the saved
        arrays until the next `save`/`close`; pass host copies).
      run_lock: the run directory's `rlmem.rundir.RunLock`, if any: its config is recorded
        (`record_config`) with this Checkpointer's first save, and `close` releases it.
    """

    def __init__(
        self,
        directory: str | Path,
        *,
        interval: int,
        keep: int = 3,
        fingerprint: Mapping[str, Any] | None = None,
        exclude: Exclude | None = None,
        async_save: bool = True,
        run_lock: Any = None,
    ):
        self.interval = positive_int("checkpoint interval", interval)
        self.keep = positive_int("checkpoint keep", keep)
        self.directory = Path(directory).absolute()
        self.compare_fingerprint = fingerprint is not None
        self.fingerprint = _jsonable(dict(fingerprint or {}))
        self.exclude = exclude
        options = ocp.CheckpointManagerOptions(
            preservation_policy=ocp.checkpoint_managers.LatestN(n=keep),
            create=True,
            cleanup_tmp_directories=True,  # a save killed half-way leaves a tmp dir: drop it
            enable_async_checkpointing=async_save,
        )
        self._manager = ocp.CheckpointManager(
            self.directory, options=options, item_names=("state", "manifest", "meta")
        )
        self._run_lock = run_lock
        self._writing: int | None = None  # the step of the save that may be in flight
        self._failed = self._closed = False

    # ---------------------------------------------------------------- queries
    def all_steps(self) -> list[int]:
        """Steps of the complete checkpoints on disk, oldest first."""
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        """The newest complete checkpoint's step, or None when there is none."""
        return self._manager.latest_step()

    def should_save(self, step: int) -> bool:
        """True when `step` crosses a multiple of `interval` since the last saved step."""
        latest = self.latest_step()
        return step // self.interval > (latest or 0) // self.interval

    # ---------------------------------------------------------------- save
    def save(
        self,
        step: int,
        state: PyTree,
        meta: Mapping[str, Any] | None = None,
        force: bool = False,
    ) -> bool:
        """Save `state` (any pytree of arrays) at `step` unless `should_save` says no.

        Args:
          step: the step (e.g. env steps); must be larger than every saved step.
          state: the pytree; leaves are copied to host numpy arrays before returning.
          meta: a small JSON-able dict stored beside it (returned by `restore`).
          force: save even when `should_save(step)` is False (the final checkpoint).

        Returns:
          Whether a checkpoint was written (asynchronously unless `async_save=False`).
        """
        if not force and not self.should_save(step):
            return False
        latest = self.latest_step()
        if latest is not None and step <= latest:
            raise ValueError(
                f"checkpoint step must grow: got step={step}, latest saved is {latest} "
                f"in {self.directory}"
            )
        kept, excluded, subtrees = _leaves(state, self.exclude)
        # `__step__` keeps the item non-empty (all-zero-size states) and is checked on restore.
        arrays, leaves = {"__step__": np.asarray(step, np.int64)}, []
        for i, (path, x) in enumerate(kept):
            arr, impl = _to_host(x)
            # An independent copy: the async writer may still read it after we return.
            arr = np.array(arr, copy=True)
            if arr.size:  # Orbax refuses zero-size arrays; the manifest's shape rebuilds them
                arrays[f"leaf_{i:05d}"] = arr
            leaves.append({"path": path, "shape": list(arr.shape), "dtype": str(arr.dtype),
                           "key_impl": impl, "crc32": _crc(arr)})
        manifest = {"version": _FORMAT_VERSION, "step": int(step), "leaves": leaves,
                    "excluded": excluded, "excluded_subtrees": subtrees,
                    "fingerprint": self.fingerprint}
        self.wait()  # the previous save's failure is that step's
        if self._run_lock is not None:
            self._run_lock.record_config()
        self._writing = int(step)
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(arrays),
            manifest=ocp.args.JsonSave(manifest),
            meta=ocp.args.JsonSave(_jsonable(dict(meta or {}))),
        )
        self._orbax(lambda: self._manager.save(int(step), args=args, force=True))
        return True

    def _orbax(self, call: Any) -> Any:  # an Orbax write; failures as CheckpointSaveError
        try:
            return call()
        except Exception as err:  # noqa: BLE001 - Orbax/tensorstore raise all kinds
            self._failed = True
            raise CheckpointSaveError(
                f"could not write checkpoint step {self._writing} to {self.directory}: "
                f"{why(err)}") from err

    # ---------------------------------------------------------------- restore
    def restore(self, like: PyTree, step: int | None = None,
                partial: bool = False) -> tuple[PyTree, dict]:
        """Restore the checkpoint at `step` (default: the newest valid one) into `like`'s shape.

        Args:
          like: a pytree with the same structure, shapes and dtypes as the saved state (e.g.
            a freshly initialised state); excluded leaves (replay) keep `like`'s values.
          step: a specific step; None = the latest, falling back to older ones if corrupt.
          partial: restore only the leaves the checkpoint and `like` share with the same
            path, shape and dtype; `like`'s other leaves keep their values and are listed
            in the returned meta's `"not_restored"` (reading part of an older state).

        Returns:
          `(state, meta)`: the restored pytree (numpy leaves; typed PRNG keys re-wrapped)
          and the `meta` dict saved with it.

        Raises:
          FileNotFoundError: no checkpoint (or not the requested step) in the directory.
          CheckpointMismatchError: the fingerprint or the leaves differ from this run's.
          CheckpointCorruptError: the checkpoint(s) cannot be read or fail their checksums.
        """
        self.wait()
        steps = self.all_steps()
        if step is not None:
            if step not in steps:
                raise FileNotFoundError(
                    f"no checkpoint at step={step} in {self.directory}; have {steps}")
            return self._restore_step(like, step, partial)
        if not steps:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        errors = []
        for s in reversed(steps):
            try:
                return self._restore_step(like, s, partial)
            except CheckpointCorruptError as err:
                errors.append(str(err))
                aside = self.directory / corrupt_name(s)
                warnings.warn(f"{err}; moving it to {aside} and trying an older checkpoint",
                              stacklevel=2)
                shutil.move(str(self.directory / str(s)), str(aside))
                self._manager.reload()
        raise CheckpointCorruptError(
            f"no valid checkpoint in {self.directory} (each was moved aside to "
            f"{CORRUPT_PREFIX}<step>):\n  " + "\n  ".join(errors) + "\nto start again from step 0 "
            "with the old files moved aside, set checkpoint.overwrite=true")

    def _restore_step(self, like: PyTree, step: int,
                      partial: bool = False) -> tuple[PyTree, dict]:
        where = f"checkpoint step {step} in {self.directory}"
        try:
            got = self._manager.restore(step, args=ocp.args.Composite(
                manifest=ocp.args.JsonRestore(), meta=ocp.args.JsonRestore()))
            manifest, meta = got["manifest"], got["meta"]
            saved_leaves = manifest["leaves"]
        except Exception as err:  # noqa: BLE001 - any read failure means corrupt
            raise CheckpointCorruptError(f"{where} is unreadable ({why(err)})") from err

        diffs = (_diff(manifest.get("fingerprint"), self.fingerprint, "fingerprint")
                 if self.compare_fingerprint else [])
        kept, excluded, _ = _leaves(like, self.exclude)
        kept_paths = {p for p, _ in kept}
        if any(p in kept_paths for p in manifest.get("excluded", ())):
            diffs.append(_wanted_but_excluded(manifest))
        # A checkpoint that holds an excluded subtree restores into this run all the same: the
        # saved subtree is ignored (the run keeps `like`'s), everything else is restored.
        skip = set(excluded)
        used = [leaf for leaf in saved_leaves if leaf["path"] not in skip]
        now = [{"path": p, **_describe(x)} for p, x in kept]
        saved_by_path = {leaf["path"]: leaf for leaf in used}
        now_by_path = {leaf["path"]: leaf for leaf in now}
        differ: set[str] = set()  # partial: shared paths whose shape or dtype differs
        for path in sorted(set(saved_by_path) | set(now_by_path)):
            if path not in now_by_path:
                if not partial:
                    diffs.append(f"state{path}: in the checkpoint, not in this run's state")
            elif path not in saved_by_path:
                if not partial:
                    diffs.append(f"state{path}: in this run's state, not in the checkpoint")
            else:
                a, b = saved_by_path[path], now_by_path[path]
                for field in ("shape", "dtype", "key_impl"):
                    if a[field] == b[field]:
                        continue
                    if partial:
                        differ.add(path)  # not restored: `like`'s value stays
                    else:
                        diffs.append(f"state{path}: {field} {a[field]} in the checkpoint, "
                                     f"{b[field]} in this run")
        if not (diffs or partial) and [leaf["path"] for leaf in used] != [p for p, _ in kept]:
            diffs.append("state: the same leaves in a different order (a different pytree)")
        if diffs:
            shown = diffs[:20] + ([f"... and {len(diffs) - 20} more"] if len(diffs) > 20 else [])
            raise CheckpointMismatchError(
                f"{where} does not match this run:\n  " + "\n  ".join(shown))

        target = {f"leaf_{i:05d}": np.zeros(leaf["shape"], leaf["dtype"])
                  for i, leaf in enumerate(saved_leaves) if np.prod(leaf["shape"]) > 0}
        target["__step__"] = np.asarray(0, np.int64)
        try:
            arrays = self._manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(target)))["state"]
        except Exception as err:  # noqa: BLE001 - truncated/missing files
            raise CheckpointCorruptError(f"{where} is unreadable ({why(err)})") from err
        if int(arrays["__step__"]) != step:
            raise CheckpointCorruptError(f"{where} holds step {int(arrays['__step__'])}")
        by_path = {}
        for i, leaf in enumerate(saved_leaves):
            if leaf["path"] in skip or leaf["path"] not in now_by_path or (
                    leaf["path"] in differ):
                continue
            name = f"leaf_{i:05d}"
            arr = np.asarray(arrays[name]) if name in target else np.zeros(
                leaf["shape"], leaf["dtype"])
            if list(arr.shape) != leaf["shape"] or _crc(arr) != leaf["crc32"]:
                raise CheckpointCorruptError(f"{where} fails its checksum at state{leaf['path']}")
            if leaf["key_impl"] is not None:
                arr = jax.random.wrap_key_data(arr, impl=leaf["key_impl"])
            by_path[leaf["path"]] = arr
        missing = [p for p, _ in kept if p not in by_path]  # only when partial
        values = [by_path.get(p, x) for p, x in kept]
        return self._rebuild(like, values), {**meta, "not_restored": missing} if partial else meta

    def _rebuild(self, like: PyTree, values: list[Any]) -> PyTree:
        """`like` with its saved leaves replaced by `values` (flatten order)."""
        it = iter(values)

        exclude = self.exclude or (lambda _: False)
        out = jax.tree.map(lambda x: x if exclude(x) else next(it), like, is_leaf=self.exclude)
        assert next(it, None) is None, "internal: leaf count changed between check and fill"
        return out

    # ---------------------------------------------------------------- lifetime
    def wait(self) -> None:
        """Block until pending asynchronous saves are on disk (or raise their error)."""
        self._orbax(self._manager.wait_until_finished)

    def close(self) -> None:
        """Finish pending saves, release Orbax's resources and the run lock (idempotent;
        a save failure already raised is not raised again)."""
        if self._closed:
            return
        self._closed = True
        try:
            if not self._failed:
                self.wait()
        finally:
            lock, self._run_lock = self._run_lock, None
            try:
                self._manager.close()
            except Exception:  # noqa: BLE001 - after a failed save Orbax may raise it again
                if not self._failed:
                    raise
            finally:
                if lock is not None:
                    lock.release()
