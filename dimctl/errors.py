"""Errors the library raises; the CLI maps each class to one stderr line and an exit code.

Exit codes (DESIGN.md): 1 runtime failure, 2 usage error (bad flag, missing file),
3 bad or incompatible artifact, 130 interrupted.
"""


class DimctlError(Exception):
    """Base class: a failure that deserves one clear line, not a traceback."""

    exit_code = 1


class UsageError(DimctlError):
    """The user asked for something that cannot be done as asked (bad value, missing file)."""

    exit_code = 2


class DatasetNotFound(UsageError):
    """A dataset's files are not where they are expected."""


class ArtifactError(DimctlError):
    """A file is not a valid dimctl artifact, or does not fit what it is used with."""

    exit_code = 3


class Interrupted(DimctlError):
    """Stopped on request (SIGINT/SIGTERM) after saving a checkpoint: ``step`` of ``total`` steps done."""

    exit_code = 130

    def __init__(self, message: str, step: int | None = None, total: int | None = None):
        super().__init__(message)
        self.step, self.total = step, total


class NonFiniteLoss(DimctlError):
    """A loss term became NaN or infinite; training stopped before the bad update."""
