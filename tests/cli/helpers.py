"""Running dimctl from a test, shared by the CLI tests and the others that go through the CLI.

A plain module, not a conftest: these are functions the tests call with their own arguments, and
tests elsewhere in the suite (tests/io, tests/train, …) import them too.
"""

import io
import os
import subprocess
import sys
from unittest import mock

DIMCTL = [sys.executable, "-m", "dimctl"]
ENV = {**os.environ, "DIMCTL_NO_PROGRESS": "1"}
# A pretrain small enough for a test: one epoch of digits with narrow MI heads.
TINY_PRETRAIN = ["--dataset", "digits", "--mi-units", "32", "--epochs", "1", "--checkpoint-every", "0"]


def run(*args, input=None, cwd=None):
    return subprocess.run([*DIMCTL, *map(str, args)], capture_output=True, input=input, cwd=cwd, env=ENV, timeout=600)


def run_here(*args, input: bytes = b"", env: dict | None = None) -> subprocess.CompletedProcess:
    """`run`'s result, computed in this process by dimctl's entry point (stdout and stderr as bytes)."""
    from dimctl.cli.main import run as main

    out, err = io.BytesIO(), io.BytesIO()
    streams = {"stdin": io.TextIOWrapper(io.BytesIO(input)), "stdout": io.TextIOWrapper(out, write_through=True),
               "stderr": io.TextIOWrapper(err, write_through=True)}
    with mock.patch.dict(os.environ, {"DIMCTL_NO_PROGRESS": "1", **(env or {})}), \
            mock.patch.multiple(sys, **streams):
        code = main(list(map(str, args)))
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def sh(command: str, cwd):
    return subprocess.run(["bash", "-o", "pipefail", "-c", command], capture_output=True, cwd=cwd, env=ENV, timeout=600)


def assert_one_line_error(result, code) -> str:
    """The command failed with ``code`` and said why in one line of stderr, which is returned."""
    err = result.stderr.decode()
    assert result.returncode == code, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("dimctl: error:"), err
    assert "Traceback" not in err
    return err
