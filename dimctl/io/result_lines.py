"""Result lines: the JSON lines dimctl's measuring commands write (`probe --json`, mi, mine, ndm,
reconstruct, …), read back bounded and typed. The one reader, for the report and for export's
--results (a line too long or too deep, or a field of the wrong type, is refused, not loaded).
"""

import json
import math
from pathlib import Path

from dimctl.errors import ArtifactError, UsageError

LINE_LIMIT = 1 << 20  # characters in one result line: dimctl's longest (multi-label probe rows) are a few kB
# The fields the tables read, and the JSON types they must have where a line has them.
FIELD_TYPES = {"command": str, "encoder": (str, type(None)), "dataset": (str, type(None)), "layer": (str, type(None)),
               "classifier": str, "features": (str, type(None)), "accuracy": (int, float), "estimate": (int, float),
               "stderr": (int, float, type(None)), "ndm": (int, float), "ms_ssim": (int, float),
               "same_class": (int, float), "neighbors": list, "value": (int, float, str, type(None))}
# dimctl writes strict JSON (a non-finite result is refused, an undefined stderr is null), so an
# Infinity or NaN in a number field was not written by it, and the tables' means cannot take one.
FINITE_FIELDS = ("accuracy", "estimate", "stderr", "ndm", "ms_ssim", "same_class")


def parse_result_lines(text: str, name: str) -> list[dict]:
    """The result rows (objects with a "command" key) of JSON-lines text; other objects are skipped.
    A line that is not JSON is a usage error (the wrong kind of file); one longer than LINE_LIMIT,
    nested past the parser's depth, or with a table field of the wrong type is a bad line (exit 3)."""
    return read_result_lines(iter(text.splitlines(keepends=True)), name)


def read_result_lines(lines, name: str) -> list[dict]:
    """``parse_result_lines`` over an iterator of lines (a file read a bounded line at a time)."""
    rows = []
    for number, line in enumerate(lines, 1):
        if len(line) > LINE_LIMIT:
            raise ArtifactError(f"{name}: line {number} is longer than {LINE_LIMIT >> 20} MB; not a result line")
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except RecursionError:
            raise ArtifactError(f"{name}: line {number} is nested too deeply to be a result line") from None
        except ValueError:
            raise UsageError(f"{name}: line {number} is not JSON; dimctl report reads JSON lines "
                             f"(`dimctl probe --json`, mine, ndm, reconstruct, …) and run folders") from None
        if not isinstance(value, dict):
            raise UsageError(f"{name}: line {number} is not a JSON object")
        if isinstance(value.get("command"), str):
            for key, kind in FIELD_TYPES.items():
                if key in value and (not isinstance(value[key], kind) or isinstance(value[key], bool) and kind != str):
                    raise ArtifactError(f"{name}: line {number}: {key!r} is {type(value[key]).__name__}, not what "
                                        f"`dimctl {value['command']}` writes")
            for key in FINITE_FIELDS:
                if isinstance(value.get(key), float) and not math.isfinite(value[key]):
                    raise ArtifactError(f"{name}: line {number}: {key!r} is {value[key]}, not a finite number "
                                        f"`dimctl {value['command']}` writes")
            rows.append(value)
    return rows


def bounded_lines(stream):
    """A text stream's lines, none read past LINE_LIMIT + 1 characters (a huge line is refused, not loaded)."""
    while line := stream.readline(LINE_LIMIT + 1):
        yield line


def read_result_file(path: Path) -> list[dict]:
    """A file's result rows, read a bounded line at a time."""
    with open(path, encoding="utf-8", errors="replace") as f:
        return read_result_lines(bounded_lines(f), str(path))
