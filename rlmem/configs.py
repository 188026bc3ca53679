"""Every config option in one listing: `python -m rlmem.configs` (`train.py --help` says so).

Prints the config groups with their options (`group=option`; the default marked) and
every key of `conf/config.yaml` and of the default `algo`/`memory`/`batching`/`env`/
`logger` files with its default value and the one-line comment the YAML gives it, read
from the files themselves, so the listing cannot drift from them. Plain text parsing of
the project's own simple YAML (mappings, one key per line): no Hydra, no OmegaConf.

    python -m rlmem.configs            # everything
    python -m rlmem.configs algo       # one section: algo.* keys and the algo group
"""

from __future__ import annotations

import re
import sys
import textwrap
from pathlib import Path

CONF = Path(__file__).resolve().parents[1] / "conf"
GROUPS = ("env", "memory", "batching", "algo", "logger", "experiment/paper", "experiment/r2d2",
          "hydra/launcher")
_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_][\w.]*):(?P<value>[^#]*)(#\s?(?P<note>.*))?$")


def keys(path: Path, prefix: str = "") -> list[tuple[str, str, str]]:
    """`(dotted key, default, comment)` for every key of a YAML file (sections included,
    with an empty default), skipping `defaults` lists and `hydra:` settings."""
    out: list[tuple[str, str, str]] = []
    stack: list[tuple[int, str]] = []  # (indent, name) of the enclosing sections
    for line in path.read_text().splitlines():
        match = _LINE.match(line)
        if not match or line.lstrip().startswith("-"):
            continue
        indent, key = len(match["indent"]), match["key"]
        while stack and stack[-1][0] >= indent:
            stack.pop()
        name = ".".join([*(s for _, s in stack), key])
        stack.append((indent, key))
        if name.split(".")[0] in ("defaults", "hydra", "_global_"):
            continue
        out.append((prefix + name, match["value"].strip(), (match["note"] or "").strip()))
    return out


def defaults() -> dict[str, str]:
    """The default option of each group, from `conf/config.yaml`'s defaults list."""
    found = re.findall(r"^  - (\w+): (\w+)", (CONF / "config.yaml").read_text(), re.M)
    return dict(found)


def listing(section: str | None = None) -> str:
    """The text `python -m rlmem.configs [section]` prints."""
    chosen = defaults()
    lines = ["Config groups (choose with group=option; * = default):"]
    for group in GROUPS:
        if section and not group.startswith(section):
            continue
        options = sorted(p.stem for p in (CONF / group).glob("*.yaml"))
        shown = ", ".join(f"{o}*" if chosen.get(group) == o else o for o in options)
        how = (f"+{group.replace('/', '=')}/<task>" if group.startswith("experiment/")
               else f"{group}=<option>")
        lines.append(textwrap.fill(f"{how}: {shown}", 100, initial_indent="  ",
                                   subsequent_indent="      "))
    lines.append("\nKeys (override with key=value; the value shown is the default):")
    rows = keys(CONF / "config.yaml")
    for group in ("env", "memory", "batching", "algo", "logger"):
        if group in chosen:
            rows += keys(CONF / group / f"{chosen[group]}.yaml", prefix=f"{group}.")
    for name, value, note in rows:
        if section and not name.startswith(section):
            continue
        text = f"  {name}" + (f" = {value}" if value else "")
        lines.append(text + (f"  # {note}" if note else ""))
    return "\n".join(lines)


def _is_group_choice(override: str) -> bool:
    key = override.lstrip("+~").partition("=")[0]
    return "=" in override and "." not in key and not key.startswith("hydra")


def unknown_key_hints(overrides: list[str]) -> list[str]:
    """Why Hydra refused `group.key=value` overrides: which options of the group have the
    key (`algo.random_epochs` is DQN's, not PPO's), or which keys the chosen option has.

    Called by train.py only after Hydra failed to compose: composes the group choices
    alone (those must compose) and looks up every plain `group.key=...` override in it.
    """
    from omegaconf import OmegaConf

    from rlmem.registry import close_matches

    try:
        cfg = _compose_choices(overrides)
    except Exception:  # noqa: BLE001  (the group choices themselves are wrong: Hydra said so)
        return []
    hints = []
    for override in overrides:
        key = override.partition("=")[0]
        group, _, rest = key.partition(".")
        if override[0] in "+~" or "=" not in override or group not in GROUPS or not rest:
            continue
        if OmegaConf.select(cfg, key, default=_MISSING) is not _MISSING:
            continue
        chosen = cfg[group].get("name") if group in ("algo", "memory") else None
        chosen = f"{group}={chosen}" if chosen else f"the chosen {group}"
        owners = [p.stem for p in sorted((CONF / group).glob("*.yaml"))
                  if any(k == rest for k, _, _ in keys(p))]
        if owners:
            named = [f"{group}={o}" for o in owners]
            which = named[0] if len(named) == 1 else f"one of {', '.join(named)}"
            hints.append(f"{key} is a key of {', '.join(named)}, not of {chosen}: select "
                         f"{which}, or drop {key}")
        else:
            similar = close_matches(rest, _dotted(OmegaConf.to_container(cfg[group])))
            guess = (f" (did you mean {', '.join(f'{group}.{m}' for m in similar)}?)"
                     if similar else "")
            hints.append(f"{key} is not a key of {chosen}{guess}")
    return hints


_MISSING = object()


def _compose_choices(overrides: list[str]):
    """`conf/config.yaml` composed with the group choices among `overrides` alone (the
    `group=option` ones; key overrides are left out)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            return compose("config", overrides=[o for o in overrides if _is_group_choice(o)])
    finally:
        GlobalHydra.instance().clear()


def compose_run_config(recorded: dict, overrides: list[str]):
    """A recorded run config (`.hydra/config.yaml`) completed with today's defaults: the
    config composed from the run's group choices (`overrides`: its `overrides.yaml`),
    with every recorded value on top. Keys added since the run keep their defaults; flat
    `algo.*` keys that now live in a block (`algo.optim.*`) move there."""
    from omegaconf import OmegaConf, open_dict

    from rlmem.config_checks import MOVED_ALGO_KEYS

    base = _compose_choices(overrides)
    with open_dict(base):
        base.pop("hydra", None)
    OmegaConf.set_struct(base, False)
    recorded = {k: v for k, v in recorded.items() if k != "hydra"}
    algo = dict(recorded.get("algo") or {})
    for key, where in MOVED_ALGO_KEYS.items():  # flat keys of older runs -> their block
        if key in algo:
            block = where.split(".")[1]
            algo[block] = {**(algo.get(block) or {}), key: algo.pop(key)}
    return OmegaConf.merge(base, {**recorded, "algo": algo} if algo else recorded)


def _dotted(tree: dict, prefix: str = "") -> list[str]:
    """Every key of a nested mapping, dotted (`optim.learning_rate`)."""
    out = []
    for key, value in tree.items():
        out.append(prefix + str(key))
        if isinstance(value, dict):
            out += _dotted(value, f"{prefix}{key}.")
    return out


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    print(listing(args[0] if args else None))


if __name__ == "__main__":
    main()
