"""Old spellings that still work for one release, each with a one-line warning on stderr.

One vocabulary across commands (README, "One vocabulary"): `-o/--output FILE` names a file,
`--out DIR` a folder; `--layer` (a comma list) chooses layers; `-n/--num` counts. The flags that
used to say otherwise are rewritten here, before the command line is parsed, so each command
declares only the current spelling. (`dimctl mi --x/--y` became `--layer X,Y`: two values into
one, which `mi` itself folds, with `warn`.)
"""

import sys

from dimctl.text import one_line

FOLDER_COMMANDS = (("pretrain",), ("finetune",), ("mine",), ("neighbors",), ("reconstruct",), ("generate", "train"))

# command words -> {old flag: current flag}
RENAMED: dict[tuple[str, ...], dict[str, str]] = {
    **{command: {"-o": "--out"} for command in FOLDER_COMMANDS},
    ("neighbors",): {"-o": "--out", "--neighbors": "--num"},
    ("reconstruct",): {"-o": "--out", "--from": "--layer"},
    ("extract",): {"--layers": "--layer"},
    ("generate", "sample"): {"--out-dir": "--out"},
}

WHY = {"-o": "-o/--output names a file", "--out-dir": "--out names a folder",
       "--layers": "--layer takes a comma list everywhere", "--from": "--layer chooses the layer everywhere",
       "--neighbors": "-n/--num counts everywhere"}


def rewrite(args: list[str]) -> tuple[list[str], list[str]]:
    """(args with deprecated spellings replaced, one warning per spelling replaced)."""
    words = [a for a in args if not a.startswith("-")][:2]
    command = max((c for c in RENAMED if tuple(words[:len(c)]) == c), key=len, default=None)
    if command is None:
        return args, []
    renames = RENAMED[command]
    out, used = [], []
    for a in args:
        if a == "--":  # what follows is positional
            out.extend(args[len(out):])
            break
        old = next((o for o in renames if a == o or a.startswith(o + "=")), None)
        if old is not None:
            a = renames[old] + a[len(old):]
            if old not in used:
                used.append(old)
        out.append(a)
    name = " ".join(command)
    return out, [message(f"dimctl {name} {old}", f"{renames[old]}", WHY.get(old, "")) for old in used]


def message(old: str, new: str, why: str = "") -> str:
    return f"`{old}` is deprecated and will be removed: use {new}" + (f" ({why})" if why else "")


def warn(old: str, new: str, why: str = "") -> None:
    """The warning for a deprecated spelling a command folds itself (the library never prints; this is the CLI)."""
    print(f"dimctl: warning: {one_line(message(old, new, why))}", file=sys.stderr, flush=True)
