"""Old spellings that still work for one release, each with a one-line warning on stderr.

One vocabulary across commands: `-o/--output FILE` names a file, `--out DIR` a folder. Folder
commands used to take `-o` for `--out` as well; that `-o` is rewritten to `--out` here.
"""

FOLDER_COMMANDS = {("pretrain",), ("finetune",), ("mine",), ("neighbors",), ("reconstruct",), ("generate", "train")}


def rewrite(args: list[str]) -> tuple[list[str], list[str]]:
    """(args with deprecated spellings replaced, one warning per spelling replaced)."""
    words = [a for a in args if not a.startswith("-")][:2]
    command = next((c for c in FOLDER_COMMANDS if tuple(words[:len(c)]) == c), None)
    if command is None:
        return args, []
    out, warned = [], False
    for a in args:
        if a == "-o" or a.startswith("-o="):
            a, warned = "--out" + a[2:], True
        out.append(a)
    warning = (f"`dimctl {' '.join(command)} -o DIR` is deprecated and will be removed: use --out DIR "
               f"(-o/--output names a file)")
    return out, [warning] if warned else []
