"""A feature or sample stream read from stdin, framed by its own HDF5 header: read only as far as the
header says the file ends."""

from __future__ import annotations

import sys

from dimctl.errors import ArtifactError, UsageError


STDIN_LIMIT = 64 << 30  # bytes: the largest feature or sample stream read from stdin (it is held in memory)


def read_stdin_bytes() -> bytes:
    """A feature or sample stream from stdin, read only as far as its HDF5 superblock says it
    ends: an endless input (/dev/zero, a stray producer) is refused from its first bytes, never
    read into memory without bound."""
    from dimctl.io.features import HDF5_SIGNATURE, MAGIC, USERBLOCK, stored_end

    if sys.stdin is None or sys.stdin.closed or not hasattr(sys.stdin, "buffer"):
        raise UsageError("no input file given and stdin is closed; pass FILE or pipe `dimctl extract …` in")
    if sys.stdin.isatty():
        raise UsageError("no input file given and stdin is a terminal; pass FILE or pipe `dimctl extract …` in")
    from dimctl import progress

    stream = sys.stdin.buffer
    with progress.activity("waiting for the features on stdin"):
        head = _read_exactly(stream, USERBLOCK + 64)
    if not head:
        return head  # the readers say "no data" and suggest the command before the pipe failed
    superblock = head[USERBLOCK:] if head.startswith(MAGIC) else head
    end = stored_end(superblock)
    if not (head.startswith(MAGIC) or head.startswith(HDF5_SIGNATURE)) or end is None:
        raise ArtifactError("<stdin> is not a feature or sample stream (no dimctl or HDF5 header in its first "
                            "bytes); pipe `dimctl extract …` or `dimctl generate sample … -o -` in")
    if end > STDIN_LIMIT:
        raise ArtifactError(f"<stdin> declares {end} bytes, more than the {STDIN_LIMIT >> 30} GiB read from a pipe; "
                            f"write it to a file and pass the file")
    with progress.activity(f"reading {end >> 20} MiB of features from stdin"):
        return head + _read_exactly(stream, max(0, end - len(head)))  # short: the reader reports it truncated


def _read_exactly(stream, size: int) -> bytes:
    """Up to ``size`` bytes, fewer only at the end of the stream."""
    parts, left = [], size
    while left > 0:
        part = stream.read(min(left, 1 << 24))
        if not part:
            break
        parts.append(part)
        left -= len(part)
    return b"".join(parts)
