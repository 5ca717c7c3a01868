"""What a command writes: data on stdout (lines, or binary streams into a pipe), notes on stderr.

`dimctl` itself imports this module (for ReaderGone), so it imports nothing heavy, not even
cli/progress.py until a note is written.
"""

import sys

from dimctl.errors import UsageError


class ReaderGone(Exception):
    """stdout's reader closed the pipe (`… | head -1`). Not an OSError, so no layer mistakes it for one."""


def stdout_is_terminal() -> bool:
    return sys.stdout.isatty()


def write_stdout_bytes(data: bytes) -> None:
    if stdout_is_terminal():
        raise UsageError("refusing to write binary data to a terminal; pass -o FILE or pipe into another command")
    try:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    except BrokenPipeError:
        raise ReaderGone() from None


def emit(line: str) -> None:
    """One line of data on stdout."""
    try:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        raise ReaderGone() from None


def note(message: str) -> None:
    """A log line on stderr."""
    from dimctl.cli.progress import write_line

    write_line(f"dimctl: {message}")


def note_unverified(feats) -> None:
    """Say on stderr that a feature file from another tool was read without a checksum."""
    if not feats.verified:
        note(f"{feats.name} is not a dimctl feature file: read as is, unverified (no checksum)")
