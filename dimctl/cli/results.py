"""Result lines: a command's measurement as one line of strict JSON, and the copy kept with --results-dir."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dimctl.cli.output import note
from dimctl.errors import DimctlError


# Result keys that may be legitimately undefined, and why: written as null with a reason.
UNDEFINED_REASONS = {"stderr": "not defined: fewer than 2 evaluation batches (a test split smaller than 2 batches)"}


def result_line(row: dict, source: str) -> str:
    """A result as one line of strict JSON (no NaN or Infinity, which strict parsers reject). A
    non-finite standard error is null with a reason; any other non-finite number is an error that
    names the input it was computed from."""
    import json
    import math

    clean = dict(row)
    for key, value in row.items():
        if isinstance(value, float) and not math.isfinite(value):
            if key not in UNDEFINED_REASONS:
                raise DimctlError(f"{source}: {row.get('command', 'the result')} came out {value} for {key!r}; "
                                  f"no result was written (non-finite features or a diverged estimator?)")
            clean[key], clean[f"{key}_reason"] = None, UNDEFINED_REASONS[key]
    try:
        return json.dumps(clean, allow_nan=False)
    except ValueError:  # a non-finite number inside a list or an object
        raise DimctlError(f"{source}: {row.get('command', 'the result')} holds a non-finite number; "
                          f"no result was written") from None


ResultsDirOpt = Annotated[Path | None, typer.Option(
    "--results-dir", help="Also keep the result lines in this folder (made if missing; a run folder is a good "
                          "place), one new file COMMAND-TIME.jsonl per call, for `dimctl report DIR`.")]


def check_results_dir(folder: Path | None) -> None:
    """Before any work: --results-dir must be a folder or a path one can be made at."""
    if folder is not None:
        from dimctl.io.atomic import check_folder_or_absent

        check_folder_or_absent(folder, "--results-dir ")


def save_results(folder: Path | None, command: str, rows: list[dict]) -> Path | None:
    """The result lines as a new file in ``folder`` (never one an earlier call wrote: each call is a
    measurement of its own); noted on stderr. Nothing when no folder is given."""
    if folder is None:
        return None
    from datetime import datetime, timezone

    from dimctl.io.atomic import write_text

    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{command}-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%SZ')}"
    path, k = folder / f"{stem}.jsonl", 1
    while path.exists():  # two calls within a second
        k += 1
        path = folder / f"{stem}-{k}.jsonl"
    write_text(path, "".join(result_line(row, str(folder)) + "\n" for row in rows))
    note(f"{command}: results in {path}")
    return path
