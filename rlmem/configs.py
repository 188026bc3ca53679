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
GROUPS = ("env", "memory", "batching", "algo", "logger", "experiment/paper", "hydra/launcher")
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
        how = "+experiment=paper/<task>" if group == "experiment/paper" else f"{group}=<option>"
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


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    print(listing(args[0] if args else None))


if __name__ == "__main__":
    main()
